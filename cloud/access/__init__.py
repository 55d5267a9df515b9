"""Access to the API: scoped keys (stored hashed), their verification with a short cache, rate limits.

Errors::

    AccessError                 every refusal of this package (a ValueError: bad input, not a crash)
     ├── UnknownScope           a scope that is not one of ``Scope``
     ├── InvalidKeyRequest      a name or lifetime ``keys create`` refuses
     └── KeyNotFound            no key with that id
"""

from __future__ import annotations


class AccessError(ValueError):
    """A refusal of the access package; the message says what to do."""


class UnknownScope(AccessError):
    """A scope that does not exist."""


class InvalidKeyRequest(AccessError):
    """A key name or lifetime that is refused."""


class KeyNotFound(AccessError):
    """No API key with that id."""

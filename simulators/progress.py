"""How long-running simulator work reports progress: the CLI draws bars, tests pass the silent default."""

from __future__ import annotations

from collections.abc import Callable


class Progress:
    """A silent reporter; subclasses draw."""

    def phase(self, name: str, total: float | None = None) -> Callable[[float], None]:
        """Start a phase; return a function that advances it."""
        return lambda _step: None

    def note(self, text: str) -> None:
        """A one-line status message."""

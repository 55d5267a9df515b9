"""Small arithmetic over a CAN message's signals, for VSS values a DBC splits into parts.

Real DBCs carry some quantities in pieces: a magnitude and a separate sign bit, a coarse and a fine part, a
value in two halves. A mapping joins them with an expression such as ``coarse * 16 + fine`` or
``-mag if sign else mag``. The expression is parsed with :mod:`ast` and only names (the message's
signals), numbers, ``+ - * /``, unary minus, comparisons (``< <= > >= == !=``, 1 when true, 0 when false)
and conditional expressions (``a if cond else b``, ``cond`` true when non-zero) are allowed: it is
compiled into nested closures here, never given to ``eval``.

Comparisons repair a DBC that declares a two's-complement signal unsigned (opendbc's Hyundai i30 steering
angle: 16 bits unsigned, range -3276.8..3276.7): ``SAS_Angle - 6553.6 if SAS_Angle > 3276.7 else SAS_Angle``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Collection, Mapping

#: a compiled expression: signal values by name -> the result (KeyError for a signal not in the frame)
Expression = Callable[[Mapping[str, float]], float]

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b != 0 else math.nan,  # no sample rather than a crash
}
_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
#: longer texts are not a signal formula; a bound also keeps the parser's recursion small
MAX_LENGTH = 500


class ExpressionError(ValueError):
    """An expression that is not allowed or names an unknown signal."""


def compile_expression(text: str, names: Collection[str]) -> tuple[Expression, frozenset[str]]:
    """Compile ``text`` over the signals ``names``; return the function and the names it uses."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r} is not an expression: {exc.msg}") from None
    used: set[str] = set()

    def build(node: ast.expr) -> Expression:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            value = float(node.value)
            return lambda _: value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ExpressionError(f"no signal {node.id!r} in the message; it has: {', '.join(names)}")
            used.add(node.id)
            name = node.id
            return lambda v: float(v[name])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            op, left, right = _BINARY[type(node.op)], build(node.left), build(node.right)
            return lambda v: op(left(v), right(v))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = build(node.operand)
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return lambda v: sign * operand(v)
        if (
            isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE
        ):  # one comparison: a chain (a < b < c) reads ambiguously in a mapping
            compare = _COMPARE[type(node.ops[0])]
            left, right = build(node.left), build(node.comparators[0])
            return lambda v: 1.0 if compare(left(v), right(v)) else 0.0
        if isinstance(node, ast.IfExp):
            test, body, orelse = build(node.test), build(node.body), build(node.orelse)
            return lambda v: body(v) if test(v) != 0 else orelse(v)
        raise ExpressionError(
            f"{ast.unparse(node)!r} is not allowed: only signal names, numbers, + - * /, one comparison"
            " (< <= > >= == !=) and 'a if condition else b'"
        )

    return build(tree.body), frozenset(used)

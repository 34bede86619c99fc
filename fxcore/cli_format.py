"""How the CLI prints numbers and tables (torch-free): one precision rule, aligned columns.

An estimate and its interval always share one number of decimals (``0.999 [0.998, 1.000]``), so a
bound never looks more or less precise than the value it brackets. Missing values print as ``-``,
never as ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DIGITS = 3  # decimals of every estimate and interval bound the CLI prints
MISSING = "-"

CKA_NOTE = (
    "note: CKA is the unbiased (debiased HSIC) estimator: for unrelated representations it "
    "scatters around 0 and can be slightly below 0"
)


def number(value: float | None, digits: int = DIGITS) -> str:
    """``value`` with ``digits`` decimals, or ``-`` when it is missing or not finite."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    return f"{value:.{digits}f}"


def interval(
    value: float | None, low: float | None, high: float | None, digits: int = DIGITS
) -> str:
    """``value [low, high]``, all three with the same decimals (``-`` for a missing one)."""
    if low is None and high is None:
        return number(value, digits)
    return f"{number(value, digits)} [{number(low, digits)}, {number(high, digits)}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Rows of cells as text columns, each as wide as its widest cell; columns whose index is in
    ``right`` are right-aligned (numbers), the others left-aligned (names)."""
    cells = [list(map(str, header)), *(list(map(str, r)) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join(line(r) for r in cells)

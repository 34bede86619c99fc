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


def _last(series: dict, name: str) -> float | None:
    values = series.get(name)
    return values[-1] if values else None


def compare_text(result: dict) -> str:
    """The text form of ``compare``: one table row per layer, then accuracy and attention."""
    from fxcore.store.runs import epochs_text

    lines: list[str] = []
    dyn = result["dynamics"]
    a, b = dyn["runs"]
    lines.append(f"{result['experiment']}: {a} vs {b}, epochs {epochs_text(dyn['epochs'])}")
    cka = result.get("cka", {})
    ctl = result.get("control", {}).get("cka") if "control" in result else None
    if "control" not in result:
        lines.append(
            "no control run (train with --controls 1 to get the noise floor of each measure)"
        )
    ci = f"{result.get('level', 0.95):.0%} CI"
    header = ["layer", f"drift {a}", f"drift {b}", "cosine"]
    header += [f"CKA [{ci}]"] if cka else []
    header += [f"control CKA [{ci}]"] if ctl else []
    rows, negative = [], False
    only = (result.get("limits") or {}).get("layers")  # compare --layers: those rows only
    for key, d in dyn["layers"].items():
        name = key.removesuffix(".weight")
        if only and name not in only:
            continue
        row = [key, number(d["drift_a"][-1]), number(d["drift_b"][-1]), number(d["cosine"][-1])]
        for part in (p for p in (cka, ctl) if p):
            trio = [_last(part.get(k, {}), name) for k in ("layers", "low", "high")]
            negative |= any(v is not None and v < 0 for v in trio)
            row.append(interval(*trio))
        rows.append(row)
    lines.append(table(header, rows, right=range(1, len(header))))
    for run, per_epoch in result.get("accuracy", {}).get("runs", {}).items():
        lines.append(
            f"accuracy on the probe images, {run} (final epoch): {interval(*per_epoch[-1])}"
        )
    loc = result.get("localisation", {})
    for run, shares in loc.get("runs", {}).items():
        bounds = loc.get("ci", {}).get(run, {})
        text = "  ".join(
            f"{r} {interval(v[-1], *(bounds.get(r) or [[None, None]])[-1])}"
            for r, v in shares.items()
        )
        lines.append(f"attention share, {run} (final epoch): {text}")
    if negative:
        lines.append(CKA_NOTE)
    return "\n".join(lines)

"""Which runs and epochs an analysis looks at: the pair by default, the control of a run, an epoch span."""

from __future__ import annotations

from collections.abc import Sequence

from fxcore.store.checkpoints import CheckpointError
from fxcore.store.runs import Experiment, Run, common_epochs


def pick_runs(exp: Experiment, names: Sequence[str] | None = None) -> list[Run]:
    """The runs to compare: the named ones, else the first two (L1, L2), else the only one.

    Control runs are never picked by default: they are the baseline, see :func:`pick_control`.
    """
    if names:
        return [exp.run(n) for n in names]
    if not exp.runs:
        raise CheckpointError(f"experiment {exp.name} has no runs")
    main = [r for r in exp.runs if not r.is_control]
    return (main or exp.runs)[:2]


def pick_control(exp: Experiment, first: Run) -> Run | None:
    """The first control run of ``first``'s attribute (None when the experiment has none)."""
    for r in exp.runs:
        if r.is_control and r.attribute == first.attribute and r.name != first.name:
            return r
    return None


def epoch_span(runs: Sequence[Run], lo: int | None, hi: int | None) -> list[int]:
    """Valid common epochs within ``lo..hi`` inclusive (None = open end)."""
    eps = [e for e in common_epochs(runs) if (lo is None or e >= lo) and (hi is None or e <= hi)]
    if not eps:
        raise CheckpointError(
            f"no valid epoch in {lo}..{hi} common to runs {', '.join(r.name for r in runs)}"
        )
    return eps

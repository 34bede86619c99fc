"""What ``compare`` will run, before it runs: the runs, epochs, measures, steps and a time estimate.

A step is one run x epoch of one measure (one epoch of the pair for CKA, which runs both models);
:func:`fxcore.compare.control.compare` reports its progress in these steps. The estimate times one forward
and one forward + backward pass of the experiment's model on probe-sized inputs and one linear
probe fit, and multiplies by the passes and fits each step makes; it assumes a cold cache (a
cached measure costs nothing) and leaves out the bootstrap of CKA, so it is a guide, not a
promise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fxcore.core.errors import CheckpointError
from fxcore.store.runs import Experiment, Run, common_epochs, epochs_text
from fxcore.store.select import pick_control, pick_runs

SANITY_IMAGES = 32  # images of the cascading-randomisation check (trust.attribution's n_sanity)
SANITY_STEPS = 2  # randomisation steps it takes (attribution.sanity_check's default)


def conv_linear_layers(run: Run) -> list[str]:
    """Layer names of the run's conv and linear layers (from run.json, no model built)."""
    return [k.removesuffix(".weight") for k in run.weight_keys() if len(run.shapes[k]) >= 2]


@dataclass
class ComparePlan:
    """The work of one ``compare``: ``steps[(part, measure)]`` holds each measure's step count,
    part ``pair`` (L1 vs L2), ``control`` (L1 vs control) or ``all`` (per model)."""

    experiment: str
    runs: list[Run]  # L1, L2 (or the only run)
    control: Run | None
    n_probe: int
    epochs: list[int] | None  # None: every common epoch (each measure of its own runs)
    layers: list[str] | None  # None: every conv and linear layer
    images: bool  # probe images exist (not an imported experiment)
    regions: bool  # face regions exist (not MNIST)
    steps: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def everyone(self) -> list[Run]:
        return [*self.runs[:2], *([self.control] if self.control else [])]

    @property
    def total(self) -> int:
        return sum(self.steps.values())

    def n_epochs(self, runs: Sequence[Run]) -> int:
        return len(self.epochs) if self.epochs is not None else len(common_epochs(runs))

    def describe(self) -> str:
        """One line: runs x epochs x measures, probe count, steps."""
        names = ", ".join(r.name for r in self.everyone)
        eps = self.epochs if self.epochs is not None else common_epochs(self.everyone)
        measures = sorted({m for _, m in self.steps}, key=list(MEASURES).index)
        layers = f", {len(self.layers)} layer(s)" if self.layers else ""
        return (
            f"compare {self.experiment}: {len(self.everyone)} runs ({names}) x {len(eps)} "
            f"epochs ({epochs_text(eps)}) x {len(measures)} measures "
            f"({', '.join(MEASURES[m] for m in measures)}), {self.n_probe} probe images{layers}: "
            f"{self.total} steps"
        )


MEASURES = {  # measure -> how it is named to the user
    "dynamics": "weight dynamics",
    "cka": "CKA",
    "localisation": "attention shares",
    "accuracy": "accuracy",
    "probes": "linear probes",
    "attribution": "attribution regions + sanity check",
}


def plan_compare(
    exp: Experiment,
    run_names: Sequence[str] | None = None,
    n_probe: int = 256,
    epochs: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
) -> ComparePlan:
    """The :class:`ComparePlan` of ``trust.compare`` with these arguments; unknown epochs or
    layers are a :class:`CheckpointError` naming the valid ones."""
    runs = pick_runs(exp, run_names)
    control = pick_control(exp, runs[0])
    dataset = exp.info.get("dataset")
    plan = ComparePlan(
        exp.name,
        runs,
        control,
        n_probe,
        sorted(set(epochs)) if epochs is not None else None,
        list(layers) if layers else None,
        images=dataset not in (None, "imported"),
        regions=dataset not in (None, "imported", "mnist"),
    )
    if plan.epochs is not None:
        valid = common_epochs(plan.everyone)
        bad = [e for e in plan.epochs if e not in valid]
        if bad or not plan.epochs:
            raise CheckpointError(
                f"epoch(s) {bad or plan.epochs} not valid in every compared run; valid epochs: "
                f"{epochs_text(valid)}"
            )
    if plan.layers:
        valid_layers = conv_linear_layers(runs[0])
        unknown = [n for n in plan.layers if n not in valid_layers]
        if unknown:
            raise CheckpointError(
                f"unknown layer(s) {', '.join(unknown)}; layers of {runs[0].name}: "
                f"{', '.join(valid_layers)}"
            )
    parts = {"pair": runs[:2]} if len(runs) >= 2 else {}
    if control is not None:
        parts["control"] = [runs[0], control]
    for part, pair in parts.items():
        plan.steps[(part, "dynamics")] = 1
        if plan.images:
            plan.steps[(part, "cka")] = plan.n_epochs(pair)
        if plan.regions:
            plan.steps[(part, "localisation")] = 2 * plan.n_epochs(pair)
    if len(runs) < 2:  # the only run's own weight dynamics
        plan.steps[("pair", "dynamics")] = 1
    per_model = len(plan.everyone) * plan.n_epochs(plan.everyone)
    if plan.images:
        plan.steps[("all", "accuracy")] = per_model
        plan.steps[("all", "probes")] = per_model
    if plan.regions:
        plan.steps[("all", "attribution")] = per_model + len(plan.everyone)  # + sanity per run
    return plan


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pass_costs(exp: Experiment, plan: ComparePlan, device: str = "cpu") -> tuple[float, float]:
    """Seconds per image of one forward, and of one forward + backward, of the first run's model
    at its first planned epoch on ``device`` (a batch of up to 16 zero images, after a warm-up)."""
    import torch

    from fxcore.data.inputs import input_spec

    run = plan.runs[0]
    epoch = (plan.epochs or common_epochs(plan.runs) or run.epochs())[0]
    model = run.build_model(epoch, device)
    spec = input_spec(exp.info)
    n = max(1, min(plan.n_probe, 16))
    x = torch.zeros(n, 1 if spec.mode == "L" else 3, spec.image_size, spec.image_size)
    x = x.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward() -> None:
        with torch.no_grad():
            model(x)
        sync()

    def backward() -> None:
        model(x.clone().requires_grad_(True)).sum().backward()
        sync()

    forward()  # warm-up: first-call allocations and kernel selection
    return _timed(forward) / n, _timed(backward) / n


def probe_fit_cost(exp: Experiment, plan: ComparePlan, n_resamples: int = 200) -> float:
    """Seconds of the linear probes' fits for one model and epoch: one layer of the median width
    fitted on random features (every attribute the experiment records), times the layers."""
    import numpy as np

    from fxcore.measures.probes import probe_grid

    run = plan.runs[0]
    widths = sorted(
        run.shapes[f"{n}.weight"][0]
        for n in conv_linear_layers(run)
        if not plan.layers or n in plan.layers
    )
    if not widths:
        return 0.0
    attrs = [str(a) for a in exp.info.get("config", {}).get("attributes") or ["a"]]
    rng = np.random.default_rng(0)
    n = plan.n_probe
    feats = {"layer": rng.standard_normal((n, widths[len(widths) // 2]))}
    labels = np.stack([np.arange(n) % 2 for _ in attrs], axis=1)
    seconds = _timed(lambda: probe_grid(feats, labels, attrs, 0, n_resamples))
    return seconds * len(widths)


def estimate_seconds(
    exp: Experiment, plan: ComparePlan, device: str = "cpu", n_resamples: int = 200
) -> float:
    """Estimated seconds of ``plan`` on a cold cache (see the module docstring)."""
    from fxcore.explain.attribution import NOISE_SAMPLES

    fwd, both = pass_costs(exp, plan, device)
    fits = probe_fit_cost(exp, plan, n_resamples) if ("all", "probes") in plan.steps else 0.0
    n = plan.n_probe
    per_step: dict[str, Any] = {
        "dynamics": 0.0,  # weights only: file reads
        "cka": 4 * fwd * n,  # two models, each a capture pass and a Gram pass
        "localisation": both * n,  # Grad-CAM: forward + backward
        "accuracy": fwd * n,
        "probes": fwd * n + fits,
        # Grad-CAM at every block in one pass, then SmoothGrad's noisy copies.
        "attribution": (1 + NOISE_SAMPLES) * both * n,
    }
    total = sum(per_step[m] * k for (_, m), k in plan.steps.items())
    if ("all", "attribution") in plan.steps:  # the sanity steps: the original + randomised maps
        sanity = (1 + SANITY_STEPS) * (1 + NOISE_SAMPLES) * both * min(n, SANITY_IMAGES)
        total += len(plan.everyone) * (sanity - per_step["attribution"])
    return total


def duration_text(seconds: float) -> str:
    """``45 s``, ``3.2 min`` or ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"

"""Which layers' Grad-CAM can be read as evidence: the one verdict per layer every front end shows.

The cascading-randomisation check (:func:`fxcore.explain.attribution.sanity_check`) of Grad-CAM at every
conv layer, for the models shown together, at one epoch, on the first probe images with the same
seed as ``compare``'s attribution measures (so a layer it checks gets the same verdict there), and
cached on disk like every measure of :mod:`fxcore.compare.analysis`. The Feature maps page, ``figures``
and ``explain`` all ask this module, so one layer never passes on one page and fails on another.
"""

from __future__ import annotations

from collections.abc import Sequence

from fxcore.explain.attribution import Verdict, gradcam_source, layer_verdicts
from fxcore.store.cache import cached
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run

N_IMAGES = 32  # as trust.attribution's n_sanity
SEED = 0


def layer_sanity(
    exp: Experiment,
    runs: Sequence[Run],
    epoch: int,
    n_images: int = N_IMAGES,
    seed: int = SEED,
) -> dict[str, Verdict]:
    """Layer -> :class:`~fxcore.explain.attribution.Verdict` of Grad-CAM at every conv layer of these
    runs' models at ``epoch``: it passes only when it passes for every run.

    Needs the experiment's probe images: raises :class:`~fxcore.core.errors.DataError` (or
    ``CheckpointError``) when its dataset cannot be opened on this machine.
    """
    runs = list({r.name: r for r in runs}.values())  # L1 == L2: one model
    params = {"runs": [r.name for r in runs], "n_images": n_images, "seed": seed, "epoch": epoch}

    def compute() -> dict:
        from fxcore.explain.activations import conv_layers
        from fxcore.explain.attribution import sanity_check

        data = probe_data(exp, n_images)
        out = {}
        for run in runs:
            model = run.build_model(epoch)
            names = [gradcam_source(layer) for layer in conv_layers(model)]
            out[run.name] = sanity_check(model, data.x[:n_images], names, seed)
        return out

    sanity = cached(exp, "sanity", runs, [epoch], params, compute)
    verdicts = layer_verdicts(sanity)
    return {src.removeprefix("gradcam:"): v for src, v in verdicts.items()}


def default_layer(
    verdicts: dict[str, Verdict], layers: Sequence[str], deepest: str | None = None
) -> str | None:
    """The deepest of ``layers`` up to ``deepest`` (inclusive) whose Grad-CAM passes the check,
    else the deepest passing one beyond it; None when none passes."""
    layers = list(layers)
    passing = [layer for layer in layers if verdicts.get(layer) and verdicts[layer].passes]
    if deepest in layers:
        upto = [layer for layer in passing if layers.index(layer) <= layers.index(deepest)]
        passing = upto or passing
    return passing[-1] if passing else None

"""The probe set: the first validation images of an experiment's dataset, measured on.

Labels of every attribute and the face-region masks come with the images; ``regions_from`` says
whether the masks are per image (SynthFaces ground truth, CelebA's landmark file) or fixed boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fxcore.core.errors import DataError
from fxcore.data.inputs import capabilities, load_split
from fxcore.store.checkpoints import CheckpointError
from fxcore.store.runs import Experiment

if TYPE_CHECKING:
    import torch


@dataclass
class ProbeData:
    """The probe images with everything measured on them."""

    x: torch.Tensor  # (N, C, S, S) model inputs
    masks: dict[str, np.ndarray]  # region -> (N, S, S) bool
    labels: np.ndarray  # (N, K) one column per attribute
    attributes: list[str]
    regions_from: str  # how the masks were made: per-image landmarks, or fixed boxes


def probe_data(exp: Experiment, n: int) -> ProbeData:
    """The first ``n`` validation images of the experiment's dataset, labels and region masks."""
    from fxcore.data.base import REGIONS, uint8_to_input

    if not capabilities(exp.info).probe_images:
        raise CheckpointError(f"{exp.name}: imported runs carry no dataset; no probe images")
    cfg = exp.info.get("config", {})
    ds = load_split(exp.info, "val", max_samples=n, where=exp.path)
    x = uint8_to_input(ds.images_uint8()[:n], ds.normalize)  # (N, C, S, S)
    masks: dict[str, np.ndarray] = {}
    source = "none"
    if hasattr(ds, "region_masks"):
        names = [*REGIONS, *[a for a in ds.attributes if a not in REGIONS]]
        try:
            masks = ds.region_masks(np.arange(len(x)), names)
        except (KeyError, ValueError, DataError):  # CelebA has no per-attribute masks
            masks = ds.region_masks(np.arange(len(x)), list(REGIONS))
        if cfg.get("dataset") == "synthfaces":
            source = "per-image ground truth (SynthFaces)"
        elif getattr(ds, "_landmarks", None) is not None:
            source = "per-image landmarks"
        else:
            source = "fixed boxes around the mean landmarks (no landmark file)"
    labels = np.asarray(ds.labels())[: len(x)]
    return ProbeData(x, masks, labels, list(ds.attributes), source)


def probe_set(exp: Experiment, n: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The first ``n`` validation images of the experiment's dataset, and their region masks."""
    data = probe_data(exp, n)
    return data.x, data.masks

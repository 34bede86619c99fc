"""An experiment's inputs, rebuilt from its saved config: the one place that knows how.

Trainer, analysis, CLI, figures and app all call this module, so they see the same data:

- :func:`dataset_kwargs` / :func:`load_split`: the dataset of a split, from every config field that
  shapes it (``data_root``, ``attributes``, ``image_size``, ``val_fraction``, ``synth_train``);
- :func:`input_spec`: the model's input (square side, ImageNet normalisation, PIL mode);
- :func:`capabilities`: what the experiment supports (dataset, probe images, face regions, convs).

Torch-free at import (the datasets are opened lazily), so the Home page and ``runs`` stay light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fxcore.registry import (
    CONV_MODELS,
    DATASETS,
    FACE_DATASETS,
    GRAYSCALE_DATASETS,
    NATIVE_SIZE,
    load_dataset,
)

if TYPE_CHECKING:
    from fxcore.data import FxDataset

VGG_SIZE = 224  # torchvision VGGs' native input side
# What each source's images are, for telling a reader what the models learned from.
TRAINED_ON = {
    "celeba": "CelebA face photos",
    "synthfaces": "SynthFaces, synthetic cartoon faces",
    "mnist": "MNIST, 28×28 handwritten digits",
}
PHOTO_DATASETS = ("celeba",)  # sources of real photos: an uploaded photo is in distribution


def _config(info_or_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config dict from an ``experiment.json``/``run.json`` dict, or the config itself."""
    cfg = info_or_cfg.get("config")
    merged = dict(cfg) if isinstance(cfg, Mapping) else dict(info_or_cfg)
    for key in ("dataset", "model"):  # imported experiments record these beside an empty config
        if merged.get(key) is None and info_or_cfg.get(key) is not None:
            merged[key] = info_or_cfg[key]
    return merged


def dataset_kwargs(info_or_cfg: Mapping[str, Any], split: str) -> dict[str, Any]:
    """``load_dataset`` keyword arguments that rebuild the experiment's ``split`` exactly."""
    cfg = _config(info_or_cfg)
    name = cfg.get("dataset")
    kw: dict[str, Any] = {"root": cfg.get("data_root"), "attributes": cfg.get("attributes")}
    if name not in GRAYSCALE_DATASETS:
        kw["image_size"] = int(cfg.get("image_size") or NATIVE_SIZE.get(cfg.get("model"), 64))
    if name == "celeba" and cfg.get("val_fraction") is not None:
        kw["val_fraction"] = float(cfg["val_fraction"])
    if split == "train" and name == "synthfaces" and cfg.get("synth_train"):
        kw["num_samples"] = int(cfg["synth_train"])
    return kw


def load_split(
    info_or_cfg: Mapping[str, Any], split: str, max_samples: int | None = None, **override: Any
) -> FxDataset:
    """The experiment's dataset for ``split`` (first ``max_samples`` items when given)."""
    cfg = _config(info_or_cfg)
    if cfg.get("dataset") not in DATASETS:
        from fxcore.errors import DataError

        raise DataError(
            f"this experiment records no dataset fxcore can open ({cfg.get('dataset')!r}); "
            "imported runs carry weights only"
        )
    kw = {**dataset_kwargs(cfg, split), **override}
    return load_dataset(cfg["dataset"], split=split, max_samples=max_samples, **kw)


@dataclass(frozen=True)
class InputSpec:
    """What a model of the experiment takes: ``image_size`` square pixels, mode, normalisation."""

    image_size: int
    normalize: bool  # ImageNet mean/std (RGB only)
    mode: str  # PIL mode: "RGB" or "L"


def input_spec(info_or_cfg: Mapping[str, Any]) -> InputSpec:
    """The model input of an experiment (its config, else the architecture's native size)."""
    cfg = _config(info_or_cfg)
    name = cfg.get("dataset")
    if name in GRAYSCALE_DATASETS:
        return InputSpec(GRAYSCALE_DATASETS[name], False, "L")
    default = NATIVE_SIZE.get(cfg.get("model"), VGG_SIZE)
    return InputSpec(int(cfg.get("image_size") or default), True, "RGB")


@dataclass(frozen=True)
class Capabilities:
    """What analyses an experiment supports (read from its records, no file opened)."""

    has_dataset: bool  # its dataset can be rebuilt (not imported)
    probe_images: bool  # validation images to probe the models with (CKA, Grad-CAM samples)
    face_regions: bool  # region masks (mouth, eyes, nose) for attention localisation
    conv_layers: bool  # feature maps and Grad-CAM apply
    photos: bool  # trained on real photos (an uploaded photo is not out of distribution)
    trained_on: str  # what the models were trained on, in words


def capabilities(info_or_cfg: Mapping[str, Any]) -> Capabilities:
    cfg = _config(info_or_cfg)
    has_dataset = cfg.get("dataset") in DATASETS
    return Capabilities(
        has_dataset=has_dataset,
        probe_images=has_dataset,
        face_regions=cfg.get("dataset") in FACE_DATASETS,
        conv_layers=cfg.get("model") in CONV_MODELS,
        photos=cfg.get("dataset") in PHOTO_DATASETS,
        trained_on=TRAINED_ON.get(
            cfg.get("dataset"), "weights imported from elsewhere (their data is not recorded)"
        ),
    )


def attribute_statistics(info_or_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every attribute of the experiment's dataset: positive rates and co-occurrence (Fig. 2.1).

    CelebA: all 40 attributes over every row of its table; SynthFaces: every attribute over the
    training split; MNIST: the share of each digit, with ``counts`` per split. Keys: ``dataset``,
    ``names``, ``positive_rate``, ``cooccurrence``, ``conditional``, ``num_rows`` (and ``counts``).
    """
    import numpy as np

    from fxcore.data import label_statistics

    cfg = _config(info_or_cfg)
    name = cfg.get("dataset")
    if name == "celeba":
        from fxcore.celeba_files import attribute_statistics as celeba_statistics

        if not cfg.get("data_root"):
            from fxcore.errors import DataError

            raise DataError("the experiment does not record its CelebA --data-root")
        return {"dataset": name, **celeba_statistics(cfg["data_root"])}
    if name in GRAYSCALE_DATASETS:  # MNIST: one multi-class label
        counts = {}
        for split in ("train", "test"):
            digits = load_split(cfg, split, attributes=["digit"]).labels()[:, 0].astype(int)
            counts[split] = np.bincount(digits, minlength=10)
        total = sum(counts.values())
        onehot = np.eye(10)[np.repeat(np.arange(10), total)]
        return {
            "dataset": name,
            "names": [str(d) for d in range(10)],
            **label_statistics(onehot),
            "counts": {k: v.tolist() for k, v in counts.items()},
        }
    ds = load_split(cfg, "train", image_size=16)  # labels only: no image is decoded
    every = list(ds.all_attributes)
    labels = load_split(cfg, "train", attributes=every, image_size=16).labels()
    return {"dataset": name, "names": every, **label_statistics(labels)}

"""Names fxcore knows (datasets, models, face regions) and the one way to open a dataset by name.

Torch-free at import: the CLI builds its argument choices from these tuples without loading torch.
The dataset base class (:mod:`fxcore.data.base`) knows no dataset; this registry sits above the three
sources and imports each only when it is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxcore.core.errors import DataError

if TYPE_CHECKING:
    from fxcore.data.base import FxDataset

DATASETS = ("celeba", "synthfaces", "mnist")
DEFAULT_ATTRIBUTES = {
    "celeba": ["Smiling", "Male"],
    "synthfaces": ["Smiling", "Male"],
    "mnist": ["digit"],
}
FACE_DATASETS = ("celeba", "synthfaces")  # sources with face-region masks
GRAYSCALE_DATASETS = {"mnist": 28}  # single-channel sources and their fixed image side

VGG_NAMES = ("vgg11", "vgg13", "vgg16", "vgg19")
MODEL_NAMES = (*VGG_NAMES, "vgg-mini", "fcnn3")
CONV_MODELS = (*VGG_NAMES, "vgg-mini")  # architectures with conv layers (Grad-CAM, feature maps)
NATIVE_SIZE = {"vgg-mini": 64}  # input side when a config names none (VGGs: 224)


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    attributes: Sequence[str] | None = None,
    image_size: int | None = None,
    normalize: bool = True,
    seed: int = 0,
    max_samples: int | None = None,
    download: bool = False,
    **kwargs: Any,
) -> FxDataset:
    """Open one split (``train``, ``val`` or ``test``) of a dataset by name.

    ``max_samples`` keeps the first N items of the split (deterministic); SynthFaces takes its size
    from ``kwargs['num_samples']`` per split, CelebA its carved val share from ``val_fraction``.
    """
    name = name.lower()
    attrs = list(attributes) if attributes else list(DEFAULT_ATTRIBUTES.get(name, []))
    if name == "celeba":
        from fxcore.data.celeba import CelebA

        if root is None:
            raise DataError("CelebA needs --data-root: the folder holding img_align_celeba/")
        return CelebA(
            root,
            split=split,
            attributes=attrs,
            image_size=image_size or 64,
            normalize=normalize,
            seed=seed,
            max_samples=max_samples,
            download=download,
            **kwargs,
        )
    if name == "synthfaces":
        from fxcore.data.synthfaces import SynthFaces

        return SynthFaces(
            split=split,
            attributes=attrs,
            image_size=image_size or 64,
            normalize=normalize,
            seed=seed,
            max_samples=max_samples,
            **kwargs,
        )
    if name == "mnist":
        from fxcore.data.mnist import MNIST

        return MNIST(
            root,
            split=split,
            attributes=attrs,
            max_samples=max_samples,
            download=download,
            **kwargs,
        )
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def dataset_summary(
    name: str, root: str | Path | None = None, attributes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Sample count per split and positive rate per chosen attribute over all splits.

    For multi-class attributes the "positive rate" is reported per class as ``{class: fraction}``.
    """
    import numpy as np

    from fxcore.data.base import label_statistics

    splits: dict[str, int] = {}
    label_rows = []
    ds = load_dataset(name, split="train", root=root, attributes=attributes)
    for split in getattr(ds, "SPLITS", ("train", "val", "test")):  # MNIST has no separate val
        ds = load_dataset(name, split=split, root=root, attributes=attributes)
        splits[split] = len(ds)
        if len(ds):
            label_rows.append(ds.labels())
    labels = np.concatenate(label_rows) if label_rows else np.zeros((0, len(ds.attributes)))
    binary = label_statistics(labels)["positive_rate"]
    rate: dict[str, Any] = {}
    for k, attr in enumerate(ds.attributes):
        col = labels[:, k]
        if ds.num_classes.get(attr, 2) == 2:
            rate[attr] = float(binary[k])
        else:
            rate[attr] = {int(c): float((col == c).mean()) for c in range(ds.num_classes[attr])}
    return {"dataset": name, "attributes": ds.attributes, "splits": splits, "positive_rate": rate}

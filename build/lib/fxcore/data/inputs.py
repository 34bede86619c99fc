"""An experiment's inputs, rebuilt from its saved config: the one place that knows how.

Trainer, analysis, CLI, figures and app all call this module, so they see the same data:

- :func:`dataset_kwargs` / :func:`load_split`: the dataset of a split, from every config field that
  shapes it (``data_root``, ``attributes``, ``image_size``, ``val_fraction``, ``synth_train``);
- :func:`input_spec`: the model's input (square side, ImageNet normalisation, PIL mode);
- :func:`capabilities`: what the experiment supports (dataset, probe images, face regions, convs);
- :func:`locate_data`: where the experiment's dataset is on *this* machine (see below).

A committed experiment must not depend on the folder of the machine that trained it, so the data
root of an experiment record (``experiment.json``, ``run.json``) is looked up, in order, in
``$FXCORE_DATA`` (set by ``--data-root``), then by its recorded folder name in :data:`DATA_SEARCH`
beside the repository that holds the experiment (and the working folder), then at the recorded
path (relative to the experiment folder, or absolute in older experiments). A copy is used only
when its data fingerprint equals the recorded ``data_fingerprint``.

Torch-free at import (the datasets are opened lazily), so the Home page and ``runs`` stay light.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxcore.core.errors import DataError, DataUnavailable
from fxcore.data.registry import (
    CONV_MODELS,
    DATASETS,
    FACE_DATASETS,
    GRAYSCALE_DATASETS,
    NATIVE_SIZE,
    load_dataset,
)

if TYPE_CHECKING:
    from fxcore.data.base import FxDataset

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


def dataset_kwargs(
    info_or_cfg: Mapping[str, Any], split: str, where: str | Path | None = None
) -> dict[str, Any]:
    """``load_dataset`` keyword arguments that rebuild the experiment's ``split`` exactly.

    The root is :func:`locate_data`'s for an experiment record, or a bare config whose recorded
    root is not a folder here; a bare config with an existing root (training) keeps it.
    ``where``: the experiment folder (recorded relative roots and the repository search).
    """
    return _kwargs(info_or_cfg, split, _root(info_or_cfg, where))


def _root(info_or_cfg: Mapping[str, Any], where: str | Path | None) -> str | None:
    cfg = _config(info_or_cfg)
    recorded = cfg.get("data_root")
    if cfg.get("dataset") not in ROOTED or not recorded:
        return recorded
    bare = "config" not in info_or_cfg and where is None
    if bare and Path(recorded).is_dir():
        return recorded
    try:
        return str(locate_data(info_or_cfg, where).path)
    except DataUnavailable:
        if bare and Path(recorded).is_absolute():
            return recorded  # a plain config: its loader says what is wrong with that folder
        raise


def _kwargs(info_or_cfg: Mapping[str, Any], split: str, root: str | None) -> dict[str, Any]:
    cfg = _config(info_or_cfg)
    name = cfg.get("dataset")
    kw: dict[str, Any] = {"root": root, "attributes": cfg.get("attributes")}
    if name not in GRAYSCALE_DATASETS:
        kw["image_size"] = int(cfg.get("image_size") or NATIVE_SIZE.get(cfg.get("model"), 64))
    if name == "celeba" and cfg.get("val_fraction") is not None:
        kw["val_fraction"] = float(cfg["val_fraction"])
    if split == "train" and name == "synthfaces" and cfg.get("synth_train"):
        kw["num_samples"] = int(cfg["synth_train"])
    return kw


def load_split(
    info_or_cfg: Mapping[str, Any],
    split: str,
    max_samples: int | None = None,
    where: str | Path | None = None,
    **override: Any,
) -> FxDataset:
    """The experiment's dataset for ``split`` (first ``max_samples`` items when given);
    ``where``: the experiment folder (see :func:`dataset_kwargs`)."""
    cfg = _config(info_or_cfg)
    if cfg.get("dataset") not in DATASETS:
        raise DataError(
            f"this experiment records no dataset fxcore can open ({cfg.get('dataset')!r}); "
            "imported runs carry weights only"
        )
    root = override.pop("root") if "root" in override else _root(info_or_cfg, where)
    kw = {**_kwargs(cfg, split, root), **override}
    return load_dataset(cfg["dataset"], split=split, max_samples=max_samples, **kw)


# ---------------------------------------------------------------- where the data is

# Datasets read from a folder the experiment records (SynthFaces is generated, MNIST bundled).
ROOTED = frozenset({"celeba"})
DATASET_NAMES = {"celeba": "CelebA", "synthfaces": "SynthFaces", "mnist": "MNIST"}  # as written
DATA_ENV = "FXCORE_DATA"  # a dataset folder, or a folder of dataset folders by name
# Folders (relative to the repository holding the experiment, then to the working folder) where a
# dataset is looked for under its recorded folder name, e.g. ../shared/data/celeba-10k.
DATA_SEARCH = ("data", "../data", "../shared/data", "../../shared/data")


@dataclass(frozen=True)
class DataLocation:
    """A copy of the experiment's dataset found on this machine."""

    path: Path
    source: str  # how it was found: "$FXCORE_DATA", "search", "recorded", "unchecked"
    fingerprint: str | None  # of the copy (None: the experiment records none to check against)


def data_name(info_or_cfg: Mapping[str, Any]) -> str | None:
    """The dataset folder's name (``celeba-10k``): recorded, else the recorded root's last part."""
    if info_or_cfg.get("data_name"):
        return str(info_or_cfg["data_name"])
    root = _config(info_or_cfg).get("data_root")
    return Path(str(root).replace("\\", "/")).name if root else None


def portable_root(root: str | Path, exp_dir: str | Path) -> str:
    """``root`` as recorded in a committed experiment: relative to the experiment folder
    (POSIX separators), so no absolute path of the training machine is kept."""
    return Path(os.path.relpath(Path(root).resolve(), Path(exp_dir).resolve())).as_posix()


def _repository(where: Path) -> Path:
    """The repository holding an experiment folder (first parent with .git or pyproject.toml)."""
    for parent in [where, *where.parents]:
        if (parent / ".git").exists() or (parent / "pyproject.toml").is_file():
            return parent
    return where.parent.parent  # <repo>/checkpoints/<experiment>


def data_candidates(
    info_or_cfg: Mapping[str, Any], where: str | Path | None = None
) -> list[tuple[str, Path]]:
    """Where :func:`locate_data` looks, in order: ``(source, folder)``."""
    cfg = _config(info_or_cfg)
    name = data_name(info_or_cfg)
    out: list[tuple[str, Path]] = []
    env = os.environ.get(DATA_ENV)
    if env:
        base = Path(env).expanduser()
        out += [("$" + DATA_ENV, base / name)] if name else []
        out.append(("$" + DATA_ENV, base))
    bases = [_repository(Path(where).resolve())] if where is not None else []
    bases += [Path.cwd(), Path(__file__).resolve().parents[1]]
    if name:
        out += [("search", b / rel / name) for b in bases for rel in DATA_SEARCH]
    recorded = cfg.get("data_root")
    if recorded:
        p = Path(recorded).expanduser()
        if not p.is_absolute() and where is not None:
            p = Path(where) / p
        out.append(("recorded", p))
    seen, unique = set(), []
    for source, p in out:
        key = os.path.normpath(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            unique.append((source, Path(key)))
    return unique


_FINGERPRINTS: dict[tuple, str] = {}


def _fingerprint(cfg: Mapping[str, Any], path: Path) -> str:
    """The training-split fingerprint a copy at ``path`` gives (what training recorded)."""
    try:
        stamp = tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(path))
    except OSError:
        stamp = ()
    key = (str(path), stamp, repr(sorted((k, repr(v)) for k, v in cfg.items())))
    if key not in _FINGERPRINTS:
        with warnings.catch_warnings():  # a subset's "skipped rows" notice is not news here
            warnings.simplefilter("ignore")
            ds = load_dataset(
                cfg["dataset"],
                split="train",
                max_samples=cfg.get("max_train"),
                **_kwargs(cfg, "train", str(path)),
            )
        _FINGERPRINTS[key] = ds.fingerprint()
    return _FINGERPRINTS[key]


def locate_data(info_or_cfg: Mapping[str, Any], where: str | Path | None = None) -> DataLocation:
    """The first copy of the experiment's dataset among :func:`data_candidates` whose
    fingerprint matches the recorded one (any existing copy when none is recorded).

    Raises :class:`~fxcore.core.errors.DataUnavailable` (one line: what is missing, where it looked,
    how to provide it) when none does; a ``$FXCORE_DATA`` copy that does not match is named.
    """
    cfg = _config(info_or_cfg)
    expected = info_or_cfg.get("data_fingerprint")
    mismatched: list[str] = []
    for source, path in data_candidates(info_or_cfg, where):
        if not path.is_dir():
            continue
        if not expected:
            return DataLocation(path, "unchecked", None)
        try:
            found = _fingerprint(cfg, path)
        except DataError:
            continue  # not a copy of this dataset
        if found == expected:
            return DataLocation(path, source, found)
        mismatched.append(f"{path} ({source}) has fingerprint {found}")
        if source.startswith("$"):  # the user pointed here: say why it is not used
            warnings.warn(
                f"{path} does not hold this experiment's data (fingerprint {found}, "
                f"recorded {expected}); looking further",
                stacklevel=2,
            )
    name = data_name(info_or_cfg) or cfg.get("dataset")
    label = f"{DATASET_NAMES.get(cfg.get('dataset'), cfg.get('dataset'))} data {name!r}" + (
        f" (fingerprint {expected})" if expected else ""
    )
    where_text = (
        "; no copy matches: " + ", ".join(mismatched) if mismatched else " is not on this machine"
    )
    raise DataUnavailable(
        f"{label}{where_text}; to use it, pass --data-root DIR or set {DATA_ENV}=DIR "
        f"(the dataset folder, or a folder holding {name}/)"
    )


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


def attribute_statistics(
    info_or_cfg: Mapping[str, Any], where: str | Path | None = None
) -> dict[str, Any]:
    """Every attribute of the experiment's dataset: positive rates and co-occurrence (Fig. 2.1).

    CelebA: all 40 attributes over every row of its table; SynthFaces: every attribute over the
    training split; MNIST: the share of each digit, with ``counts`` per split. Keys: ``dataset``,
    ``names``, ``positive_rate``, ``cooccurrence``, ``conditional``, ``num_rows`` (and ``counts``).
    """
    import numpy as np

    from fxcore.data.base import label_statistics

    cfg = _config(info_or_cfg)
    name = cfg.get("dataset")
    if name == "celeba":
        from fxcore.data.celeba_files import attribute_statistics as celeba_statistics

        if not cfg.get("data_root"):
            raise DataError("the experiment does not record its CelebA --data-root")
        return {"dataset": name, **celeba_statistics(_root(info_or_cfg, where))}
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

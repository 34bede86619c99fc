"""``fxcore eval``: accuracy, AUC, balanced accuracy and calibration of every run and epoch on a
folder of photos, fed through exactly the app's upload path (:func:`fxcore.upload.faces.prepare_upload`).

Labels come from a CelebA-format attribute file (count line, 40 names, ``file.jpg`` + 40 values of
-1/1). Every image must have a label row, otherwise the command stops and names (up to five of) the
culprits; label rows without an image are left out and counted (the official file lists all
202,599 photos, a user usually has a subset). Each image is prepared once (the costly part: decoding,
face detection, alignment) and then scored by every run at every chosen epoch.

Metrics per run and epoch, for the positive class probability ``p = sigmoid(logit)``:

* ``accuracy`` of ``p >= 0.5``; ``balanced_accuracy`` = mean of the true positive and true negative
  rates; ``auc`` = ROC-AUC (:func:`fxcore.train.metrics.roc_auc`);
* ``ece``: expected calibration error over ``ECE_BINS`` equal-width bins of the confidence
  ``max(p, 1 - p)`` in [0.5, 1]: ``sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|``.

The result is written to ``EXPERIMENT/evaluations/<images>-<framing>.json`` (the last evaluation of
that set and framing, :mod:`fxcore.store.eval_store`), which the app's Home page shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxcore.core.errors import EvalError  # noqa: F401 - re-exported
from fxcore.data.celeba_files import ATTR_FILE, _parse_attrs
from fxcore.data.inputs import dataset_kwargs, input_spec
from fxcore.store.eval_store import save_evaluation
from fxcore.store.runs import Experiment
from fxcore.train.metrics import roc_auc
from fxcore.upload.faces import prepare_upload

ECE_BINS = 10
FRAMINGS = ("align", "face", "centre")  # --align | face crop (the app's toggle) | --centre
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class EvalSet:
    """Images (paths, or PIL images for generated datasets) and their 0/1 labels per attribute."""

    name: str
    items: list[Any]
    labels: dict[str, np.ndarray]  # attribute -> (N,) 0/1
    source: str  # where the images came from, for the record
    labels_without_image: int = 0  # rows of the attribute file whose image is not in the folder


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def folder_set(images: Path, labels: Path | None, attributes: list[str]) -> EvalSet:
    """Pair the images of a folder with their rows in a CelebA-format attribute file."""
    if not images.is_dir():
        raise EvalError(f"--images {images}: not a folder of photos")
    if labels is None:
        candidates = [images / ATTR_FILE, images.parent / ATTR_FILE]
        labels = next((c for c in candidates if c.is_file()), None)
        if labels is None:
            raise EvalError(
                f"no {ATTR_FILE} in {images} or its parent: pass --labels FILE (CelebA format: "
                "a count line, the 40 attribute names, then 'name.jpg' and 40 values of -1/1)"
            )
    names, files, attrs, _ = _parse_attrs(labels)
    missing_attr = [a for a in attributes if a not in names]
    if missing_attr:
        raise EvalError(f"{labels} has no column {_few(missing_attr)}")
    on_disk = sorted(p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    rows = {f: i for i, f in enumerate(files)}
    unlabelled = [f for f in on_disk if f not in rows]
    if unlabelled:
        raise EvalError(
            f"{len(unlabelled)} image(s) in {images} have no row in {labels}: {_few(unlabelled)}; "
            "add their labels or move them out of the folder"
        )
    if not on_disk:
        raise EvalError(f"{images} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    idx = np.array([rows[f] for f in on_disk])
    lab = {a: (attrs[idx, names.index(a)] > 0).astype(np.float32) for a in attributes}
    without = len(rows) - len(on_disk)  # every image has a row, so the rest are rows without one
    source = f"{images} + {labels}"
    return EvalSet(images.name, [images / f for f in on_disk], lab, source, without)


def test_split_set(exp: Experiment, attributes: list[str]) -> EvalSet:
    """The experiment's own held-out test split, as files (CelebA) or rendered images."""
    from fxcore.data.registry import load_dataset

    cfg = exp.info.get("config", {})
    dataset = cfg.get("dataset", exp.info.get("dataset"))
    if dataset in (None, "imported"):
        raise EvalError(f"{exp.name} records no dataset: pass --images DIR (and --labels FILE)")
    size = input_spec(exp.info).image_size
    root = dataset_kwargs(exp.info, "test", where=exp.path)["root"]  # found on this machine
    ds = load_dataset(dataset, split="test", root=root, attributes=attributes, image_size=size)
    labels = {a: ds.labels()[:, k].astype(np.float32) for k, a in enumerate(ds.attributes)}
    if hasattr(ds, "files"):
        folder = Path(ds._image_dir) if hasattr(ds, "_image_dir") else Path(root)
        items: list[Any] = [folder / f for f in ds.files()]
    else:
        items = [ds.sample(i).image for i in range(len(ds))]
    return EvalSet("test-split", items, labels, f"{dataset} test split")


def binary_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """accuracy, balanced accuracy, ROC-AUC and ECE of probabilities ``p`` against 0/1 ``y``."""
    p, y = np.asarray(p, np.float64), np.asarray(y) > 0.5
    pred = p >= 0.5
    correct = pred == y
    tpr = float(correct[y].mean()) if y.any() else float("nan")
    tnr = float(correct[~y].mean()) if (~y).any() else float("nan")
    conf = np.maximum(p, 1.0 - p)
    bins = np.minimum(((conf - 0.5) * 2 * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = sum(
        (bins == b).mean() * abs(correct[bins == b].mean() - conf[bins == b].mean())
        for b in range(ECE_BINS)
        if (bins == b).any()
    )
    return {
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(np.nanmean([tpr, tnr])),
        "auc": roc_auc(p, y.astype(np.float64)),
        "ece": float(ece),
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def prepare_set(
    items: list[Any], size: int, normalize: bool, mode: str, framing: str, progress: bool = True
) -> tuple[torch.Tensor, dict[str, int]]:
    """Every image through the upload path: (N, C, S, S) inputs and how each was framed."""
    from tqdm.auto import tqdm

    if framing not in FRAMINGS:
        raise EvalError(f"framing {framing!r}: use one of {', '.join(FRAMINGS)}")
    xs, how = [], {"landmarks": 0, "eyes": 0, "box": 0, "face": 0, "none": 0, "centre": 0}
    for item in tqdm(items, desc=f"preparing ({framing})", unit="img", disable=not progress):
        prep = prepare_upload(
            item,
            size,
            normalize,
            crop_face=framing != "centre",
            mode=mode,
            align=framing == "align",
        )
        xs.append(prep.tensor)
        if framing == "centre":
            how["centre"] += 1
        elif prep.align_method:
            how[prep.align_method] += 1
        else:
            how["face" if prep.cropped else "none"] += 1
    return torch.cat(xs), {k: v for k, v in how.items() if v}


@torch.no_grad()
def _probabilities(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    device = next(model.parameters()).device
    out = [
        torch.sigmoid(model(x[i : i + batch].to(device)).float()[:, 0]).cpu()
        for i in range(0, len(x), batch)
    ]
    return torch.cat(out).numpy()


def evaluate_experiment(
    exp: Experiment,
    eval_set: EvalSet | None = None,
    framing: str = "align",
    epochs: list[int] | None = None,
    progress: bool = True,
    save: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Metrics of every binary run of ``exp`` at ``epochs`` (default: all common epochs); the
    models run on ``device``, the images are prepared and the metrics computed on the host."""
    from fxcore.store.runs import common_epochs

    runs = [r for r in exp.runs if int(r.info.get("num_outputs", 1)) == 1]
    if not runs:
        raise EvalError(f"{exp.name} has no binary-attribute run; eval scores face attributes")
    attrs = [r.attribute for r in runs]
    eval_set = eval_set or test_split_set(exp, attrs)
    missing = [a for a in attrs if a not in eval_set.labels]
    if missing:
        raise EvalError(f"the labels have no column for {_few(missing)}")
    available = common_epochs(runs)
    chosen = available if epochs is None else epochs
    bad = [e for e in chosen if e not in available]
    if bad:
        raise EvalError(f"epoch {bad[0]} is not on disk; {exp.name} has epochs {available}")
    spec = input_spec(exp.info)
    size, normalize, mode = spec.image_size, spec.normalize, spec.mode
    t0 = time.perf_counter()
    x, how = prepare_set(eval_set.items, size, normalize, mode, framing, progress)
    prep_s = time.perf_counter() - t0
    results: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        y = eval_set.labels[run.attribute]
        for epoch in chosen:
            p = _probabilities(run.build_model(epoch, device), x)
            results.setdefault(run.name, {})[str(epoch)] = binary_metrics(p, y)
    record = {
        "experiment": exp.name,
        "set": eval_set.name,
        "source": eval_set.source,
        "framing": framing,
        "n_images": len(eval_set.items),
        "labels_without_image": eval_set.labels_without_image,
        "framed": how,
        "seconds_per_image": prep_s / max(1, len(eval_set.items)),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": results,
    }
    if save:
        save_evaluation(exp.path, record)
    return record

"""Every cached call of the app, in one place.

Two kinds of cache, both bounded (``max_entries`` and a time to live):

- ``st.cache_resource`` for objects shared by every session without copying: experiments, models,
  datasets, and the full-resolution per-weight mean/variance (large; frozen read-only). Models run
  only through fxcore functions that take :func:`fxcore.explain.activations.model_lock`.
- ``st.cache_data`` for results each session gets its own copy of: display maps, dynamics, CKA,
  localisation, explanations, dataset statistics.

Every key that depends on checkpoint files includes a *stamp* (size and mtime of those files), so a
re-trained or repaired run is never served stale results.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from fxcore.data.inputs import dataset_kwargs
from fxcore.store.checkpoints import CheckpointError, files_stamp
from fxcore.store.runs import Experiment, Run, experiment_stamp, load_experiment, safe_child
from fxcore.store.select import epoch_span

if TYPE_CHECKING:
    from torch import nn

    from fxcore.compare import analysis
    from fxcore.data.base import FxDataset

# torch, captum and the datasets (~2 s of imports) are imported
# inside the functions that need them so the Home page, which only reads JSON, starts without
# them. prewarm() loads them in the background once the first page is drawn.

REPO = Path(__file__).resolve().parents[1]
TTL = "1h"
Stamp = tuple[tuple[str, int, int], ...]  # see fxcore.store.runs.experiment_stamp


def checkpoints_root() -> Path:
    """``$FXCORE_CHECKPOINTS`` if set, else ``checkpoints/`` of the repository (not the CWD)."""
    env = os.environ.get("FXCORE_CHECKPOINTS", "").strip()
    return Path(env).expanduser().resolve() if env else REPO / "checkpoints"


# ---------------------------------------------------------------- stamps


# ---------------------------------------------------------------- experiments


@st.cache_resource(max_entries=64, ttl=TTL, show_spinner=False)
def _experiment(path: str, stamp: Stamp) -> tuple[Experiment | None, str | None]:
    """One experiment, every epoch header validated, once per stamp: a run that saves an epoch
    makes only its own experiment be read again."""
    try:
        exp = load_experiment(Path(path))
        for run in exp.runs:
            run.bad_epochs()
        return exp, None
    except (CheckpointError, OSError) as exc:
        return None, str(exc)


def experiments(root: Path | None = None) -> tuple[list[Experiment], list[str]]:
    """The experiments under the root and a message for each folder that could not be opened."""
    root = root or checkpoints_root()
    if not root.is_dir():
        return [], []
    found, problems = [], []
    for p in sorted(root.iterdir()):
        if not (p / "experiment.json").is_file():
            continue
        try:
            path = safe_child(root, p.name)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        exp, problem = _experiment(str(path), experiment_stamp(path))
        if exp is not None:
            found.append(exp)
        if problem:
            problems.append(problem)
    return found, problems


def experiment(name: str | None) -> Experiment | None:
    for exp in experiments()[0]:
        if exp.name == name:
            return exp
    return None


# ---------------------------------------------------------------- models and weights


def device() -> str:
    """Where the app's models run: ``$FXCORE_DEVICE`` (auto, cpu or cuda; default auto)."""
    from fxcore.core.devices import resolve_device

    return resolve_device()


@st.cache_resource(max_entries=6, ttl=TTL, show_spinner=False)
def _model(run_path: str, epoch: int, device: str, stamp: Stamp, _run: Run) -> nn.Module:
    return _run.build_model(epoch, device)


def model(run: Run, epoch: int) -> nn.Module:
    """The run's model at ``epoch`` on :func:`device` (one per device; shared by all sessions:
    only run it under its model_lock)."""
    return _model(str(run.path), epoch, device(), files_stamp([run.epoch_path(epoch)]), run)


def _epoch_stamp(runs: Sequence[Run], epochs: Sequence[int]) -> Stamp:
    return files_stamp([r.epoch_path(e) for r in runs for e in epochs])


@st.cache_resource(max_entries=4, ttl=TTL, show_spinner=False)
def _mean_var(run_path: str, key: str, lo: int, hi: int, stamp: Stamp, _run: Run):
    from fxcore.compare import analysis

    mean, var = analysis.run_mean_var(_run, key, lo, hi)
    mean.flags.writeable = False  # shared between sessions
    var.flags.writeable = False
    return mean, var


def mean_var(run: Run, key: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution per-weight mean and variance of ``key`` over epochs lo..hi (read-only)."""

    eps = epoch_span([run], lo, hi)
    return _mean_var(str(run.path), key, lo, hi, _epoch_stamp([run], eps), run)


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _weight_maps(
    paths: tuple[str, ...],
    key: str,
    lo: int,
    hi: int,
    mode: str,
    stamp: Stamp,
    _runs: Sequence[Run],
) -> analysis.WeightMaps:
    from fxcore.compare import analysis

    stats = {r.name: mean_var(r, key, lo, hi) for r in _runs}
    return analysis.weight_maps(_runs, key, lo, hi, budget=(512, 512), mode=mode, stats=stats)


def weight_maps(runs: Sequence[Run], key: str, lo: int, hi: int, mode: str = "mean"):
    """Pooled mean/variance maps of ``key`` for the runs plus their difference."""

    eps = epoch_span(runs, lo, hi)
    paths = tuple(str(r.path) for r in runs)
    return _weight_maps(paths, key, lo, hi, mode, _epoch_stamp(runs, eps), runs)


# ---------------------------------------------------------------- experiment-level measures


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _dynamics(path: str, names: tuple[str, ...], stamp: Stamp, _exp: Experiment, _runs) -> dict:
    from fxcore.compare import analysis

    return analysis.dynamics(_exp, _runs)


def dynamics(exp: Experiment, runs: Sequence[Run]) -> dict:
    names = tuple(r.name for r in runs)
    return _dynamics(str(exp.path), names, experiment_stamp(exp.path), exp, list(runs))


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _cka(path: str, names: tuple[str, ...], n_probe: int, stamp: Stamp, _exp, _runs) -> dict:
    from fxcore.compare import analysis

    return analysis.cka(_exp, _runs, n_probe=n_probe, device=device())


def cka(exp: Experiment, runs: Sequence[Run], n_probe: int) -> dict:
    names = tuple(r.name for r in runs)
    return _cka(str(exp.path), names, n_probe, experiment_stamp(exp.path), exp, list(runs))


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _localisation(
    path: str, names: tuple[str, ...], n_probe: int, stamp: Stamp, _exp, _runs
) -> dict:
    from fxcore.compare import analysis

    return analysis.localisation(_exp, _runs, n_probe=n_probe, device=device())


def localisation(exp: Experiment, runs: Sequence[Run], n_probe: int) -> dict:
    names = tuple(r.name for r in runs)
    return _localisation(str(exp.path), names, n_probe, experiment_stamp(exp.path), exp, list(runs))


# ---------------------------------------------------------------- one image


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _layer_sanity(path: str, names: tuple[str, ...], epoch: int, stamp: Stamp, _exp, _runs):
    from fxcore.core.errors import FxcoreError
    from fxcore.explain.sanity import layer_sanity as verdicts

    try:
        return verdicts(_exp, _runs, epoch), None
    except FxcoreError as exc:  # no probe images here (dataset absent): unchecked, and why
        return {}, str(exc)


def layer_sanity(exp: Experiment, runs: Sequence[Run], epoch: int):
    """:func:`fxcore.explain.sanity.layer_sanity` as ``(verdicts, None)``, or ``({}, why unchecked)``."""
    names = tuple(r.name for r in runs)
    stamp = _epoch_stamp(runs, [epoch])
    return _layer_sanity(str(exp.path), names, epoch, stamp, exp, list(runs))


@st.cache_data(max_entries=32, ttl=TTL, show_spinner=False)
def _explain(
    paths: tuple[str, ...],
    epoch: int,
    layer: str,
    image_key: str,
    top_k: int,
    stamp: Stamp,
    _runs: Sequence[Run],
    _x,
) -> list[analysis.ModelView]:
    from fxcore.compare import analysis

    models = [(r.name, r.attribute, model(r, epoch)) for r in _runs]
    return analysis.explain(models, _x, layer, top_k=top_k)


def explain(runs: Sequence[Run], epoch: int, layer: str, x, image_key: str, top_k: int = 8):
    """Feature maps, Grad-CAM and prediction of each run for one prepared image ``x`` (1,C,S,S)."""
    paths = tuple(str(r.path) for r in runs)
    stamp = _epoch_stamp(runs, [epoch])
    return _explain(paths, epoch, layer, image_key, top_k, stamp, list(runs), x)


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _prepared(
    digest: str, image_size: int, normalize: bool, crop_face: bool, mode: str, align: bool, _data
):
    from fxcore.upload.faces import prepare_upload

    return prepare_upload(_data, image_size, normalize, crop_face=crop_face, mode=mode, align=align)


def prepared_upload(
    data: bytes, image_size: int, normalize: bool, crop_face: bool, mode: str, align: bool = False
):
    """:func:`fxcore.upload.faces.prepare_upload` of the bytes, cached by their hash."""
    digest = hashlib.sha256(data).hexdigest()
    return _prepared(digest, image_size, normalize, crop_face, mode, align, data)


# ---------------------------------------------------------------- datasets


@st.cache_resource(max_entries=6, ttl=TTL, show_spinner=False)
def _dataset(name: str, split: str, frozen: tuple[tuple[str, Any], ...]) -> FxDataset:
    from fxcore.data.registry import load_dataset

    kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in frozen}
    return load_dataset(name, split=split, **kw)


def dataset(cfg: dict[str, Any], split: str = "val", **override: Any) -> FxDataset:
    """The experiment's dataset split, as :mod:`fxcore.data.inputs` rebuilds it (shared; read-only)."""
    kw = {**dataset_kwargs(cfg, split), **override}
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items()))
    return _dataset(str(cfg.get("dataset")), split, frozen)


_SAMPLE_LOCK = threading.Lock()  # datasets fill lazy caches on first use


def sample(cfg: dict[str, Any], index: int):
    """Item ``index`` of the validation split as a :class:`fxcore.data.base.Sample`."""
    ds = dataset(cfg, "val")
    with _SAMPLE_LOCK:
        return ds.sample(int(index) % max(1, len(ds)))


@st.cache_data(max_entries=8, ttl=TTL, show_spinner=False)
def sample_grid(frozen_cfg: tuple, n: int) -> list[tuple[np.ndarray, dict[str, float]]]:
    cfg = dict(frozen_cfg)
    ds = dataset(cfg, "val")
    out = []
    with _SAMPLE_LOCK:
        for i in range(min(n, len(ds))):
            s = ds.sample(i)
            out.append((np.asarray(s.image), {k: float(v) for k, v in s.labels.items()}))
    return out


@st.cache_data(max_entries=8, ttl=TTL, show_spinner=False)
def _attribute_statistics(frozen_cfg: tuple, stamp: Stamp) -> dict[str, Any]:
    from fxcore.data.inputs import attribute_statistics

    return attribute_statistics(dict(frozen_cfg))


def attribute_statistics(cfg: dict[str, Any]) -> dict[str, Any]:
    """:func:`fxcore.data.inputs.attribute_statistics`, cached (CelebA also by its table's mtime)."""
    stamp: Stamp = ()
    if cfg.get("dataset") == "celeba" and cfg.get("data_root"):
        from fxcore.data.celeba_files import ATTR_FILE, find_base

        stamp = files_stamp([find_base(dataset_kwargs(cfg, "train")["root"]) / ATTR_FILE])
    return _attribute_statistics(freeze(cfg), stamp)


def freeze(cfg: dict[str, Any]) -> tuple:
    """A hashable form of a config dict (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()))


# ---------------------------------------------------------------- demo


@st.cache_resource
def demo_lock() -> threading.Lock:
    """One demo training at a time, across every session of this server."""
    return threading.Lock()


# ---------------------------------------------------------------- start-up

_PREWARM = threading.Lock()
_prewarmed = False


def _import_heavy(delay_s: float) -> None:
    time.sleep(delay_s)
    import fxcore.compare.analysis  # noqa: F401 - the run store and the numerics
    import fxcore.explain.gradcam  # noqa: F401 - torch, captum
    import fxcore.models.nets  # noqa: F401 - torchvision
    import fxcore.upload.faces  # noqa: F401 - OpenCV for uploads


def prewarm(delay_s: float = 2.0) -> None:
    """Import the analysis stack in a background thread, once per server process.

    Called at the end of the Home page: the first visit to an analysis page then finds torch
    already imported instead of paying ~2 s on the click. The thread first waits ``delay_s``:
    importing at once holds the GIL while the server still sends the page and serves the
    frontend's chunks (measured: Home's cold start 4.5 s -> 6.0 s).
    """
    global _prewarmed
    with _PREWARM:
        if _prewarmed:
            return
        _prewarmed = True
    threading.Thread(
        target=_import_heavy, args=(delay_s,), name="fxcore-prewarm", daemon=True
    ).start()


# ---------------------------------------------------------------- trustworthy comparison


@st.cache_data(max_entries=8, ttl=TTL, show_spinner=False)
def _trust(
    path: str, names: tuple[str, ...], n_probe: int, n_resamples: int, stamp: Stamp, _exp
) -> dict:
    from fxcore.compare import control as trust

    return trust.compare(
        _exp, list(names), n_probe=n_probe, n_resamples=n_resamples, device=device()
    )


def trust_compare(exp: Experiment, runs: Sequence[Run], n_probe: int, n_resamples: int) -> dict:
    """``fxcore compare`` for the page: L1 vs L2 and L1 vs control with intervals (disk-cached)."""
    names = tuple(r.name for r in runs)
    return _trust(str(exp.path), names, n_probe, n_resamples, experiment_stamp(exp.path), exp)

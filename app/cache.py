"""Every cached call of the app, in one place.

Two kinds of cache, both bounded (``max_entries`` and a time to live):

- ``st.cache_resource`` for objects shared by every session without copying: experiments, models,
  datasets, and the full-resolution per-weight mean/variance (large; frozen read-only). Models run
  only through fxcore functions that take :func:`fxcore.activations.model_lock`.
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

from fxcore.checkpoints import CheckpointError
from fxcore.runs import Experiment, Run, load_experiment, safe_child

if TYPE_CHECKING:
    from torch import nn

    from fxcore import analysis
    from fxcore.data import FxDataset

# fxcore.analysis and fxcore.data pull in torch and captum (~2 s of imports); they are imported
# inside the functions that need them so the Home page, which only reads JSON, starts without
# them. prewarm() loads them in the background once the first page is drawn.

REPO = Path(__file__).resolve().parents[1]
TTL = "1h"
Stamp = tuple[tuple[str, int, int], ...]


def checkpoints_root() -> Path:
    """``$FXCORE_CHECKPOINTS`` if set, else ``checkpoints/`` of the repository (not the CWD)."""
    env = os.environ.get("FXCORE_CHECKPOINTS", "").strip()
    return Path(env).expanduser().resolve() if env else REPO / "checkpoints"


# ---------------------------------------------------------------- stamps


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        s = path.stat()
    except OSError:
        return (path.name, -1, -1)
    return (path.name, s.st_size, s.st_mtime_ns)


def experiment_stamp(path: Path) -> Stamp:
    """Size and mtime of every JSON/JSONL/safetensors file of an experiment (two levels deep)."""
    out: list[tuple[str, int, int]] = []
    try:
        entries = sorted(Path(path).iterdir())
    except OSError:
        return ()
    for p in entries:
        if p.is_file() and p.suffix == ".json":
            out.append(_stat(p))
        elif p.is_dir() and not p.name.startswith("."):
            try:
                files = sorted(p.iterdir())
            except OSError:
                continue
            out += [(f"{p.name}/{n}", sz, mt) for n, sz, mt in
                    (_stat(f) for f in files if f.suffix in (".json", ".jsonl", ".safetensors"))]  # fmt: skip
    return tuple(out)


def files_stamp(paths: Sequence[Path]) -> Stamp:
    return tuple((str(p), *_stat(Path(p))[1:]) for p in paths)


def root_stamp(root: Path) -> tuple[tuple[str, Stamp], ...]:
    if not root.is_dir():
        return ()
    return tuple((p.name, experiment_stamp(p)) for p in sorted(root.iterdir())
                 if (p / "experiment.json").is_file())  # fmt: skip


# ---------------------------------------------------------------- experiments


@st.cache_resource(max_entries=8, ttl=TTL, show_spinner=False)
def _experiments(root: str, stamp: Any) -> tuple[list[Experiment], list[str]]:
    found, problems = [], []
    for p in sorted(Path(root).iterdir()):
        if not (p / "experiment.json").is_file():
            continue
        try:
            exp = load_experiment(safe_child(Path(root), p.name))
            for run in exp.runs:
                run.bad_epochs()  # validate every epoch header once per stamp
            found.append(exp)
        except (CheckpointError, OSError) as exc:
            problems.append(str(exc))
    return found, problems


def experiments(root: Path | None = None) -> tuple[list[Experiment], list[str]]:
    """The experiments under the root and a message for each folder that could not be opened."""
    root = root or checkpoints_root()
    if not root.is_dir():
        return [], []
    return _experiments(str(root), root_stamp(root))


def experiment(name: str | None) -> Experiment | None:
    for exp in experiments()[0]:
        if exp.name == name:
            return exp
    return None


# ---------------------------------------------------------------- models and weights


@st.cache_resource(max_entries=6, ttl=TTL, show_spinner=False)
def _model(run_path: str, epoch: int, stamp: Stamp, _run: Run) -> nn.Module:
    return _run.build_model(epoch)


def model(run: Run, epoch: int) -> nn.Module:
    """The run's model at ``epoch`` (shared by all sessions: only run it under its model_lock)."""
    return _model(str(run.path), epoch, files_stamp([run.epoch_path(epoch)]), run)


def _epoch_stamp(runs: Sequence[Run], epochs: Sequence[int]) -> Stamp:
    return files_stamp([r.epoch_path(e) for r in runs for e in epochs])


@st.cache_resource(max_entries=4, ttl=TTL, show_spinner=False)
def _mean_var(run_path: str, key: str, lo: int, hi: int, stamp: Stamp, _run: Run):
    from fxcore import analysis

    mean, var = analysis.run_mean_var(_run, key, lo, hi)
    mean.flags.writeable = False  # shared between sessions
    var.flags.writeable = False
    return mean, var


def mean_var(run: Run, key: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution per-weight mean and variance of ``key`` over epochs lo..hi (read-only)."""
    from fxcore import analysis

    eps = analysis.epoch_span([run], lo, hi)
    return _mean_var(str(run.path), key, lo, hi, _epoch_stamp([run], eps), run)


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _weight_maps(paths: tuple[str, ...], key: str, lo: int, hi: int, mode: str, stamp: Stamp,
                 _runs: Sequence[Run]) -> analysis.WeightMaps:  # fmt: skip
    from fxcore import analysis

    stats = {r.name: mean_var(r, key, lo, hi) for r in _runs}
    return analysis.weight_maps(_runs, key, lo, hi, budget=(512, 512), mode=mode, stats=stats)


def weight_maps(runs: Sequence[Run], key: str, lo: int, hi: int, mode: str = "mean"):
    """Pooled mean/variance maps of ``key`` for the runs plus their difference."""
    from fxcore import analysis

    eps = analysis.epoch_span(runs, lo, hi)
    paths = tuple(str(r.path) for r in runs)
    return _weight_maps(paths, key, lo, hi, mode, _epoch_stamp(runs, eps), runs)


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def tensor_order(model_name: str, num_outputs: int) -> list[str]:
    """State-dict names of an architecture in model order ([] for one fxcore cannot build)."""
    import torch

    from fxcore.models import build_model

    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            net = build_model(model_name, num_outputs=num_outputs)
    except Exception:  # noqa: BLE001 - e.g. an imported architecture fxcore cannot build
        return []
    return list(net.state_dict())


# ---------------------------------------------------------------- experiment-level measures


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _dynamics(path: str, names: tuple[str, ...], stamp: Stamp, _exp: Experiment, _runs) -> dict:
    from fxcore import analysis

    return analysis.dynamics(_exp, _runs)


def dynamics(exp: Experiment, runs: Sequence[Run]) -> dict:
    names = tuple(r.name for r in runs)
    return _dynamics(str(exp.path), names, experiment_stamp(exp.path), exp, list(runs))


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _cka(path: str, names: tuple[str, ...], n_probe: int, stamp: Stamp, _exp, _runs) -> dict:
    from fxcore import analysis

    return analysis.cka(_exp, _runs, n_probe=n_probe)


def cka(exp: Experiment, runs: Sequence[Run], n_probe: int) -> dict:
    names = tuple(r.name for r in runs)
    return _cka(str(exp.path), names, n_probe, experiment_stamp(exp.path), exp, list(runs))


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _localisation(path: str, names: tuple[str, ...], n_probe: int, stamp: Stamp, _exp,
                  _runs) -> dict:  # fmt: skip
    from fxcore import analysis

    return analysis.localisation(_exp, _runs, n_probe=n_probe)


def localisation(exp: Experiment, runs: Sequence[Run], n_probe: int) -> dict:
    names = tuple(r.name for r in runs)
    return _localisation(str(exp.path), names, n_probe, experiment_stamp(exp.path), exp, list(runs))


# ---------------------------------------------------------------- one image


@st.cache_data(max_entries=32, ttl=TTL, show_spinner=False)
def _explain(paths: tuple[str, ...], epoch: int, layer: str, image_key: str, top_k: int,
             stamp: Stamp, _runs: Sequence[Run], _x) -> list[analysis.ModelView]:  # fmt: skip
    from fxcore import analysis

    models = [(r.name, r.attribute, model(r, epoch)) for r in _runs]
    return analysis.explain(models, _x, layer, top_k=top_k)


def explain(runs: Sequence[Run], epoch: int, layer: str, x, image_key: str, top_k: int = 8):
    """Feature maps, Grad-CAM and prediction of each run for one prepared image ``x`` (1,C,S,S)."""
    paths = tuple(str(r.path) for r in runs)
    stamp = _epoch_stamp(runs, [epoch])
    return _explain(paths, epoch, layer, image_key, top_k, stamp, list(runs), x)


@st.cache_data(max_entries=16, ttl=TTL, show_spinner=False)
def _prepared(digest: str, image_size: int, normalize: bool, crop_face: bool, mode: str,
              align: bool, _data):  # fmt: skip
    from fxcore.faces import prepare_upload

    return prepare_upload(_data, image_size, normalize, crop_face=crop_face, mode=mode, align=align)


def prepared_upload(data: bytes, image_size: int, normalize: bool, crop_face: bool, mode: str,
                    align: bool = False):  # fmt: skip
    """:func:`fxcore.faces.prepare_upload` of the bytes, cached by their hash."""
    digest = hashlib.sha256(data).hexdigest()
    return _prepared(digest, image_size, normalize, crop_face, mode, align, data)


# ---------------------------------------------------------------- datasets


def dataset_kwargs(cfg: dict[str, Any], split: str) -> dict[str, Any]:
    """``load_dataset`` arguments that rebuild the experiment's data (as fxcore.train does)."""
    kw: dict[str, Any] = {"root": cfg.get("data_root"), "attributes": cfg.get("attributes")}
    if cfg.get("dataset") != "mnist":
        kw["image_size"] = cfg.get("image_size", 64)
    if split == "train" and cfg.get("dataset") == "synthfaces" and cfg.get("synth_train"):
        kw["num_samples"] = cfg["synth_train"]
    return kw


@st.cache_resource(max_entries=6, ttl=TTL, show_spinner=False)
def _dataset(name: str, split: str, frozen: tuple[tuple[str, Any], ...]) -> FxDataset:
    from fxcore.data import load_dataset

    kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in frozen}
    return load_dataset(name, split=split, **kw)


def dataset(cfg: dict[str, Any], split: str = "val", **override: Any) -> FxDataset:
    """The experiment's dataset split (shared; read-only use)."""
    kw = {**dataset_kwargs(cfg, split), **override}
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items()))
    return _dataset(str(cfg.get("dataset")), split, frozen)


_SAMPLE_LOCK = threading.Lock()  # datasets fill lazy caches on first use


def sample(cfg: dict[str, Any], index: int):
    """Item ``index`` of the validation split as a :class:`fxcore.data.Sample`."""
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
def label_matrix(frozen_cfg: tuple, attributes: tuple[str, ...], split: str) -> np.ndarray:
    """Labels ``(N, K)`` of ``attributes`` over one split (no image is decoded)."""
    cfg = dict(frozen_cfg)
    return dataset(cfg, split, attributes=list(attributes)).labels()


@st.cache_data(max_entries=4, ttl=TTL, show_spinner=False)
def _celeba_stats(root: str, stamp: Stamp) -> dict[str, Any]:
    from fxcore.celeba_files import attribute_statistics

    return attribute_statistics(root)


def celeba_statistics(root: str) -> dict[str, Any]:
    """Positive rates and co-occurrence of CelebA's 40 attributes (cached by the table's mtime)."""
    from fxcore.celeba_files import ATTR_FILE, find_base

    base = find_base(root)
    return _celeba_stats(str(root), files_stamp([base / ATTR_FILE]))


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
    import fxcore.analysis  # noqa: F401 - torch, captum, the models
    import fxcore.faces  # noqa: F401 - OpenCV for uploads


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

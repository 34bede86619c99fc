"""Make a trained experiment fit to commit: float16 weights, no optimizer state, no machine path,
and the results of its own comparison.

``python -m fxcore ship EXPERIMENT`` rewrites every ``epoch_NNN.safetensors`` of every run with its
floating-point tensors in float16 (half the bytes; vgg-mini: 0.74 MB per epoch instead of 1.47 MB)
and deletes the ``optim_NNN.safetensors`` files (Adam state is only needed for ``--resume``). The
header metadata is kept and gains ``"stored_dtype": "float16"``; each file is replaced atomically.
The recorded data root (experiment.json, run.json, every epoch header) becomes relative to the
experiment folder, and experiment.json gains ``data_name``: :func:`fxcore.data.inputs.locate_data`
finds the data on another machine by that name and checks its fingerprint. The training
session's ``progress.json`` (host, pid, command line) is removed.

``python -m fxcore results store EXPERIMENT`` then computes ``compare`` (with the control, at the
defaults of ``compare --json`` and the app) and stores every result in ``EXPERIMENT/results/``
(:mod:`fxcore.store.results`); ``results verify`` recomputes them where the dataset is and says
whether they agree.

Reading back needs nothing special: ``Run.build_model`` loads the state dict into a float32 model
(``load_state_dict`` casts), the stats reader widens F16 blocks to float32/float64, and CKA and
Grad-CAM run on the float32 model. float16 keeps ~3 significant digits: the weights of a trained
vgg-mini change by < 1e-3 relative, and predictions by well under the rounding of the metrics
(``tests/test_ship.py`` checks stats, CKA and the app on a float16 copy against the float32 one).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fxcore.data.inputs import data_name, locate_data, portable_root
from fxcore.store import results
from fxcore.store.checkpoints import epoch_file, halve_epoch, update_json
from fxcore.store.runs import Experiment, load_experiment

# What `compare --json` and the app's Training dynamics page ask for by default.
DEFAULTS = {"n_probe": 128, "n_resamples": 200, "seed": 0}


def portable_config(cfg: dict[str, Any], exp_dir: Path) -> dict[str, Any]:
    """``cfg`` with an absolute ``data_root`` made relative to the experiment folder."""
    root = cfg.get("data_root")
    if root and Path(root).is_absolute():
        return {**cfg, "data_root": portable_root(root, exp_dir)}
    return cfg


def make_portable(exp_dir: Path) -> int:
    """Record the data root of experiment.json and each run.json portably; files changed."""
    exp_dir = Path(exp_dir)
    changed = 0
    for path in [exp_dir / "experiment.json", *sorted(exp_dir.glob("*/run.json"))]:

        def portable(info: dict[str, Any], path: Path = path) -> dict[str, Any]:
            if isinstance(info.get("config"), dict):
                info["config"] = portable_config(info["config"], exp_dir)
            if path.name == "experiment.json" and data_name(info) and not info.get("data_name"):
                info["data_name"] = data_name(info)
            return info

        changed += update_json(path, portable)
    return changed


def ship_experiment(path: Path) -> dict[str, int]:
    """Convert ``path`` in place; returns bytes before and after and the files touched."""
    exp_dir = load_experiment(Path(path)).path
    before = sum(f.stat().st_size for f in exp_dir.rglob("*.safetensors"))

    def portable(meta: dict) -> dict:
        if isinstance(meta.get("config"), dict):
            return {**meta, "config": portable_config(meta["config"], exp_dir)}
        return meta

    files = 0
    for run in load_experiment(exp_dir).runs:
        for optim in run.path.glob("optim_*.safetensors"):
            optim.unlink()
        files += sum(halve_epoch(epoch_file(run.path, e), portable) for e in run.epochs_on_disk())
    # The live record of the training session (its host, pid and command line) stays behind.
    (exp_dir / "progress.json").unlink(missing_ok=True)
    make_portable(exp_dir)
    after = sum(f.stat().st_size for f in exp_dir.rglob("*.safetensors"))
    return {"bytes_before": before, "bytes_after": after, "files": files}


def _compare(exp: Experiment, params: dict[str, int]) -> list[results.Recorded]:
    from fxcore.compare.control import compare

    with results.recording() as got:
        compare(exp, **params)
    return got


def store_results(exp: Experiment, **params: int) -> Path:
    """Compute ``compare`` afresh (dataset needed) and store every result with its provenance."""
    from fxcore import __version__

    params = {**DEFAULTS, **params}
    found = locate_data(exp.info, exp.path) if exp.info.get("config", {}).get("data_root") else None
    got = _compare(exp, params)
    counts = [r.result.get("n_probe") for r in got if isinstance(r.result, dict)]
    n = next((c for c in counts if c is not None), None)
    provenance = {
        "dataset": exp.info.get("dataset"),
        "data_name": data_name(exp.info),
        "data_fingerprint": exp.info.get("data_fingerprint"),
        "data_found": found.source if found else None,
        "split": "validation",
        "n_probe": n if n is not None else params["n_probe"],
        **params,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "fxcore_version": __version__,
        "torch_version": exp.info.get("torch_version"),
    }
    return results.write_store(exp.path, got, provenance)


@dataclass
class Agreement:
    name: str  # <kind>-<key>
    max_diff: float  # largest absolute difference of a number (inf: missing or reshaped)
    where: str  # the JSON path of that difference ("" when they agree)


def verify_results(exp: Experiment) -> list[Agreement]:
    """Recompute the shipped results (dataset needed) and compare each with its stored copy."""
    man = results.manifest(exp.path)
    if man is None:
        from fxcore.core.errors import CheckpointError

        raise CheckpointError(f"{exp.name} ships no results ({exp.path / results.RESULTS_DIR})")
    prov = man.get("provenance", {})
    params = {k: int(prov.get(k, v)) for k, v in DEFAULTS.items()}
    fresh = {f"{r.kind}-{r.key}": r.result for r in _compare(exp, params)}
    out = []
    for name in man["entries"]:
        body = results.read_entry(exp.path, name)
        if body is None:
            out.append(Agreement(name, float("inf"), "stored file unreadable or damaged"))
            continue
        stored = body["result"]
        if name not in fresh:
            out.append(Agreement(name, float("inf"), "not recomputed (other weights?)"))
            continue
        diffs = list(results.differences(stored, fresh[name]))
        worst = max(diffs, key=lambda d: d[1], default=("", 0.0))
        out.append(Agreement(name, worst[1], worst[0]))
    return out

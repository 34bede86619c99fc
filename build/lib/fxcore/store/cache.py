"""The disk cache of every expensive result, in ``<experiment>/.fxcore-cache/``.

A result is keyed by its kind, the kind's schema version, its parameters and every epoch file's size
and mtime, so a changed or re-trained run, or a changed result format, is never served stale. On a
miss the experiment's shipped results (:mod:`fxcore.store.results`) answer before anything is computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from fxcore.store import results
from fxcore.store.checkpoints import CheckpointError, atomic_write_json, file_stamp
from fxcore.store.runs import Experiment, Run


def layers_param(layers: Sequence[str] | None) -> dict[str, Any]:
    """The cache parameter of a layer limit: nothing without one, so the key stays as it was."""
    return {"layers": sorted(layers)} if layers else {}


def _cache_key(kind: str, runs: Sequence[Run], epochs: Sequence[int], params: dict) -> str:
    key = [kind, results.schema(kind), params, list(epochs)]
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for run in runs:
        for e in epochs:
            size, mtime = file_stamp(run.epoch_path(e))
            h.update(f"{run.path.name}/{e}:{size}:{mtime}".encode())
    return f"{kind}-{h.hexdigest()[:20]}"


def cached(
    exp: Experiment,
    kind: str,
    runs: Sequence[Run],
    epochs: Sequence[int],
    params: dict[str, Any],
    compute: Callable[[], Any],
) -> Any:
    """The local cache's result, else the shipped one (:func:`fxcore.store.results.lookup`, with its
    ``provenance``), else ``compute()`` cached; :func:`fxcore.store.results.recording` skips both."""
    path = exp.path / ".fxcore-cache" / f"{_cache_key(kind, runs, epochs, params)}.json"
    if path.is_file() and not results.is_recording():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # unreadable cache: recompute
    shipped = results.lookup(exp, kind, runs, epochs, params)
    if shipped is not None:
        return shipped
    results.record(kind, runs, epochs, params, result := compute())
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, result)
    except (OSError, CheckpointError):
        pass  # read-only experiment folder: still answer, just do not cache
    return result

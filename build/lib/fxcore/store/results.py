"""Shipped comparison results: what an experiment measured, committed beside its weights.

``<experiment>/results/`` holds one gzipped JSON file per analysis result (dynamics, CKA, localisation,
accuracy, probes, attribution) and a ``manifest.json`` naming them, with where they came from
(dataset, its fingerprint, probe images, date, fxcore version). A clone without the dataset
reads the numbers from here (:func:`lookup`, called by :func:`fxcore.store.cache.cached` when its
local cache misses); ``python -m fxcore results store|verify`` writes and re-checks them.

Each entry is keyed by the result kind, its schema version, its parameters, the epochs and the
*content* of every epoch file involved (a SHA-256, not a file time: a fresh clone has new mtimes),
so an entry is served only for exactly the weights it was computed from. Files are written
atomically through :mod:`fxcore.store.checkpoints`, read as JSON (no pickle) and checked on read:
format, schema version, key and a checksum of the result; an entry failing a check is ignored.
"""

from __future__ import annotations

import contextvars
import gzip
import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxcore.data.inputs import DATASET_NAMES
from fxcore.store.checkpoints import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    file_stamp,
    read_json,
)

if TYPE_CHECKING:
    from fxcore.store.runs import Experiment, Run

FORMAT = "fxcore-results/1"
RESULTS_DIR = "results"
MANIFEST = "manifest.json"
# Schema version of each result kind: bump one when its result's layout or meaning changes, so
# neither the local cache nor a shipped store serves the old form.
SCHEMA = {
    "dynamics": 2,  # 2: update geometry
    "cka": 1,
    "localisation": 1,
    "accuracy": 1,
    "probes": 1,
    "attribution": 1,
}
FACE_NOUN = {"celeba": "faces", "synthfaces": "faces"}


def schema(kind: str) -> int:
    return SCHEMA.get(kind, 1)


# ---------------------------------------------------------------- keys

_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (remembered while its size and mtime stay the same)."""
    size, mtime = file_stamp(path)
    key = (str(path), size, mtime)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return "unreadable"
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def entry_key(kind: str, runs: Sequence[Run], epochs: Sequence[int], params: dict) -> str:
    """Portable key of one result: kind, schema, parameters, epochs, epoch-file contents."""
    h = hashlib.sha256(
        json.dumps([kind, schema(kind), params, list(epochs)], sort_keys=True).encode()
    )
    for run in runs:
        for e in epochs:
            h.update(f"{run.path.name}/{e}:{file_digest(run.epoch_path(e))}".encode())
    return h.hexdigest()[:20]


def _checksum(result: Any) -> str:
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- recording and bypassing


@dataclass
class Recorded:
    kind: str
    key: str
    runs: list[str]
    epochs: list[int]
    params: dict[str, Any]
    result: Any = field(repr=False)


_RECORDING: contextvars.ContextVar[list[Recorded] | None] = contextvars.ContextVar(
    "fxcore_results_recording", default=None
)


@contextmanager
def recording() -> Iterator[list[Recorded]]:
    """Compute afresh (no local cache, no shipped store) and collect every result computed."""
    got: list[Recorded] = []
    token = _RECORDING.set(got)
    try:
        yield got
    finally:
        _RECORDING.reset(token)


def is_recording() -> bool:
    return _RECORDING.get() is not None


def record(kind: str, runs: Sequence[Run], epochs: Sequence[int], params: dict, result) -> None:
    """Keep ``result`` when inside :func:`recording` (JSON round trip: what a reader gets)."""
    got = _RECORDING.get()
    if got is not None:
        clean = json.loads(json.dumps(result))
        key = entry_key(kind, runs, epochs, params)
        got.append(Recorded(kind, key, [r.name for r in runs], list(epochs), params, clean))


# ---------------------------------------------------------------- reading


def manifest(exp_path: Path) -> dict[str, Any] | None:
    """The experiment's results manifest, or None when it ships none (or it is unreadable)."""
    path = Path(exp_path) / RESULTS_DIR / MANIFEST
    if not path.is_file():
        return None
    try:
        man = read_json(path)
    except CheckpointError as exc:
        warnings.warn(f"shipped results ignored: {exc}", stacklevel=2)
        return None
    if man.get("format") != FORMAT or not isinstance(man.get("entries"), dict):
        warnings.warn(f"shipped results ignored: {path} is not {FORMAT}", stacklevel=2)
        return None
    return man


def _read_entry(exp_path: Path, kind: str, key: str) -> dict[str, Any] | None:
    """The checked file of one manifest entry (None, with a warning, when a check fails)."""
    path = entry_path(exp_path, f"{kind}-{key}")
    try:
        obj = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
        warnings.warn(f"shipped result {path.name} ignored: unreadable ({exc})", stacklevel=2)
        return None
    if not isinstance(obj, dict):
        warnings.warn(f"shipped result {path.name} ignored: not a JSON object", stacklevel=2)
        return None
    problem = None
    if obj.get("format") != FORMAT or obj.get("kind") != kind or obj.get("key") != key:
        problem = "format, kind or key does not match its name"
    elif obj.get("schema") != schema(kind):
        problem = f"schema {obj.get('schema')} (this fxcore reads {kind} schema {schema(kind)})"
    elif obj.get("sha256") != _checksum(obj.get("result")):
        problem = "checksum does not match (edited or damaged)"
    if problem:
        warnings.warn(f"shipped result {path.name} ignored: {problem}", stacklevel=2)
        return None
    return obj


def entry_path(exp_path: Path, name: str) -> Path:
    return Path(exp_path) / RESULTS_DIR / f"{name}.json.gz"


def read_entry(exp_path: Path, name: str) -> dict[str, Any] | None:
    """The checked stored body of manifest entry ``name`` (``<kind>-<key>``), or None."""
    kind, _, key = name.rpartition("-")
    return _read_entry(exp_path, kind, key)


def lookup(
    exp: Experiment, kind: str, runs: Sequence[Run], epochs: Sequence[int], params: dict
) -> Any | None:
    """The shipped result for exactly these inputs with its ``provenance``, or None."""
    if is_recording():
        return None
    man = manifest(exp.path)
    if man is None:
        return None
    key = entry_key(kind, runs, epochs, params)
    if f"{kind}-{key}" not in man["entries"]:
        return None
    obj = _read_entry(exp.path, kind, key)
    if obj is None:
        return None
    result = obj["result"]
    if isinstance(result, dict):
        result["provenance"] = {**man.get("provenance", {}), "source": "shipped"}
    return result


def provenance_label(prov: dict[str, Any]) -> str:
    """One line saying what shipped numbers were computed on, when and with what."""
    ds = prov.get("dataset")
    noun = FACE_NOUN.get(ds, "images")
    data = f"dataset {prov['data_name']}" if prov.get("data_name") else "the dataset"
    fp = f" (fingerprint {prov['data_fingerprint']})" if prov.get("data_fingerprint") else ""
    return (
        f"computed on {prov.get('n_probe', '?')} {DATASET_NAMES.get(ds, ds)} "
        f"{prov.get('split', 'validation')} {noun} of {data}{fp} on {prov.get('date', '?')} "
        f"with fxcore {prov.get('fxcore_version', '?')}"
    )


# ---------------------------------------------------------------- writing


def write_store(exp_path: Path, entries: Sequence[Recorded], provenance: dict[str, Any]) -> Path:
    """Write ``entries`` (each file atomically, then the manifest naming them; old files that
    the new manifest does not name are removed last). Returns the manifest path."""
    folder = Path(exp_path) / RESULTS_DIR
    folder.mkdir(exist_ok=True)
    names: dict[str, dict[str, Any]] = {}
    for e in entries:
        name = f"{e.kind}-{e.key}"
        body = {
            "format": FORMAT,
            "kind": e.kind,
            "schema": schema(e.kind),
            "key": e.key,
            "runs": e.runs,
            "epochs": e.epochs,
            "params": e.params,
            "sha256": _checksum(e.result),
            "result": e.result,
        }
        # Compact and gzipped (mtime 0: the same result gives the same bytes): the attribution
        # maps alone are ~10^5 numbers per run.
        data = json.dumps(body, separators=(",", ":")).encode()
        atomic_write_bytes(entry_path(exp_path, name), gzip.compress(data, 9, mtime=0))
        names[name] = {"kind": e.kind, "schema": schema(e.kind), "runs": e.runs}
    path = folder / MANIFEST
    atomic_write_json(path, {"format": FORMAT, "provenance": provenance, "entries": names})
    keep = {MANIFEST, *(entry_path(exp_path, n).name for n in names)}
    for old in folder.iterdir():
        if old.name not in keep:
            old.unlink()
    return path


def differences(a: Any, b: Any, where: str = "") -> Iterator[tuple[str, float]]:
    """``(path, |a - b|)`` for every numeric leaf where two JSON results differ (inf: shape)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k == "provenance":
                continue
            if k not in a or k not in b:
                yield f"{where}/{k}", float("inf")
            else:
                yield from differences(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield where, float("inf")
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]")
    elif isinstance(a, bool | str | type(None)) or isinstance(b, bool | str | type(None)):
        if a != b:
            yield where, float("inf")
    else:
        x, y = float(a), float(b)
        if x != y and not (x != x and y != y):  # NaN equals NaN here
            yield where, abs(x - y)

"""Checkpoint files: atomic safetensors writes, JSON sidecars, and header validation without torch.

Layout (see ``checkpoints/README.md``)::

    <root>/<experiment>/experiment.json          what the K runs share (config, data fingerprint)
    <root>/<experiment>/<run>/run.json           the run's attribute, model, tensor names and shapes
    <root>/<experiment>/<run>/epoch_NNN.safetensors   state dict after epoch N (000 = shared init)
    <root>/<experiment>/<run>/metrics.jsonl      one JSON row per finished epoch (append-only)
    <root>/<experiment>/<run>/optim_NNN.safetensors   optimizer state for --resume (latest two kept)

Nothing here unpickles: safetensors holds raw tensors and a JSON header we parse ourselves.
The lazy reader on top of these files (runs, experiments) is :mod:`fxcore.store.runs`.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxcore.core.errors import CheckpointError  # noqa: F401 - re-exported

if TYPE_CHECKING:  # torch is imported by the functions that make tensors: listing runs stays fast
    import torch

FORMAT = "fxcore/1"
EPOCH_RE = re.compile(r"^epoch_(\d{3,})\.safetensors$")
# safetensors dtype tag -> little-endian numpy dtype of the stored bytes (BF16 is widened on read)
# and its size in bytes: the one table for the header check here and the readers in fxcore.measures.stats.
DTYPES = {
    "F64": ("<f8", 8),
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<u2", 2),
    "I64": ("<i8", 8),
    "I32": ("<i4", 4),
    "I16": ("<i2", 2),
    "I8": ("i1", 1),
    "U8": ("u1", 1),
    "BOOL": ("?", 1),
}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def epoch_file(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / f"epoch_{epoch:03d}.safetensors"


def file_stamp(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file, ``(-1, -1)`` when it cannot be read: the key that makes
    the disk cache and the app cache notice a changed or re-trained checkpoint."""
    try:
        st = Path(path).stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def files_stamp(paths: Any) -> tuple[tuple[str, int, int], ...]:
    """:func:`file_stamp` of each path, with the path."""
    return tuple((str(p), *file_stamp(Path(p))) for p in paths)


# ---------------------------------------------------------------- atomic writes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename over ``path``, fsync the folder.

    A crash at any point leaves either the old file or the complete new one, never a partial file
    under the final name (readers ignore ``*.tmp``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:  # Ctrl-C mid-write: leave no temp file behind either
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    # Insertion order is kept: run.json lists tensors in model order (the app's layer picker).
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write a safetensors file; ``meta`` goes into the header as one JSON string."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = save(clean, metadata={"format": FORMAT, "fxcore": json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(path, data)


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON row and fsync (a torn last line is ignored by :func:`read_jsonl`)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file of the store; anything else is a CheckpointError naming the file."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable or not valid JSON") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return obj


def update_json(path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Rewrite a metadata file (experiment.json, run.json) atomically as ``change`` returns it;
    False, and nothing written, when it returns the same content."""
    info = read_json(path)
    new = change(dict(info))
    if new == info:
        return False
    atomic_write_json(path, new)
    return True


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-append
        if isinstance(row, dict):
            rows.append(row)
    return rows


# ---------------------------------------------------------------- validation


def _parse_header(path: Path) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and check a safetensors header without reading tensor data.

    Returns ``({name: {"dtype", "shape", "data_offsets"}}, metadata, data start)``; raises
    CheckpointError for a
    truncated file, random bytes, offsets beyond the end of the file or inconsistent sizes.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated ({size} bytes, no safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"{path}: not a safetensors file or truncated header")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header (not JSON)") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header")
    meta = header.pop("__metadata__", None) or {}
    data_len = size - 8 - n
    for name, info in header.items():
        try:
            start, end = info["data_offsets"]
            numel = 1
            for d in info["shape"]:
                numel *= int(d)
            expected = numel * DTYPES[info["dtype"]][1]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed entry for tensor {name!r}") from exc
        if end > data_len:
            raise CheckpointError(
                f"{path}: tensor {name!r} ends at byte {end} but the file holds {data_len} "
                "(truncated or corrupt)"
            )
        if end - start != expected:
            raise CheckpointError(f"{path}: tensor {name!r} size does not match its shape")
    return header, meta, 8 + n


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and metadata of a validated safetensors header (see :func:`_parse_header`)."""
    header, meta, _ = _parse_header(path)
    return header, meta


def tensor_location(path: Path, key: str) -> tuple[tuple[int, ...], str, int]:
    """``(shape, dtype tag, absolute byte offset)`` of one tensor in a validated file."""
    header, _, start = _parse_header(path)
    if key not in header:
        names = ", ".join(list(header)[:8])
        raise CheckpointError(f"tensor {key!r} is not in {path}; keys start with: {names}")
    entry = header[key]
    return (
        tuple(int(d) for d in entry["shape"]),
        entry["dtype"],
        start + int(entry["data_offsets"][0]),
    )


def read_meta(path: Path) -> dict[str, Any]:
    """The fxcore metadata JSON of a checkpoint (validated header)."""
    _, meta = read_header(path)
    try:
        return json.loads(meta.get("fxcore", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata field 'fxcore' is not valid JSON") from exc


# ---------------------------------------------------------------- writing the store


def _versions() -> dict[str, str]:
    import torch

    from fxcore import __version__

    return {"fxcore_version": __version__, "torch_version": torch.__version__}


def create_experiment(
    path: Path,
    dataset: str,
    model: str,
    attributes: list[str],
    config: dict[str, Any],
    runs: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``experiment.json`` of a new experiment (runs: named by attribute unless given)."""
    path = Path(path)
    info = {
        "format": FORMAT,
        "name": path.name,
        "dataset": dataset,
        "model": model,
        "attributes": list(attributes),
        "runs": list(runs or attributes),
        "config": config,
        **extra,
        **_versions(),
    }
    atomic_write_json(path / "experiment.json", info)
    return info


def add_run(path: Path, run: str, attribute: str, model: str, **defaults: Any) -> dict[str, Any]:
    """Register one more run in ``experiment.json``, creating the file when absent."""
    exp_json = Path(path) / "experiment.json"
    info = (
        read_json(exp_json)
        if exp_json.is_file()
        else {
            "format": FORMAT,
            "name": Path(path).name,
            "model": model,
            "attributes": [],
            "runs": [],
            **defaults,
        }
    )
    if run not in info.setdefault("runs", []):
        info["runs"].append(run)
        info.setdefault("attributes", []).append(attribute)
    atomic_write_json(exp_json, info)
    return info


def create_run(
    run_dir: Path,
    attribute: str,
    model: str,
    dataset: str,
    num_outputs: int,
    config: dict[str, Any],
    tensors: dict[str, list[int]],
    **extra: Any,
) -> dict[str, Any]:
    """Write ``run.json`` (tensors in model order: the app's layer pickers read it so) and start
    an empty metrics log."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    info = {
        "format": FORMAT,
        "experiment": run_dir.parent.name,
        "run": run_dir.name,
        "attribute": attribute,
        "model": model,
        "dataset": dataset,
        "num_outputs": num_outputs,
        "config": config,
        "tensors": tensors,
        **extra,
    }
    atomic_write_json(run_dir / "run.json", info)
    return info


def write_epoch(
    run_dir: Path,
    epoch: int,
    state: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None,
    **meta: Any,
) -> Path:
    """Write one epoch: weights with their metadata, then (if given) the metrics row.

    The row marks the epoch complete, so it is written last (crash safety); ``meta`` (run name,
    config, data fingerprint, import source ...) goes into the checkpoint header with the epoch,
    the metrics and the library versions.
    """
    path = epoch_file(run_dir, epoch)
    header = {"epoch": epoch, **meta, **_versions()}
    if metrics is not None:
        header["metrics"] = metrics
    save_checkpoint(path, state, header)
    if metrics and epoch > 0:
        append_jsonl(Path(run_dir) / "metrics.jsonl", metrics)
    return path


def halve_epoch(path: Path, update_meta: Callable[[dict], dict] | None = None) -> bool:
    """Rewrite one epoch file with its floating-point tensors in float16 (atomically; metadata
    kept, plus ``"stored_dtype": "float16"``, then passed through ``update_meta``). False when
    nothing changed (already float16 with that metadata)."""
    import torch
    from safetensors.torch import load_file

    old = read_meta(path)
    meta = {**old, "stored_dtype": "float16"}
    meta = update_meta(meta) if update_meta else meta
    tensors = load_file(str(path))
    half_already = all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    if half_already and meta == old:
        return False
    half = {k: t.half() if t.is_floating_point() else t for k, t in tensors.items()}
    save_checkpoint(path, half, meta)
    return True

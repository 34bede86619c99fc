"""The experiment folder between training sessions: start fresh, resume, or refuse; and repair.

The last *complete* epoch is the one every run finished (checkpoint, metrics row and optimizer
state); after Ctrl-C, a crash or a failed write everything past it is rolled back, so ``--resume``
always restarts from a consistent point.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from fxcore.store.checkpoints import (
    CheckpointError,
    atomic_write_bytes,
    epoch_file,
    read_jsonl,
)
from fxcore.store.runs import load_experiment
from fxcore.train.config import LEGACY_AUGMENT, RESUMABLE_KEYS, run_names

if TYPE_CHECKING:
    from fxcore.train.config import TrainConfig


def prepare_out(out: Path, cfg: TrainConfig, resume: bool, force: bool) -> int:
    """Check/prepare the experiment folder; return the epoch to start after (-1 = fresh)."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is a file; pass a folder for --out")
    if (out / "experiment.json").is_file():
        exp = load_experiment(out)
        # Keys added to the config later: an older experiment used their default, except
        # --augment, which did not exist before (such experiments were trained without it).
        saved = {**asdict(type(cfg)()), "augment": LEGACY_AUGMENT, **exp.info.get("config", {})}
        same = {k: v for k, v in saved.items() if k not in RESUMABLE_KEYS} == cfg.shared()
        if force:
            for run in exp.runs:
                shutil.rmtree(run.path)
            return -1
        if not same:
            diff = sorted(k for k in cfg.shared() if saved.get(k) != cfg.shared()[k])
            raise CheckpointError(
                f"{out} holds an experiment with a different config (differs in: "
                f"{', '.join(diff)}); choose another --out or pass --force to overwrite it"
            )
        done = complete_epoch(out, run_names(cfg.attributes, cfg.controls))
        if cfg.lr_schedule != "constant" and saved.get("epochs") != cfg.epochs and done > 0:
            raise CheckpointError(
                f"{out} was trained with --lr-schedule {cfg.lr_schedule} over "
                f"--epochs {saved.get('epochs')}; the schedule's length cannot change after "
                f"epoch 1: resume with --epochs {saved.get('epochs')}, or train a new experiment"
            )
        if not resume:
            if done < 0:
                return -1
            raise CheckpointError(
                f"{out} already has epochs 0..{done}; pass --resume to continue "
                "(or --force to start over)"
            )
        return done
    try:  # fail before any training if the folder cannot be created or is read-only
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / ".write-test", b"ok")
        (out / ".write-test").unlink()
    except (CheckpointError, OSError) as exc:
        raise CheckpointError(f"{out}: cannot write checkpoints here ({exc})") from exc
    return -1


def complete_epoch(out: Path, attributes: list[str]) -> int:
    """Last epoch that every run finished: valid checkpoint, metrics row and optimizer state."""
    done = []
    for attr in attributes:
        run_dir = out / attr
        rows = {int(r["epoch"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "epoch" in r}
        e = -1
        while epoch_file(run_dir, e + 1).is_file() and (e + 1 == 0 or e + 1 in rows):
            e += 1
        done.append(e)
    last = min(done) if done else -1
    # Only the latest two optimizer states are kept, so require one at the resume point only.
    while last >= 0 and not all(
        (out / a / f"optim_{last:03d}.safetensors").is_file() for a in attributes
    ):
        last -= 1
    return last


def drop_temp(folder: Path) -> None:
    """Remove temp files a killed writer left (atomic writes name them ``.<name>.<pid>.tmp``)."""
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def rollback(run_dir: Path, keep_upto: int) -> None:
    """Drop anything past the last complete epoch so files and metrics agree again."""
    # Metrics first: a crash in between then leaves extra checkpoints, never rows without one.
    rows = [
        r for r in read_jsonl(run_dir / "metrics.jsonl") if int(r.get("epoch", -1)) <= keep_upto
    ]
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    atomic_write_bytes(run_dir / "metrics.jsonl", data.encode())
    for p in run_dir.glob("*.safetensors"):
        stem = p.stem.split("_")
        if len(stem) == 2 and stem[1].isdigit() and int(stem[1]) > keep_upto:
            p.unlink()
    drop_temp(run_dir)


def settle(out: Path, attrs: list[str]) -> None:
    """After Ctrl-C or a failed write: roll every run back to the last epoch all of them finished."""
    try:
        done = complete_epoch(out, attrs)
        for a in attrs if done >= 0 else []:
            rollback(out / a, done)
    except (CheckpointError, OSError):
        pass  # e.g. the disk is still full: --resume rolls back the same way

"""Live training progress: ``<experiment>/progress.json``, written by the trainer, read by the app.

The trainer (rank 0 only) replaces the file atomically at the start, at most every ``interval_s``
seconds while batches run (one clock comparison per batch otherwise), after every epoch and when
it ends: ``finished``, ``interrupted`` (Ctrl-C) or ``failed`` (with the one-line error). A run
killed with SIGKILL cannot say so: :func:`live_state` calls it ``stale`` when its last update is
older than ``STALE_AFTER_S`` or, on the same host, when its process is gone.

Torch-free: listing experiments and refreshing the app read this JSON only.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fxcore.store.checkpoints import CheckpointError, atomic_write_json

PROGRESS_FILE = "progress.json"
STATES = ("running", "finished", "interrupted", "failed", "stale")
STOPPED = ("interrupted", "failed", "stale")  # the run ended before its last epoch
INTERVAL_S = 3.0  # the trainer writes at most this often while batches run
STALE_AFTER_S = 300.0  # no update for this long: the trainer is gone (evaluation writes before)


@dataclass
class Progress:
    """What ``progress.json`` holds (times are Unix seconds)."""

    state: str = "running"
    epoch: int = 0  # the epoch being trained (1-based; 0 = before the first)
    epochs: int = 0  # the epoch the run trains up to (--epochs)
    done: int = -1  # the last epoch saved complete (-1 = none)
    batch: int = 0  # batches of ``epoch`` done
    batches: int = 0  # batches per epoch
    phase: str = "starting"  # starting | training | evaluating | saved | ended
    images_per_s: float | None = None
    eta_s: float | None = None
    started: float = 0.0
    updated: float = 0.0
    host: str = ""
    pid: int = 0
    error: str | None = None
    command: str = ""  # ``python -m fxcore train ... --resume``: continues this run

    @property
    def fraction(self) -> float:
        """Share of the run's epochs done, counting the current epoch's batches."""
        if self.epochs <= 0:
            return 0.0
        part = self.batch / self.batches if self.batches and self.epoch > self.done else 0.0
        return min(1.0, max(0.0, (max(self.done, 0) + part) / self.epochs))

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Progress:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})


def train_command(config: dict[str, Any], out: str | Path, resume: bool = True) -> str:
    """The ``python -m fxcore train`` command line that trains ``config`` into ``out``.

    Every config key is a ``--flag`` of the same name (``--no-progress`` for ``progress=False``),
    so the command repeats the run exactly; with ``resume`` it continues from the last epoch saved.
    """
    args = ["python", "-m", "fxcore", "train"]
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if key == "progress":
            args += [] if value else ["--no-progress"]
        elif isinstance(value, bool):
            args += [flag] if value else []
        elif isinstance(value, list | tuple):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    args += ["--out", str(Path(out).resolve())] + (["--resume"] if resume else [])
    return shlex.join(args)


def read_progress(exp_dir: str | Path) -> Progress | None:
    """The experiment's progress, or None when it has none (or it cannot be read)."""
    path = Path(exp_dir) / PROGRESS_FILE
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return Progress.from_dict(obj) if isinstance(obj, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a killed child not yet reaped by its parent is a zombie ("Z")
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def live_state(p: Progress, now: float | None = None, host: str | None = None) -> str:
    """running / finished / interrupted / failed, or stale for a trainer that vanished."""
    if p.state != "running":
        return p.state if p.state in STATES else "failed"
    now = time.time() if now is None else now
    if (host or socket.gethostname()) == p.host and not pid_alive(p.pid):
        return "stale"
    return "stale" if now - p.updated > STALE_AFTER_S else "running"


def state_fields(exp_dir: str | Path) -> dict[str, Any]:
    """``state`` (None without progress.json), ``progress`` (the JSON) and ``epoch_of`` ("x/N")."""
    p = read_progress(exp_dir)
    if p is None:
        return {"state": None, "epoch_of": None, "progress": None}
    return {
        "state": live_state(p),
        "epoch_of": f"{max(p.done, 0)}/{p.epochs}",
        "progress": asdict(p),
    }


def duration(seconds: float | None) -> str:
    """``1 h 05 min``, ``3 min 20 s``, ``12 s``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class ProgressWriter:
    """The trainer's side: cheap calls from the training loop; writes only when it is time.

    Disabled (every call a no-op) on ranks other than 0. A write that fails (disk full) turns
    it off and never stops the training.
    """

    def __init__(
        self,
        out: Path,
        config: dict[str, Any],
        start: int,
        enabled: bool = True,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.enabled, self.path, self.interval_s = enabled, Path(out) / PROGRESS_FILE, interval_s
        now = time.time()
        self.p = Progress(
            epoch=max(start, 0) + 1,
            epochs=int(config.get("epochs", 0)),
            done=start,
            started=now,
            updated=now,
            host=socket.gethostname(),
            pid=os.getpid(),
            command=train_command(config, out),
        )
        self._last = 0.0  # monotonic time of the last write
        self._epoch_t0 = time.monotonic()
        self._epoch_s: float | None = None  # wall time of the last whole epoch (eval included)
        if enabled:  # what a trainer killed in the middle of a progress write left
            for tmp in self.path.parent.glob(f".{PROGRESS_FILE}.*.tmp"):
                tmp.unlink(missing_ok=True)
        self._write()

    def _write(self) -> None:
        if not self.enabled:
            return
        self.p.updated = time.time()
        self._last = time.monotonic()
        try:
            atomic_write_json(self.path, asdict(self.p))
        except CheckpointError:
            # Full or read-only disk: the checkpoint written next fails with the one error line
            # the user needs; a second line about progress would only repeat it.
            self.enabled = False

    def epoch_start(self, epoch: int, batches: int) -> None:
        self.p.epoch, self.p.done, self.p.phase = epoch, epoch - 1, "training"
        self.p.batch, self.p.batches = 0, batches
        self._epoch_t0 = time.monotonic()
        self._write()

    def step(self, batch: int, seen: int, total: int) -> None:
        """After ``batch`` batches (``seen`` of ``total`` images) of the current epoch."""
        if not self.enabled or time.monotonic() - self._last < self.interval_s:
            return
        elapsed = max(time.monotonic() - self._epoch_t0, 1e-9)
        self.p.batch, self.p.images_per_s = batch, seen / elapsed
        epoch_s = self._epoch_s or elapsed * total / max(seen, 1)
        left = self.p.epochs - self.p.epoch
        self.p.eta_s = max(0.0, epoch_s - elapsed) + left * epoch_s
        self._write()

    def phase(self, name: str) -> None:
        """Evaluation and saving can take a while: say so (and keep the run from looking stale)."""
        self.p.phase, self.p.batch = name, self.p.batches
        self._write()

    def epoch_done(self, epoch: int, images: int) -> None:
        self._epoch_s = time.monotonic() - self._epoch_t0
        self.p.done, self.p.phase = epoch, "saved"
        self.p.images_per_s = images / max(self._epoch_s, 1e-9)
        self.p.eta_s = (self.p.epochs - epoch) * self._epoch_s
        self._write()

    def end(self, state: str, error: BaseException | None = None) -> None:
        """The run ends: ``finished``, ``interrupted`` or ``failed`` (one line of ``error``)."""
        self.p.state, self.p.phase = state, "ended"
        if state == "finished":
            self.p.eta_s = 0.0
        if error is not None:
            lines = str(error).strip().splitlines() or [type(error).__name__]
            self.p.error = f"{type(error).__name__}: {lines[0]}"
        self._write()

"""The built-in demo experiments, trained offline so the app shows real content on a fresh clone.

``make run`` trains them in the background (niced, one at a time) while the app already serves the
shipped experiments; each appears through its ``progress.json`` like any run. Training writes
every file atomically, so a stopped ``make run`` leaves complete epochs only, and the next
``demo --if-missing`` resumes a demo that did not finish. A lock file keeps a second trainer
(another ``make run``, the Home page's button) from training the same demo at the same time.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fxcore.compare.analysis import compare
from fxcore.data.base import DataError
from fxcore.store.checkpoints import CheckpointError
from fxcore.store.runs import load_experiment
from fxcore.train.config import TrainConfig, run_names
from fxcore.train.loop import train
from fxcore.train.resume import complete_epoch

# SynthFaces pair: the project's two default attributes on the embedded face generator.
SYNTH = TrainConfig(
    dataset="synthfaces",
    attributes=["Smiling", "Male"],
    model="vgg-mini",
    image_size=64,
    epochs=3,
    batch_size=32,
    lr=1e-3,
    seed=0,
    pretrained="no",
    synth_train=3000,
    max_val=1000,
    augment="off",  # the demo's recipe predates --augment; 3 epochs on cartoons need none
)
# The seed's MNIST study: 3-layer MLP, Adam, MSE on one-hot targets, 5 epochs (bundled MNIST copy).
MNIST = TrainConfig(
    dataset="mnist",
    attributes=["digit"],
    model="fcnn3",
    epochs=5,
    batch_size=32,
    lr=1e-3,
    loss="mse",
    seed=0,
    pretrained="no",
)
DEMOS = {"synthfaces-smiling-vs-male": SYNTH, "mnist-fcnn3": MNIST}
PROBE = 128  # the Training dynamics page's default probe count: its first visit reads the cache
# Experiments committed to the repository (checkpoints/<name>/, see its README): they ship trained.
SHIPPED = ("celeba-pair",)


LOCK = ".demo.lock"


def finished(out: Path, cfg: TrainConfig) -> bool:
    """Whether a demo folder holds every epoch of its config (an interrupted one does not)."""
    if not (Path(out) / "experiment.json").is_file():
        return False
    return complete_epoch(Path(out), run_names(cfg.attributes, cfg.controls)) >= cfg.epochs


def missing_demos(root: Path) -> list[str]:
    """Demos to train for ``demo --if-missing``: those absent or unfinished in a root that holds
    nothing but demos and shipped experiments (a folder of the user's own experiments is left
    alone)."""
    names = (
        [p.name for p in Path(root).iterdir() if (p / "experiment.json").is_file()]
        if Path(root).is_dir()
        else []
    )
    if any(n not in DEMOS and n not in SHIPPED for n in names):
        return []
    return [n for n, cfg in DEMOS.items() if not finished(Path(root) / n, cfg)]


@contextlib.contextmanager
def trainer_lock(root: Path) -> Iterator[bool]:
    """Hold ``root/.demo.lock`` while training; yields False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one trainer is the user's business
        yield True
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_demo(root: Path, names: list[str] | None = None) -> list[Path]:
    """Train each demo experiment under ``root`` (resuming any that an interruption left);
    nothing when another process is training the demos here already."""
    made = []
    with trainer_lock(Path(root)) as mine, _term_as_interrupt():
        if not mine:
            print(f"demo: another process is training the demos in {root}", file=sys.stderr)
            return made
        for name, cfg in DEMOS.items():
            if names and name not in names:
                continue
            made.append(_train_one(Path(root) / name, name, cfg))
    return made


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM (``make run`` stopping its background trainer) stops training like Ctrl-C: the
    runs are rolled back to their last complete epoch and the progress file says so."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _train_one(out: Path, name: str, cfg: TrainConfig) -> Path:
    print(f"demo: training {name} ({cfg.model} on {cfg.dataset}) -> {out}", file=sys.stderr)
    t0 = time.perf_counter()
    path = train(cfg, out, resume=(out / "experiment.json").is_file())
    t1 = time.perf_counter()
    try:
        # Drift, CKA and attention shares, cached in <out>/.fxcore-cache/ as `compare` does.
        compare(load_experiment(out), n_probe=PROBE)
        cached = f"comparison cached in {time.perf_counter() - t1:.0f} s"
    except (CheckpointError, DataError, OSError, ValueError) as exc:
        # The trained runs are fine; the app computes the comparison on first visit instead.
        cached = f"comparison not cached: {exc}"
    print(f"demo: {name} done in {time.perf_counter() - t0:.0f} s ({cached})", file=sys.stderr)
    return path

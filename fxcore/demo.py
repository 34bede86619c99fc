"""The built-in demo experiments, trained offline so the app shows real content on a fresh clone."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fxcore.analysis import compare
from fxcore.checkpoints import CheckpointError
from fxcore.config import TrainConfig
from fxcore.data import DataError
from fxcore.runs import load_experiment
from fxcore.train import train

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


def missing_demos(root: Path) -> list[str]:
    """Demos to train for ``demo --if-missing``: those absent from a root that holds nothing but
    demos and shipped experiments (a folder of the user's own experiments is left alone)."""
    names = (
        [p.name for p in Path(root).iterdir() if (p / "experiment.json").is_file()]
        if Path(root).is_dir()
        else []
    )
    if any(n not in DEMOS and n not in SHIPPED for n in names):
        return []
    return [n for n in DEMOS if n not in names]


def make_demo(root: Path, names: list[str] | None = None) -> list[Path]:
    """Train each demo experiment under ``root`` (resuming any that an interruption left)."""
    made = []
    for name, cfg in DEMOS.items():
        if names and name not in names:
            continue
        out = Path(root) / name
        print(f"demo: training {name} ({cfg.model} on {cfg.dataset}) -> {out}", file=sys.stderr)
        t0 = time.perf_counter()
        made.append(train(cfg, out, resume=(out / "experiment.json").is_file()))
        t1 = time.perf_counter()
        try:
            # Drift, CKA and attention shares, cached in <out>/.fxcore-cache/ as `compare` does.
            compare(load_experiment(out), n_probe=PROBE)
            cached = f"comparison cached in {time.perf_counter() - t1:.0f} s"
        except (CheckpointError, DataError, OSError, ValueError) as exc:
            # The trained runs are fine; the app computes the comparison on first visit instead.
            cached = f"comparison not cached: {exc}"
        print(f"demo: {name} done in {time.perf_counter() - t0:.0f} s ({cached})", file=sys.stderr)
    return made

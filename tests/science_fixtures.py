"""A tiny trio for the divergence, unit, stitching and mode-connectivity tests: L1, L2 and L1's
control (vgg-mini on SynthFaces at 32 px, seeded, CPU, a few seconds)."""

from __future__ import annotations

from pathlib import Path

from fxcore.train.loop import TrainConfig, train

TINY_TRIO = TrainConfig(
    dataset="synthfaces",
    attributes=["Smiling", "Male"],
    model="vgg-mini",
    image_size=32,
    epochs=2,
    batch_size=16,
    seed=0,
    pretrained="no",
    synth_train=48,
    max_val=32,
    controls=1,
    progress=False,
)


def train_trio(folder: Path) -> Path:
    """Train :data:`TINY_TRIO` into ``folder`` and return the experiment folder."""
    return train(TINY_TRIO, folder / "tiny-trio")

"""Shared fixtures: a tiny real experiment root (trained here, seeded, CPU, a few seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers such as fixtures_data

from fixtures_data import make_mnist_fixture  # noqa: E402

from fxcore.train.loop import TrainConfig, train  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_SYNTH = TrainConfig(
    dataset="synthfaces",
    attributes=["Smiling", "Male"],
    model="vgg-mini",
    image_size=32,
    epochs=3,
    batch_size=16,
    seed=0,
    pretrained="no",
    synth_train=64,
    max_val=32,
    progress=False,
)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoints root with ``tiny-synth`` (vgg-mini pair, 3 epochs) and ``tiny-mnist`` (fcnn3)."""
    root = tmp_path_factory.mktemp("checkpoints")
    train(TINY_SYNTH, root / "tiny-synth")
    mnist_dir = make_mnist_fixture(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=32)
    mnist = TrainConfig(
        dataset="mnist",
        data_root=str(mnist_dir),
        attributes=["digit"],
        model="fcnn3",
        epochs=3,
        batch_size=16,
        loss="mse",
        pretrained="no",
        progress=False,
    )
    train(mnist, root / "tiny-mnist")
    return root


@pytest.fixture(scope="session")
def tiny_trio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-trio``: :data:`TINY_SYNTH` for 2 epochs with L1's control (Smiling, Male,
    Smiling-control1), trained once per session and shared by every module that compares against a
    control. Modules only read it (and add to its result cache, which is keyed by parameters)."""
    from dataclasses import replace

    return train(
        replace(TINY_SYNTH, epochs=2, controls=1), tmp_path_factory.mktemp("trio") / "tiny-trio"
    )


SYNTH_SEEDS = (0, 1, 2)


@pytest.fixture(scope="session")
def synth_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The demo's SynthFaces pair (64 px, 3,000 faces) stopped after 2 epochs, trained from each of
    :data:`SYNTH_SEEDS`: what a trained model shows is read over seeds, never from one run (another
    seed, or another CPU's kernels, gives another model). Trained once per session."""
    from dataclasses import replace

    from fxcore.cli.demo import SYNTH

    out = {}
    for seed in SYNTH_SEEDS:
        cfg = replace(SYNTH, epochs=2, max_val=200, progress=False, seed=seed)
        out[seed] = train(cfg, tmp_path_factory.mktemp(f"synth-seed{seed}") / "pair")
    return out


@pytest.fixture
def unwritable_dir() -> Path:
    """A folder path that cannot be created, even by root (sysfs); skips where it can be."""
    path = Path("/sys/fxcore-test-unwritable")
    try:
        path.mkdir()
    except OSError:
        return path
    path.rmdir()
    pytest.skip(f"{path.parent} is writable here")

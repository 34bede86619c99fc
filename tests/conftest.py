"""Shared fixtures: a tiny real experiment root (trained here, seeded, CPU, a few seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers such as fixtures_data

from fixtures_data import make_mnist_fixture  # noqa: E402

from fxcore.train import TrainConfig, train  # noqa: E402

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
def synth_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's SynthFaces pair (seeded, 64 px, 3,000 faces) stopped after 2 epochs, when both
    models are >= 0.95 accurate: trained once per session for every test that needs models which
    have really learned their attribute (smaller sets or images leave Smiling at chance)."""
    from dataclasses import replace

    from fxcore.demo import SYNTH

    cfg = replace(SYNTH, epochs=2, max_val=200, progress=False)
    return train(cfg, tmp_path_factory.mktemp("synth-pair") / "pair")


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

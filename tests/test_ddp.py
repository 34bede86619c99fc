"""torchrun (DDP, gloo on CPU): same checkpoints as one process, and only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures_data import make_mnist_fixture
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def _train_args(data: Path, out: Path) -> list[str]:
    # fcnn3 has no BatchNorm, so per-rank batch statistics cannot make the runs differ; 70 images
    # with batch 16 leave a final global batch of 6 that the two ranks split 3/3.
    return [
        "-m",
        "fxcore",
        "train",
        "--dataset",
        "mnist",
        "--data-root",
        str(data),
        "--attributes",
        "even",
        "large",
        "--model",
        "fcnn3",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    ]


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path: Path) -> None:
    data = make_mnist_fixture(tmp_path / "mnist", n_train=70, n_test=20)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, *_train_args(data, tmp_path / "single")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            *_train_args(data, tmp_path / "ddp"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[:6000]
    for run in ("even", "large"):
        files = sorted(p.name for p in (tmp_path / "ddp" / run).glob("epoch_*.safetensors"))
        assert files == ["epoch_000.safetensors", "epoch_001.safetensors", "epoch_002.safetensors"]
        for name in files:
            a = load_file(str(tmp_path / "single" / run / name))
            b = load_file(str(tmp_path / "ddp" / run / name))
            for key in a:
                torch.testing.assert_close(
                    b[key], a[key], rtol=1e-4, atol=1e-5
                )  # all-reduce sums in another order
        rows = (tmp_path / "ddp" / run / "metrics.jsonl").read_text().splitlines()
        assert len(rows) == 2  # one writer: no duplicated metric rows
    assert not list((tmp_path / "ddp").glob("*/.*.tmp"))

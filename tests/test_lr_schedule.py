"""--lr-schedule cosine: the per-epoch learning rate, applied by the trainer, resume stays exact."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_SYNTH
from safetensors.torch import load_file

import fxcore.train.loop as train_mod
from fxcore.core.errors import CheckpointError, TrainingInterrupted
from fxcore.train.config import TrainConfig
from fxcore.train.loop import train

TINY = replace(
    TINY_SYNTH, epochs=2, seed=3, synth_train=40, max_val=16, augment="off", lr_schedule="cosine"
)


def test_lr_at_follows_a_half_cosine_over_the_epochs() -> None:
    assert TrainConfig(lr=0.01).lr_at(7) == 0.01  # constant is the default
    cfg = TrainConfig(lr=0.01, epochs=4, lr_schedule="cosine")
    got = [cfg.lr_at(e) for e in (1, 2, 3, 4)]
    want = [0.01 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert got == want and got[0] == 0.01 and got[2] == 0.005


def test_trainer_uses_the_schedule_and_resume_is_bit_identical(tmp_path: Path, monkeypatch) -> None:
    seen: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(train_mod.torch.optim.Adam, "step", spy)
    whole = train(TINY, tmp_path / "whole")
    assert set(seen) == {TINY.lr_at(1), TINY.lr_at(2)} and TINY.lr_at(2) == TINY.lr / 2
    monkeypatch.undo()
    # Interrupt the same run while it saves epoch 2 (as Ctrl-C would), then resume it.
    part = tmp_path / "part"
    real_write = train_mod.write_epoch

    def interrupted(d, epoch, *a, **k):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_write(d, epoch, *a, **k)

    monkeypatch.setattr(train_mod, "write_epoch", interrupted)
    with pytest.raises(TrainingInterrupted):
        train(TINY, part)
    monkeypatch.undo()
    train(TINY, part, resume=True)
    # The schedule's length is fixed once an epoch was trained with it.
    with pytest.raises(CheckpointError, match="--epochs 2"):
        train(replace(TINY, epochs=4), part, resume=True)
    const = train(replace(TINY, lr_schedule="constant"), tmp_path / "const")
    for run in ("Smiling", "Male"):
        a = load_file(str(whole / run / "epoch_002.safetensors"))
        b = load_file(str(part / run / "epoch_002.safetensors"))
        c = load_file(str(const / run / "epoch_002.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)

"""--augment: one augmented batch per step shared by the lockstep, seeded, resume stays exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_SYNTH
from safetensors.torch import load_file

import fxcore.train.loop as train_mod
from fxcore.store.checkpoints import CheckpointError
from fxcore.train.augment import BatchAugmenter, resolve_augment
from fxcore.train.loop import train

TINY = replace(TINY_SYNTH, epochs=2, seed=5, synth_train=40, max_val=16, augment="on")


def test_resolve_augment_defaults() -> None:
    assert resolve_augment("auto", "celeba") == "on"
    assert resolve_augment("auto", "synthfaces") == "on"
    assert resolve_augment("auto", "mnist") == "off"
    assert resolve_augment("off", "celeba") == "off"
    with pytest.raises(ValueError, match="auto, on, off"):
        resolve_augment("maybe", "celeba")


def test_batch_augmenter_is_seeded_per_batch_and_changes_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    aug = BatchAugmenter(32)
    torch.manual_seed(123)
    a = aug(x, seed=0, epoch=1, step=4)
    global_state = torch.get_rng_state()
    torch.manual_seed(999)  # the global RNG (dropout's) does not influence the draw ...
    b = aug(x, seed=0, epoch=1, step=4)
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b)
    torch.manual_seed(123)
    aug(x, seed=0, epoch=1, step=4)
    assert torch.equal(torch.get_rng_state(), global_state)  # ... and is not consumed by it
    assert not torch.equal(a, x)
    assert not torch.equal(a, aug(x, seed=0, epoch=1, step=5))
    assert not torch.equal(a, aug(x, seed=0, epoch=2, step=4))
    # per-image parameters: two copies of one image in a batch come out different
    same = aug(x[:1].repeat(2, 1, 1, 1), seed=0, epoch=1, step=0)
    assert not torch.equal(same[0], same[1])
    with pytest.raises(ValueError, match="uint8"):
        aug(x.float(), seed=0, epoch=1, step=0)


def test_every_model_gets_the_same_augmented_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, torch.Tensor]] = []
    augmented: list[torch.Tensor] = []
    original_init, original_aug = train_mod._initial_model, BatchAugmenter.__call__

    def record_input(module, args):
        if module.training:
            seen.append((id(module), args[0].detach().clone()))

    def initial_model(cfg, n_out):
        model, used = original_init(cfg, n_out)
        model.register_forward_pre_hook(record_input)  # deep-copied into every run's model
        return model, used

    def aug_call(self, batch, *args, **kwargs):
        out = original_aug(self, batch, *args, **kwargs)
        augmented.append((batch.clone(), out.clone()))
        return out

    monkeypatch.setattr(train_mod, "_initial_model", initial_model)
    monkeypatch.setattr(BatchAugmenter, "__call__", aug_call)
    train(replace(TINY, epochs=1), tmp_path / "exp")
    models = sorted({m for m, _ in seen})
    assert len(models) == 2  # Smiling and Male, distinct modules
    steps = len(augmented)
    assert steps == 3 and len(seen) == 2 * steps  # 40 images, batch 16
    for s in range(steps):
        (m0, x0), (m1, x1) = seen[2 * s], seen[2 * s + 1]
        assert m0 != m1
        assert torch.equal(x0, x1)  # identical pixels for both models
        raw, out = augmented[s]
        assert not torch.equal(raw, out)
        mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        torch.testing.assert_close(x0, (out.float() / 255 - mean) / std)  # the augmented batch
    info = json.loads((tmp_path / "exp" / "experiment.json").read_text())
    assert info["config"]["augment"] == "on"


def test_resume_with_augment_is_bit_identical(tmp_path: Path) -> None:
    whole = train(TINY, tmp_path / "whole")
    part = tmp_path / "part"
    train(replace(TINY, epochs=1), part)
    train(TINY, part, resume=True)
    for run in ("Smiling", "Male"):
        a = load_file(str(whole / run / "epoch_002.safetensors"))
        b = load_file(str(part / run / "epoch_002.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    # and the augmentation does change the result
    plain = train(replace(TINY, augment="off"), tmp_path / "plain")
    a = load_file(str(whole / "Smiling" / "epoch_002.safetensors"))
    c = load_file(str(plain / "Smiling" / "epoch_002.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_experiments_from_before_augment_resume_as_off(tmp_path: Path) -> None:
    out = train(replace(TINY, epochs=1, augment="off"), tmp_path / "old")
    info = json.loads((out / "experiment.json").read_text())
    del info["config"]["augment"]  # what an experiment written before --augment holds
    (out / "experiment.json").write_text(json.dumps(info))
    train(replace(TINY, augment="off"), out, resume=True)
    with pytest.raises(CheckpointError, match="differs in: augment"):
        train(replace(TINY, epochs=3), out, resume=True)

"""Lockstep trainer: shared init, shared batch order, resume equivalence, config guard."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_SYNTH
from safetensors.torch import load_file

from fxcore.store.checkpoints import CheckpointError
from fxcore.store.runs import load_experiment
from fxcore.train.batches import Dist, epoch_order, plan_batches
from fxcore.train.loop import train
from fxcore.train.metrics import roc_auc

TINY = replace(TINY_SYNTH, epochs=2, seed=3, synth_train=48)


@pytest.fixture(scope="module")
def tiny_exp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(TINY, tmp_path_factory.mktemp("exp") / "tiny")


def _same_files(a: Path, b: Path) -> None:
    sa, sb = load_file(str(a)), load_file(str(b))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_identical_init_across_runs(tiny_exp: Path) -> None:
    a, b = (
        tiny_exp / "Smiling" / "epoch_000.safetensors",
        tiny_exp / "Male" / "epoch_000.safetensors",
    )
    _same_files(a, b)
    # ... and training then makes them differ (different labels, same batches).
    sa = load_file(str(tiny_exp / "Smiling" / "epoch_002.safetensors"))
    sb = load_file(str(tiny_exp / "Male" / "epoch_002.safetensors"))
    assert not torch.equal(sa["classifier.6.weight"], sb["classifier.6.weight"])


def test_layout_metadata_and_metrics(tiny_exp: Path) -> None:
    exp = load_experiment(tiny_exp)
    assert [r.name for r in exp.runs] == ["Smiling", "Male"]
    for run in exp.runs:
        assert run.epochs() == [0, 1, 2]
        assert run.bad_epochs() == {}
        rows = run.metrics()
        assert [r["epoch"] for r in rows] == [1, 2]
        for key in ("train_loss", "val_loss", "val_accuracy", "val_auc", "seconds", "images_per_s"):
            assert key in rows[0]
        meta = run.meta(2)
        assert meta["epoch"] == 2 and meta["config"]["model"] == "vgg-mini"
        assert meta["metrics"]["val_accuracy"] == rows[1]["val_accuracy"]
        assert "torch_version" in meta and "data_fingerprint" in meta
    info = json.loads((tiny_exp / "experiment.json").read_text())
    assert info["attributes"] == ["Smiling", "Male"]


def test_batch_order_is_shared_and_matches_distributed_sampler() -> None:
    n, seed, epoch = 37, 5, 3
    order = epoch_order(n, seed, epoch)
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=1, rank=0, seed=seed)
    sampler.set_epoch(epoch)
    assert order.tolist() == list(sampler)
    # Two ranks together see exactly each global batch of the single-process run.
    single = [b.tolist() for b, _ in plan_batches(order, 8, Dist())]
    r0 = [b.tolist() for b, _ in plan_batches(order, 8, Dist(0, 2))]
    r1 = [b.tolist() for b, _ in plan_batches(order, 8, Dist(1, 2))]
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(s) for s in single]


def test_resume_equals_uninterrupted(tmp_path: Path, tiny_exp: Path) -> None:
    out = tmp_path / "resumed"
    train(replace(TINY, epochs=1), out)
    with pytest.raises(CheckpointError, match="--resume"):
        train(TINY, out)  # existing epochs and no --resume: refuse rather than overwrite
    train(TINY, out, resume=True)
    for run in ("Smiling", "Male"):
        for e in (1, 2):
            _same_files(
                out / run / f"epoch_{e:03d}.safetensors",
                tiny_exp / run / f"epoch_{e:03d}.safetensors",
            )
        rows = [json.loads(x) for x in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]


def test_refuses_different_config_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    cfg = replace(TINY, epochs=1)
    train(cfg, out)
    with pytest.raises(CheckpointError, match="different config.*lr"):
        train(replace(cfg, lr=0.01), out, resume=True)
    train(replace(cfg, lr=0.01), out, force=True)
    assert load_experiment(out).info["config"]["lr"] == 0.01


def test_out_path_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        train(TINY, f)


def test_roc_auc_matches_pairwise_definition() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (60,), generator=g).float().numpy()  # many ties
    labels = (torch.rand(60, generator=g) > 0.4).float().numpy()
    pos, neg = scores[labels == 1], scores[labels == 0]
    ref = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(ref)


def test_interrupt_message_before_and_after_the_first_checkpoint(
    tmp_path: Path, tiny_exp: Path
) -> None:
    from fxcore.train.loop import _interrupted

    early = str(_interrupted(tmp_path / "nothing-yet", ["Smiling", "Male"]))
    assert "before the first checkpoint" in early and "--resume" not in early
    late = str(_interrupted(tiny_exp, ["Smiling", "Male"]))
    assert "epochs 0.." in late and "--resume" in late

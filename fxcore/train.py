"""Lockstep trainer: K identical networks, one per attribute, same init, same batches, same optimizer.

Determinism (documented contract): the shared init comes from ``torch.manual_seed(seed)``; the data
order of epoch ``e`` is ``torch.randperm(N)`` from a generator seeded with ``seed + e`` (exactly what
``DistributedSampler(seed=seed).set_epoch(e)`` draws, so a torchrun job sees the same global order);
dropout draws from the global RNG reseeded with ``seed * 1000 + e`` at each epoch start. Hence
``--resume`` from epoch E replays epochs E+1.. exactly as an uninterrupted run would.

Under ``torchrun`` each model is wrapped in DistributedDataParallel, ranks see disjoint slices of
every global batch (``--batch-size`` is the global batch), and only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fxcore import __version__
from fxcore.augment import BatchAugmenter, resolve_augment
from fxcore.batches import Dist, epoch_order, iterate_batches, plan_batches
from fxcore.checkpoints import (
    FORMAT,
    CheckpointError,
    append_jsonl,
    atomic_write_json,
    epoch_file,
    save_checkpoint,
)
from fxcore.data import load_dataset, uint8_to_input
from fxcore.metrics import autocast, compute_loss, evaluate, task_loss
from fxcore.models import VGG_NAMES, ModelError, build_model
from fxcore.optim_state import load_optimizer, save_optimizer
from fxcore.resume import (
    RESUMABLE_KEYS,
    complete_epoch,
    drop_temp,
    prepare_out,
    rollback,
    settle,
)


@dataclass
class TrainConfig:
    """Everything that defines an experiment (saved in experiment.json and every checkpoint)."""

    dataset: str = "celeba"  # image source: celeba | synthfaces | mnist
    data_root: str | None = (
        None  # dataset folder (CelebA official layout / MNIST IDX); None = bundled
    )
    attributes: list[str] = field(
        default_factory=lambda: ["Smiling", "Male"]
    )  # one run per attribute
    model: str = "vgg19"  # architecture shared by all runs (seed paper: VGG-19)
    epochs: int = 10  # epochs to train (checkpoints epoch_000..epoch_N)
    batch_size: int = 16  # global batch size (seed paper: 16)
    lr: float = 1e-3  # Adam learning rate (seed paper: 1e-3)
    loss: str = "auto"  # auto = BCE on one logit for binary, MSE on one-hot for multi-class (seed)
    image_size: int = 224  # square input side in pixels (VGG's native 224; vgg-mini uses 64)
    seed: int = 0  # fixes the shared init, the data order and dropout
    pretrained: str = "auto"  # ImageNet weights for VGG: auto (when available) | yes | no
    weights: str | None = None  # local .safetensors with ImageNet weights (offline pretrained)
    max_train: int | None = None  # keep only the first N training images (quick experiments)
    max_val: int | None = None  # keep only the first N validation images
    val_fraction: float = 0.1  # carved from train when the official val split has no images
    synth_train: int | None = None  # SynthFaces training-set size (None = its default)
    device: str = "auto"  # auto = cuda, then mps, then cpu
    amp: str = "none"  # none | bf16 (autocast on CUDA only)
    channels_last: bool = False  # NHWC memory format (faster convs on CUDA tensor cores)
    workers: int = 2  # DataLoader workers when images are streamed from disk
    cache_gb: float = 4.0  # decode the whole split into memory once when it fits in this budget
    progress: bool = True  # show a progress bar per epoch
    augment: str = "auto"  # batch augmentation (fxcore/augment.py): auto = on for faces | on | off

    def shared(self) -> dict[str, Any]:
        """The config keys that must match for a resumed or extended experiment."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_KEYS}


class DeviceError(RuntimeError):
    """The requested --device is not available on this machine."""


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        device = torch.device(name)
        mps = getattr(torch.backends, "mps", None)
        if (device.type == "cuda" and not torch.cuda.is_available()) or (
            device.type == "mps" and not (mps and mps.is_available())
        ):
            raise DeviceError(
                f"--device {name}: PyTorch {torch.__version__} sees no such device on this "
                "machine; use --device auto (picks what is there) or --device cpu"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class TrainingInterrupted(Exception):
    """Ctrl-C: the last complete epoch is on disk; the message says how to resume."""


def _initial_model(cfg: TrainConfig, n_out: int) -> tuple[nn.Module, bool]:
    """The shared init: ImageNet weights when asked (or available, for ``auto``), else seeded."""
    torch.manual_seed(cfg.seed)
    if cfg.weights or cfg.pretrained == "yes":
        return build_model(cfg.model, n_out, pretrained=True, weights=cfg.weights), True
    if cfg.pretrained == "auto" and cfg.model in VGG_NAMES:
        try:
            return build_model(cfg.model, n_out, pretrained=True), True
        except ModelError as exc:  # offline: fall back to scratch, and say so
            print(f"note: {exc}\nnote: training {cfg.model} from scratch", file=sys.stderr)
            torch.manual_seed(cfg.seed)
    return build_model(cfg.model, n_out), False


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, force: bool = False) -> Path:
    """Train ``len(cfg.attributes)`` models in lockstep and write every epoch under ``out``."""
    from tqdm.auto import tqdm

    out = Path(out)
    dist = Dist.from_env()
    # --augment hook (issue 15): "auto" is resolved here so experiment.json records on/off.
    cfg = dataclasses.replace(cfg, augment=resolve_augment(cfg.augment, cfg.dataset))
    if dist.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    device = pick_device(cfg.device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)

    start, problem = -1, None
    if dist.main:
        try:
            start = prepare_out(out, cfg, resume, force)
        except CheckpointError as exc:
            problem = exc
    if dist.world > 1:  # every rank follows rank 0's decision (and its error, rather than hang)
        box = [start, str(problem) if problem else None]
        torch.distributed.broadcast_object_list(box, src=0)
        start, message = int(box[0]), box[1]
        problem = problem or (CheckpointError(message) if message else None)
    if problem:
        raise problem

    # The data (SynthFaces pixels, CelebA's carved val split) does not depend on the training seed.
    kw = dict(root=cfg.data_root, attributes=cfg.attributes)
    if cfg.dataset != "mnist":
        kw.update(image_size=cfg.image_size)
    train_kw = dict(kw, max_samples=cfg.max_train)
    if cfg.dataset == "synthfaces" and cfg.synth_train:
        train_kw["num_samples"] = cfg.synth_train
    ds_train = load_dataset(cfg.dataset, split="train", **train_kw)
    ds_val = load_dataset(cfg.dataset, split="val", **dict(kw, max_samples=cfg.max_val))
    ds_train.show_progress = ds_val.show_progress = cfg.progress
    attrs = list(ds_train.attributes)
    classes = {ds_train.num_classes[a] for a in attrs}
    if len(classes) != 1:
        raise CheckpointError("lockstep runs need one head size: pick attributes of the same kind")
    n_cls = classes.pop()
    n_out = 1 if n_cls == 2 else n_cls
    losses = [task_loss(cfg.loss, ds_train.num_classes[a]) for a in attrs]

    # One init, copied K times: epoch_000 is bit-identical across runs.
    base, pretrained_used = _initial_model(cfg, n_out)
    models = [copy.deepcopy(base).to(device) for _ in attrs]
    if cfg.channels_last:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    opts = [torch.optim.Adam(m.parameters(), lr=cfg.lr) for m in models]
    run_dirs = [out / a for a in attrs]
    shapes = {k: list(v.shape) for k, v in base.state_dict().items()}
    fp = ds_train.fingerprint()

    if start >= 0:  # resume: weights and optimizer state of the last complete epoch
        for k, d in enumerate(run_dirs):
            from safetensors.torch import load_file

            models[k].load_state_dict(load_file(str(epoch_file(d, start))))
            load_optimizer(opts[k], d / f"optim_{start:03d}.safetensors")
    if dist.main:
        if start >= 0:
            for d in run_dirs:
                rollback(d, start)
        else:
            for d in [out, *run_dirs]:  # what a run killed mid-way through its init left
                drop_temp(d)
            exp_info = {"format": FORMAT, "name": out.name, "dataset": cfg.dataset, "model": cfg.model,
                        "attributes": attrs, "runs": attrs, "config": asdict(cfg), "data_fingerprint": fp,
                        "pretrained_used": pretrained_used,
                        "fxcore_version": __version__, "torch_version": torch.__version__}  # fmt: skip
            atomic_write_json(out / "experiment.json", exp_info)
            for k, d in enumerate(run_dirs):
                d.mkdir(parents=True, exist_ok=True)
                (d / "metrics.jsonl").unlink(missing_ok=True)
                run_info = {"format": FORMAT, "experiment": out.name, "run": attrs[k],
                            "attribute": attrs[k], "model": cfg.model, "dataset": cfg.dataset,
                            "num_outputs": n_out, "loss": losses[k], "config": asdict(cfg),
                            "tensors": shapes}  # fmt: skip
                atomic_write_json(d / "run.json", run_info)
                meta = {"epoch": 0, "run": attrs[k], "config": asdict(cfg), "metrics": {},
                        "data_fingerprint": fp, "fxcore_version": __version__,
                        "torch_version": torch.__version__}  # fmt: skip
                save_optimizer(opts[k], d / "optim_000.safetensors", epoch=0)
                save_checkpoint(epoch_file(d, 0), base.state_dict(), meta)

    if dist.world > 1:
        ids = [dist.local_rank] if device.type == "cuda" else None
        wrapped = [nn.parallel.DistributedDataParallel(m, device_ids=ids) for m in models]
    else:
        wrapped = models
    pin = device.type == "cuda"
    n = len(ds_train)
    augmenter = (
        BatchAugmenter(ds_train.image_size, ds_train.channels) if cfg.augment == "on" else None
    )
    bar = None
    try:
        for epoch in range(start + 1 if start >= 0 else 1, cfg.epochs + 1):
            torch.manual_seed(cfg.seed * 1000 + epoch)
            order = epoch_order(n, cfg.seed, epoch)
            plan = plan_batches(order, cfg.batch_size, dist)
            batches, global_sizes = [b for b, _ in plan], [g for _, g in plan]
            for m in wrapped:
                m.train()
            sums = [0.0] * len(models)
            t0, seen = time.perf_counter(), 0
            bar = tqdm(total=n, desc=f"epoch {epoch}/{cfg.epochs}", unit="img",
                       disable=not (cfg.progress and dist.main), leave=False)  # fmt: skip
            for step, (xb, yb) in enumerate(
                iterate_batches(ds_train, batches, cfg.cache_gb, cfg.workers, pin)
            ):
                if augmenter is not None:  # once per batch, shared by every model of the lockstep
                    xb = augmenter(xb, cfg.seed, epoch, step, dist.rank)
                x = uint8_to_input(xb.to(device, non_blocking=pin), ds_train.normalize)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = yb.to(device)
                # DDP averages rank gradients; weight each rank by its share of the global batch so
                # the update equals the single-process mean over the whole batch.
                scale = len(xb) * dist.world / global_sizes[step] if dist.world > 1 else 1.0
                for k, (m, opt) in enumerate(zip(wrapped, opts)):
                    opt.zero_grad(set_to_none=True)
                    with autocast(cfg.amp, device):
                        loss = compute_loss(m(x).float(), y[:, k], losses[k])
                    (loss * scale).backward()
                    opt.step()
                    sums[k] += float(loss.detach())
                seen += len(xb) * dist.world
                bar.update(len(xb) * dist.world)
                if step % 10 == 0:
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix({a[:8]: f"{s / (step + 1):.3f}" for a, s in zip(attrs, sums)}
                                    | {"img/s": f"{rate:.0f}"})  # fmt: skip
            bar.close()
            seconds = time.perf_counter() - t0
            steps = max(1, len(batches))
            if dist.main:
                vals = evaluate(models, ds_val, device, losses, cfg.amp, cfg.cache_gb)
                for k, d in enumerate(run_dirs):
                    row = {"epoch": epoch, "train_loss": sums[k] / steps, **vals[k],
                           "seconds": seconds, "images_per_s": n / max(seconds, 1e-9)}  # fmt: skip
                    meta = {"epoch": epoch, "run": attrs[k], "config": asdict(cfg), "metrics": row,
                            "data_fingerprint": fp, "fxcore_version": __version__,
                            "torch_version": torch.__version__}  # fmt: skip
                    # Order matters for crash safety: optimizer, then weights, then the metrics row
                    # that marks the epoch complete; older optimizer states are dropped last.
                    save_optimizer(opts[k], d / f"optim_{epoch:03d}.safetensors", epoch=epoch)
                    save_checkpoint(epoch_file(d, epoch), models[k].state_dict(), meta)
                    append_jsonl(d / "metrics.jsonl", row)
                    (d / f"optim_{epoch - 2:03d}.safetensors").unlink(missing_ok=True)
                # One line per epoch even without progress bars: logs show where a run got to.
                summary = "  ".join(
                    f"{a}: acc {v['val_accuracy']:.3f}" for a, v in zip(attrs, vals)
                )
                print(f"epoch {epoch}/{cfg.epochs}  {summary}  ({n / seconds:.0f} img/s, "
                      f"{seconds:.0f} s)", file=sys.stderr)  # fmt: skip
            if dist.world > 1:
                torch.distributed.barrier()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()  # clear the progress line so the message starts on its own line
        if dist.main:
            settle(out, attrs)
        raise (
            _interrupted(out, attrs) if dist.main else TrainingInterrupted("interrupted")
        ) from None
    except CheckpointError:
        if bar is not None:
            bar.close()
        if dist.main:
            settle(out, attrs)
        raise
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return out


def _interrupted(out: Path, attrs: list[str]) -> TrainingInterrupted:
    done = complete_epoch(out, attrs)
    if done < 0:
        return TrainingInterrupted(
            f"interrupted before the first checkpoint was saved in {out}; run the same command "
            "again to start over"
        )
    return TrainingInterrupted(
        f"interrupted; epochs 0..{done} are saved in {out}. Resume with the same command plus "
        "--resume"
    )

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
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from fxcore.core.errors import DeviceError, TrainingInterrupted  # noqa: F401 - re-exported
from fxcore.data.base import uint8_to_input
from fxcore.data.inputs import load_split
from fxcore.models.nets import VGG_NAMES, ModelError, build_model
from fxcore.store.checkpoints import (
    CheckpointError,
    create_experiment,
    create_run,
    epoch_file,
    write_epoch,
)
from fxcore.store.progress import ProgressWriter
from fxcore.train.augment import BatchAugmenter
from fxcore.train.batches import Dist, epoch_order, iterate_batches, plan_batches
from fxcore.train.config import TrainConfig, resolve_augment, run_specs  # noqa: F401 - re-exported
from fxcore.train.metrics import autocast, compute_loss, evaluate, task_loss
from fxcore.train.optim_state import load_optimizer, save_optimizer
from fxcore.train.resume import (
    complete_epoch,
    drop_temp,
    prepare_out,
    rollback,
    settle,
)


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
    # --augment: "auto" is resolved here so experiment.json records on/off.
    cfg = replace(cfg, augment=resolve_augment(cfg.augment, cfg.dataset))
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
    ds_train = load_split(asdict(cfg), "train", max_samples=cfg.max_train)
    ds_val = load_split(asdict(cfg), "val", max_samples=cfg.max_val)
    ds_train.show_progress = ds_val.show_progress = cfg.progress
    attrs = list(ds_train.attributes)
    classes = {ds_train.num_classes[a] for a in attrs}
    if len(classes) != 1:
        raise CheckpointError("lockstep runs need one head size: pick attributes of the same kind")
    n_cls = classes.pop()
    n_out = 1 if n_cls == 2 else n_cls
    specs = run_specs(attrs, cfg.seed, cfg.controls, cfg.control_init)
    names = [sp.name for sp in specs]
    losses = [task_loss(cfg.loss, ds_train.num_classes[attrs[sp.column]]) for sp in specs]

    # One init, copied K times: epoch_000 is bit-identical across runs (controls: unless seeded).
    base, pretrained_used = _initial_model(cfg, n_out)
    inits = [
        base if sp.init_seed is None else _initial_model(replace(cfg, seed=sp.init_seed), n_out)[0]
        for sp in specs
    ]
    models = [copy.deepcopy(m).to(device) for m in inits]
    if cfg.channels_last:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    opts = [torch.optim.Adam(m.parameters(), lr=cfg.lr) for m in models]
    run_dirs = [out / a for a in names]
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
            create_experiment(
                out,
                cfg.dataset,
                cfg.model,
                attrs,
                asdict(cfg),
                runs=names,
                controls=[sp.name for sp in specs if sp.control],
                data_fingerprint=fp,
                pretrained_used=pretrained_used,
            )
            for k, (d, sp) in enumerate(zip(run_dirs, specs)):
                create_run(
                    d,
                    attrs[sp.column],
                    cfg.model,
                    cfg.dataset,
                    n_out,
                    asdict(cfg),
                    shapes,
                    loss=losses[k],
                    control=sp.control,
                    order_seed=sp.order_seed,
                    init_seed=cfg.seed if sp.init_seed is None else sp.init_seed,
                )
                save_optimizer(opts[k], d / "optim_000.safetensors", epoch=0)
                write_epoch(
                    d,
                    0,
                    inits[k].state_dict(),
                    {},
                    run=sp.name,
                    config=asdict(cfg),
                    data_fingerprint=fp,
                )

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
    live = ProgressWriter(out, asdict(cfg), start, enabled=dist.main)  # <out>/progress.json
    # Runs sharing a batch order step together (the attribute runs); each control has its own.
    groups: dict[int, list[int]] = {}
    for k, sp in enumerate(specs):
        groups.setdefault(sp.order_seed, []).append(k)
    try:
        for epoch in range(start + 1 if start >= 0 else 1, cfg.epochs + 1):
            for m in wrapped:
                m.train()
            for opt in opts:  # set every epoch (not stepped): a resumed run gets the same value
                for group in opt.param_groups:
                    group["lr"] = cfg.lr_at(epoch)
            sums = [0.0] * len(models)
            t0, seen, done_steps = time.perf_counter(), 0, 0
            n_steps = len(plan_batches(epoch_order(n, cfg.seed, epoch), cfg.batch_size, dist))
            live.epoch_start(epoch, n_steps * len(groups))
            bar = tqdm(
                total=n * len(groups),
                desc=f"epoch {epoch}/{cfg.epochs}",
                unit="img",
                disable=not (cfg.progress and dist.main),
                leave=False,
            )
            for order_seed, members in groups.items():
                torch.manual_seed(order_seed * 1000 + epoch)
                order = epoch_order(n, order_seed, epoch)
                plan = plan_batches(order, cfg.batch_size, dist)
                batches, global_sizes = [b for b, _ in plan], [g for _, g in plan]
                for step, (xb, yb) in enumerate(
                    iterate_batches(ds_train, batches, cfg.cache_gb, cfg.workers, pin)
                ):
                    if augmenter is not None:  # once per batch, shared by the group's models
                        xb = augmenter(xb, order_seed, epoch, step, dist.rank)
                    x = uint8_to_input(xb.to(device, non_blocking=pin), ds_train.normalize)
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    y = yb.to(device)
                    # DDP averages rank gradients; weight each rank by its share of the global
                    # batch so the update equals the single-process mean over the whole batch.
                    scale = len(xb) * dist.world / global_sizes[step] if dist.world > 1 else 1.0
                    for k in members:
                        m, opt = wrapped[k], opts[k]
                        opt.zero_grad(set_to_none=True)
                        with autocast(cfg.amp, device):
                            loss = compute_loss(m(x).float(), y[:, specs[k].column], losses[k])
                        (loss * scale).backward()
                        opt.step()
                        sums[k] += float(loss.detach())
                    seen += len(xb) * dist.world
                    done_steps += 1
                    bar.update(len(xb) * dist.world)
                    live.step(done_steps, seen, n * len(groups))
                    if step % 10 == 0:
                        rate = seen / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(
                            {names[k][:8]: f"{sums[k] / (step + 1):.3f}" for k in members}
                            | {"img/s": f"{rate:.0f}"}
                        )
            bar.close()
            seconds = time.perf_counter() - t0
            steps = max(1, n_steps)
            if dist.main:
                live.phase("evaluating")
                vals = evaluate(
                    models,
                    ds_val,
                    device,
                    losses,
                    cfg.amp,
                    cfg.cache_gb,
                    columns=[sp.column for sp in specs],
                )
                for k, d in enumerate(run_dirs):
                    row = {
                        "epoch": epoch,
                        "train_loss": sums[k] / steps,
                        **vals[k],
                        "seconds": seconds,
                        "images_per_s": n / max(seconds, 1e-9),
                    }
                    # Order matters for crash safety: optimizer, then weights, then the metrics row
                    # that marks the epoch complete; older optimizer states are dropped last.
                    save_optimizer(opts[k], d / f"optim_{epoch:03d}.safetensors", epoch=epoch)
                    write_epoch(
                        d,
                        epoch,
                        models[k].state_dict(),
                        row,
                        run=names[k],
                        config=asdict(cfg),
                        data_fingerprint=fp,
                    )
                    (d / f"optim_{epoch - 2:03d}.safetensors").unlink(missing_ok=True)
                live.epoch_done(epoch, n)
                # One line per epoch even without progress bars: logs show where a run got to.
                summary = "  ".join(
                    f"{a}: acc {v['val_accuracy']:.3f}" for a, v in zip(names, vals)
                )
                print(
                    f"epoch {epoch}/{cfg.epochs}  {summary}  ({n / seconds:.0f} img/s, "
                    f"{seconds:.0f} s)",
                    file=sys.stderr,
                )
            if dist.world > 1:
                torch.distributed.barrier()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()  # clear the progress line so the message starts on its own line
        if dist.main:
            settle(out, names)
        live.end("interrupted")
        raise (
            _interrupted(out, names) if dist.main else TrainingInterrupted("interrupted")
        ) from None
    except CheckpointError as exc:
        if bar is not None:
            bar.close()
        if dist.main:
            settle(out, names)
        live.end("failed", exc)
        raise
    except Exception as exc:
        live.end("failed", exc)
        raise
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    live.end("finished")
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

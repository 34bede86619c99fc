"""GPU benchmark: VGG-19 lockstep training throughput, fp32 vs bf16 + channels_last, and one real
end-to-end ``fxcore train`` on CUDA. Prints one table; ``--json FILE`` also writes the numbers.

Run where a GPU is: ``python benchmarks/bench_gpu.py --json gpu.json``. ``--smoke`` runs a tiny
version on any device (used to check the script itself on CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from fxcore.models.nets import build_model
from fxcore.train.loop import TrainConfig, train
from fxcore.train.metrics import autocast, compute_loss


def lockstep_rate(
    model_name: str,
    size: int,
    batch: int,
    amp: str,
    channels_last: bool,
    device: torch.device,
    steps: int,
    warmup: int,
) -> float:
    """Images/s per model for K=2 models trained in lockstep on the same random batch."""
    torch.manual_seed(0)
    base = build_model(model_name, 1)
    models = [copy.deepcopy(base).to(device) for _ in range(2)]
    if channels_last:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, 2), device=device).float()

    def step() -> None:
        for k, (m, opt) in enumerate(zip(models, opts)):
            opt.zero_grad(set_to_none=True)
            with autocast(amp, device):
                loss = compute_loss(m(x).float(), y[:, k], "bce")
            loss.backward()
            opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, any device")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    model, size, steps, warmup = ("vgg-mini", 64, 3, 1) if args.smoke else ("vgg19", 224, 30, 10)
    results: dict = {
        "device": name,
        "torch": torch.__version__,
        "model": model,
        "size": size,
        "lockstep": [],
    }
    print(f"device: {name}  torch {torch.__version__}")
    for batch in (16, 64):
        for amp, cl in (("none", False), ("bf16", True)):
            if device.type != "cuda" and amp == "bf16":
                continue
            rate = lockstep_rate(model, size, batch, amp, cl, device, steps, warmup)
            results["lockstep"].append(
                {"batch": batch, "amp": amp, "channels_last": cl, "images_per_s_per_model": rate}
            )
            print(
                f"{model} {size}px K=2 lockstep batch {batch:3d} amp={amp:4s} "
                f"channels_last={cl!s:5s}: {rate:8.1f} img/s per model"
            )
    rows = results["lockstep"]
    for batch in (16, 64):
        pair = [r for r in rows if r["batch"] == batch]
        if len(pair) == 2:
            ratio = pair[1]["images_per_s_per_model"] / pair[0]["images_per_s_per_model"]
            results[f"speedup_bf16_cl_batch{batch}"] = ratio
            print(f"bf16+channels_last speed-up at batch {batch}: {ratio:.2f}x")
    # End to end through the real trainer: data, lockstep steps, validation, checkpoints.
    cfg = TrainConfig(
        dataset="synthfaces",
        model=model,
        image_size=size,
        epochs=1,
        batch_size=64 if not args.smoke else 16,
        synth_train=4096 if not args.smoke else 64,
        max_val=512 if not args.smoke else 32,
        pretrained="no",
        amp="bf16" if device.type == "cuda" else "none",
        channels_last=device.type == "cuda",
        device=device.type,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = train(cfg, Path(tmp) / "gpu-e2e")
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in (out / "Smiling" / "metrics.jsonl").read_text().splitlines()]
        files = sorted(p.name for p in (out / "Smiling").glob("epoch_*.safetensors"))
    results["end_to_end"] = {
        "wall_s": wall,
        "epoch_images_per_s": rows[-1]["images_per_s"],
        "files": files,
        "val_accuracy": rows[-1]["val_accuracy"],
    }
    print(
        f"fxcore train end-to-end ({cfg.synth_train} SynthFaces, {size}px, amp={cfg.amp}): "
        f"{rows[-1]['images_per_s']:.0f} img/s per model in the epoch, {wall:.1f} s wall, "
        f"checkpoints {files}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark lockstep training: K=2 models in one ``fxcore.train.loop.train`` vs two separate runs.

Per dataset (SynthFaces; CelebA-10k from ``../shared/data/celeba-10k`` when present), vgg-mini at
64 px, one epoch over the same ``--n`` training images, batch 32, ``--n-val`` validation images:

- ``lockstep``: ``train(attributes=[A, B])``;
- ``separate``: ``train(attributes=[A])`` then ``train(attributes=[B])``.

Each ``train`` call runs in its own subprocess (no cache carries over) and its wall time covers
everything the call does: opening and decoding the data, init, training, validation, checkpoints.
Every variant runs ``--repeat`` times, interleaved, and the best time of each is kept (other work
on a shared machine only ever adds time).
Throughput is model-images per second (each model sees ``--n`` images; 2 models) over the wall
time of the runs. The training loop alone (as ``train`` logs it in metrics.jsonl) gives the ratio
for long epochs. To explain the ratio, the decode time of the data (train + val split, in a fresh
subprocess) is measured too: both ways do the same forward/backward work, so lockstep saves one
decode, one per-call setup (open data, init, validation data, primitives) and little else.

    python benchmarks/bench_train.py [--n 1024] [--repeat 2] [--datasets synthfaces,celeba] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "data" / "celeba-10k"
ATTRS = ["Smiling", "Male"]
TARGET = 1.2


def config(dataset: str, attrs: list[str], n: int, n_val: int):
    sys.path.insert(0, str(ROOT))
    from fxcore.train.loop import TrainConfig

    return TrainConfig(
        dataset=dataset,
        data_root=str(CELEBA) if dataset == "celeba" else None,
        attributes=attrs,
        model="vgg-mini",
        image_size=64,
        epochs=1,
        batch_size=32,
        lr=1e-3,
        seed=0,
        pretrained="no",
        synth_train=n,
        max_train=n,
        max_val=n_val,
        progress=False,
    )


def child_train(dataset: str, attrs: str, n: int, n_val: int, out: str) -> dict:
    """Subprocess entry: one ``train`` call, timed after imports."""
    from fxcore.train.loop import train

    cfg = config(dataset, attrs.split(","), n, n_val)
    t0 = time.perf_counter()
    train(cfg, out)
    wall = time.perf_counter() - t0
    row = json.loads((Path(out) / cfg.attributes[0] / "metrics.jsonl").read_text().splitlines()[-1])
    return {"wall_s": wall, "loop_s": row["seconds"], "val_accuracy": row["val_accuracy"]}


def child_decode(dataset: str, n: int, n_val: int) -> dict:
    """Subprocess entry: open and decode the train and val splits once, as ``train`` does."""
    from fxcore.data.registry import load_dataset

    kw = {
        "root": str(CELEBA) if dataset == "celeba" else None,
        "attributes": ATTRS,
        "image_size": 64,
    }
    t0 = time.perf_counter()
    extra = {"num_samples": n} if dataset == "synthfaces" else {}
    load_dataset(dataset, split="train", max_samples=n, **kw, **extra).images_uint8()
    load_dataset(dataset, split="val", max_samples=n_val, **kw).images_uint8()
    return {"decode_s": time.perf_counter() - t0}


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"bench_train child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(dataset: str, n: int, n_val: int, repeat: int) -> dict:
    """Each variant ``repeat`` times, interleaved (A, AB, B, B, AB, A, ...); the best of each."""
    a, b = ATTRS
    plan = [("a", a), ("ab", f"{a},{b}"), ("b", b)]
    times: dict[str, list[dict]] = {"a": [], "ab": [], "b": []}
    with tempfile.TemporaryDirectory(prefix="fxcore-bench-train-") as tmp:
        # The first decode also warms the page cache for the training runs.
        decodes = [run_child("decode", dataset, str(n), str(n_val)) for _ in range(repeat)]
        dec = min(decodes, key=lambda d: d["decode_s"])
        for i in range(repeat):
            for key, attrs in plan if i % 2 == 0 else plan[::-1]:
                out = f"{tmp}/{key}{i}"
                times[key].append(run_child("train", dataset, attrs, str(n), str(n_val), out))
                shutil.rmtree(out, ignore_errors=True)
    sep_a, lock, sep_b = (min(times[k], key=lambda r: r["wall_s"]) for k in ("a", "ab", "b"))
    sep = sep_a["wall_s"] + sep_b["wall_s"]
    sep_loop = sep_a["loop_s"] + sep_b["loop_s"]
    res = {
        "n": n,
        "n_val": n_val,
        "repeat": repeat,
        "decode_s": dec["decode_s"],
        "all_wall_s": {k: [round(r["wall_s"], 3) for r in v] for k, v in times.items()},
        "lockstep_s": lock["wall_s"],
        "separate_s": sep,
        "separate_each_s": [sep_a["wall_s"], sep_b["wall_s"]],
        "lockstep_loop_s": lock["loop_s"],
        "separate_loop_s": sep_loop,
        # Throughput of the pair: model-images (n per model, 2 models) per second of wall time.
        "lockstep_model_img_s": 2 * n / lock["wall_s"],
        "separate_model_img_s": 2 * n / sep,
        "ratio": sep / lock["wall_s"],
        # The training loop alone (decode of the train split included, init/val/saving not):
        # what the ratio tends to for long epochs.
        "loop_ratio": sep_loop / lock["loop_s"],
        # Per-call cost outside the loop: dataset open, init, val pass, checkpoint writes.
        "overhead_per_call_s": (sep - sep_loop) / 2,
        "decode_share_of_separate": 2 * dec["decode_s"] / sep,
    }
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="training images per run")
    ap.add_argument("--n-val", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each variant; best is kept")
    ap.add_argument("--datasets", default="synthfaces,celeba")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # run_all stops an overrunning benchmark with SIGTERM: exit through the cleanup code.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child:
        sys.path.insert(0, str(ROOT))
        kind, rest = args.child[0], args.child[1:]
        if kind == "train":
            r = child_train(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
        else:
            r = child_decode(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(r))
        return r

    results: dict[str, dict] = {}
    notes: list[str] = []
    rows: list[dict] = []
    for ds in args.datasets.split(","):
        if ds == "celeba" and not (CELEBA / "list_attr_celeba.txt").is_file():
            notes.append(f"CelebA skipped: {CELEBA} not present")
            rows.append(
                {
                    "bench": "train",
                    "what": "celeba-10k lockstep / separate",
                    "value": "skipped (no data)",
                    "target": f">= {TARGET}x",
                    "ok": None,
                }
            )
            continue
        r = measure(ds, args.n, args.n_val, args.repeat)
        results[ds] = r
        print(
            f"{ds}: n={r['n']} lockstep {r['lockstep_s']:.2f} s (loop {r['lockstep_loop_s']:.2f}"
            f"), separate {r['separate_each_s'][0]:.2f} + {r['separate_each_s'][1]:.2f} s (loops "
            f"{r['separate_loop_s']:.2f}); model-img/s lockstep {r['lockstep_model_img_s']:.0f}, "
            f"separate {r['separate_model_img_s']:.0f}: ratio {r['ratio']:.2f}x, loop only "
            f"{r['loop_ratio']:.2f}x; per call outside the loop {r['overhead_per_call_s']:.2f} s;"
            f" decode {r['decode_s']:.2f} s per run "
            f"({100 * r['decode_share_of_separate']:.0f}% of separate)"
        )
        rows.append(
            {
                "bench": "train",
                "what": f"{ds} vgg-mini 64px, 1 epoch of {r['n']}: lockstep / separate",
                "value": f"{r['ratio']:.2f}x ({r['lockstep_model_img_s']:.0f} vs "
                f"{r['separate_model_img_s']:.0f} model-img/s)",
                "target": f">= {TARGET}x",
                "ok": r["ratio"] >= TARGET,
            }
        )
        rows.append(
            {
                "bench": "train",
                "what": f"  {ds}: training loop only (long-epoch limit)",
                "value": f"{r['loop_ratio']:.2f}x",
                "target": "",
                "ok": None,
            }
        )
        rows.append(
            {
                "bench": "train",
                "what": f"  {ds}: decode / per-call overhead per run",
                "value": f"{r['decode_s']:.2f} s / {r['overhead_per_call_s']:.2f} s",
                "target": "",
                "ok": None,
            }
        )
    for note in notes:
        print(f"note: {note}")
    result = {"datasets": results, "notes": notes, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

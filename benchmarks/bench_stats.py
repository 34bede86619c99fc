"""Benchmark fxcore.measures.stats.mean_var against a naive load-and-stack and the bare reading floor.

Writes one safetensors file per epoch (default 11) holding a whole VGG-19 state dict (torchvision
names and shapes, one-logit head: 38 tensors, 532 MiB per file, 5.9 GiB for 11 epochs) into a temp
dir, then measures, for each tensor asked for and each in a fresh subprocess so peak RSS is its own:

- ``naive``:  per epoch ``safetensors.torch.load_file`` of the WHOLE checkpoint (all 38 tensors),
  keep the one tensor, drop the rest; then ``torch.stack`` and ``torch.var_mean`` (what one writes
  without thinking about I/O; it keeps one checkpoint and the stack in memory, not all epochs);
- ``floor``:  only reading that tensor (``safe_open(...).get_tensor`` per epoch, then dropped);
- ``floor_stream``: only reading, in the same blocks and with the same reads ``mean_var`` uses;
- ``fxcore``: ``fxcore.measures.stats.mean_var``.

Files are read from a warm page cache (they were just written). Times are the best of
``--repeat`` runs (all runs are listed too); "peak RSS +" is the high-water RSS (``VmHWM``) after
the runs minus the resident size just before them. RSS counts touched pages of memory-mapped files
too (``safe_open`` maps the file; ``mean_var`` does positional reads into its own buffers, so only
its allocations show). The temp dir is removed at the end, also on errors.

    python benchmarks/bench_stats.py [--full] [--epochs 11] [--repeat 3] [--json out.json]

``--full`` also measures ``classifier.0.weight`` (4096 x 25088; naive then holds ~5 GB).
``--light`` writes only the measured tensors (a quick check of the script, not the benchmark).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SMALL_KEY, LARGE_KEY = "classifier.3.weight", "classifier.0.weight"
MODES = ("naive", "floor", "floor_stream", "fxcore")
TARGET_SPEEDUP, TARGET_FLOOR, TARGET_MEMORY = 8.0, 2.0, 0.5


def vgg19_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of fxcore's VGG-19 (one logit) with its shape, in state-dict order."""
    import torch

    sys.path.insert(0, str(ROOT))
    from fxcore.models.nets import build_model

    with torch.device("meta"):  # shapes only
        model = build_model("vgg19", 1)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def make_files(folder: Path, epochs: int, keys: list[str], light: bool = False) -> list[Path]:
    """Epoch files epoch_000.safetensors ...: a random walk per tensor (epoch 0 = init).

    Every step adds 1e-3 x a fixed noise tensor rolled by a per-epoch shift: different values per
    epoch at a fraction of the cost of fresh normals for 140 M weights per epoch.
    """
    import torch
    from safetensors.torch import save_file

    shapes = vgg19_shapes()
    if light:
        shapes = {k: shapes[k] for k in keys}
    gen = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(s, generator=gen) * 0.01 for k, s in shapes.items()}
    noise = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    paths = []
    for e in range(epochs):
        p = folder / f"epoch_{e:03d}.safetensors"
        save_file(weights, str(p), {"fxcore": "{}"})
        paths.append(p)
        for k, w in weights.items():
            w.add_(noise[k].flatten().roll(e * 7919 + 1).view_as(w), alpha=1e-3)
    return paths


def work(mode: str, paths: list[Path], key: str) -> None:
    """One measured run of ``mode`` for tensor ``key``."""
    sys.path.insert(0, str(ROOT))
    if mode == "naive":
        import torch
        from safetensors.torch import load_file

        per_epoch = []
        for p in paths:
            state = load_file(str(p))  # the whole checkpoint, every tensor
            per_epoch.append(state.pop(key))
            del state
        stack = torch.stack(per_epoch)  # (E, *shape)
        del per_epoch
        torch.var_mean(stack, dim=0, correction=0)
    elif mode == "floor":
        from safetensors import safe_open

        for p in paths:
            with safe_open(str(p), framework="numpy") as f:
                f.get_tensor(key)
    elif mode == "floor_stream":
        from contextlib import ExitStack

        from fxcore.measures import stats

        infos = stats.epoch_infos(paths, key)
        buf = np.empty(stats._BLOCK_ELEMS, np.float64)
        with ExitStack() as stack:
            fds = stats.open_fds(infos, stack)
            for s, e in stats.block_ranges(infos[0].numel, stats._BLOCK_ELEMS):
                for fd, info in zip(fds, infos):
                    stats.read_block(fd, info, s, e, buf[: e - s])
    else:
        from fxcore.measures import stats

        stats.mean_var(paths, key)


def rss_kib() -> dict[str, int]:
    """This process's resident size now and its high-water mark (KiB, Linux /proc).

    ``VmHWM`` belongs to this process image; ``ru_maxrss`` would also carry the parent's peak
    across ``fork``/``exec``.
    """
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    return {k: int(v.split()[0]) for k, v in fields.items()}


def child(mode: str, folder: str, key: str, repeat: int) -> None:
    """Subprocess entry: time ``repeat`` runs, print JSON with best time and peak RSS increase."""
    paths = sorted(Path(folder).glob("epoch_*.safetensors"))
    sys.path.insert(0, str(ROOT))
    import safetensors.numpy  # noqa: F401  (imports are not part of the measurement)

    import fxcore.measures.stats  # noqa: F401

    if mode == "naive":
        import safetensors.torch  # noqa: F401  (only naive needs torch)
    before = rss_kib()["VmRSS"]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work(mode, paths, key)
        times.append(time.perf_counter() - t0)
    peak = rss_kib()["VmHWM"]
    print(
        json.dumps(
            {"mode": mode, "time_s": min(times), "times": times, "rss_mib": (peak - before) / 1024}
        )
    )


def check(paths: list[Path], key: str) -> float:
    """Max relative error of mean_var against float64 NumPy on the first 64 rows."""
    sys.path.insert(0, str(ROOT))
    from safetensors import safe_open

    from fxcore.measures import stats

    mean, var = stats.mean_var(paths, key)
    rows = []
    for p in paths:
        with safe_open(str(p), framework="numpy") as f:
            rows.append(f.get_slice(key)[0:64].astype(np.float64))
    st = np.stack(rows)
    err_m = np.max(np.abs(mean[:64] - st.mean(0)) / (np.abs(st.mean(0)) + 1e-12))
    err_v = np.max(np.abs(var[:64] - st.var(0)) / st.var(0))
    return float(max(err_m, err_v))


def table_rows(results: dict[str, dict]) -> list[dict]:
    """Rows for run_all's table: speed-up over naive, cost over the floor, memory vs naive."""
    rows = []
    for key, r in results.items():
        modes = r["modes"]
        short = key.replace(".weight", "")
        if "naive" in modes and "fxcore" in modes:
            x = r["naive_over_fxcore"]
            rows.append(
                {
                    "bench": "stats",
                    "what": f"{short}: naive / fxcore time",
                    "value": f"{x:.1f}x ({modes['naive']['time_s']:.2f} s / "
                    f"{modes['fxcore']['time_s']:.2f} s)",
                    "target": f">= {TARGET_SPEEDUP:.0f}x",
                    "ok": x >= TARGET_SPEEDUP,
                }
            )
            m = modes["fxcore"]["rss_mib"] / max(modes["naive"]["rss_mib"], 1e-9)
            rows.append(
                {
                    "bench": "stats",
                    "what": f"{short}: fxcore / naive peak RSS",
                    "value": f"{m:.2f} ({modes['fxcore']['rss_mib']:.0f} / "
                    f"{modes['naive']['rss_mib']:.0f} MiB)",
                    "target": f"<= {TARGET_MEMORY}",
                    "ok": m <= TARGET_MEMORY,
                }
            )
        if "floor" in modes and "fxcore" in modes:
            f = r["fxcore_over_floor"]
            rows.append(
                {
                    "bench": "stats",
                    "what": f"{short}: fxcore / read floor time",
                    "value": f"{f:.2f}x ({modes['floor']['time_s']:.2f} s floor)",
                    "target": f"<= {TARGET_FLOOR:.0f}x",
                    "ok": f <= TARGET_FLOOR,
                }
            )
        if "floor_stream" in modes and "fxcore" in modes:
            f = r["fxcore_over_floor_stream"]
            rows.append(
                {
                    "bench": "stats",
                    "what": f"  {short}: fxcore / pread-only floor",
                    "value": f"{f:.2f}x ({modes['floor_stream']['time_s']:.2f} s floor)",
                    "target": "",
                    "ok": None,
                }
            )
    return rows


def measure_key(folder: str, paths: list[Path], key: str, modes: list[str], repeat: int) -> dict:
    """All modes for one tensor, each in its own subprocess; returns times, RSS and ratios."""
    res = {}
    for mode in modes:
        cmd = [sys.executable, __file__, "--repeat", str(repeat), "--child", mode, folder, key]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{out.stderr}")
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    best = {m: r["time_s"] for m, r in res.items()}
    summary: dict[str, float] = {"max_rel_err_first_rows": check(paths, key)}
    for a, b in [("naive", "fxcore"), ("fxcore", "floor"), ("fxcore", "floor_stream")]:
        if a in res and b in res:
            summary[f"{a}_over_{b}"] = best[a] / best[b]
    return {"modes": res, **summary}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help=f"also {LARGE_KEY} (naive: ~5 GB)")
    ap.add_argument("--epochs", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="comma list, e.g. floor,fxcore")
    ap.add_argument("--light", action="store_true", help="write only the measured tensors")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "DIR", "KEY"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # run_all stops an overrunning benchmark with SIGTERM: exit through the cleanup code.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child:
        child(*args.child, repeat=args.repeat)
        return {}
    keys = [SMALL_KEY, LARGE_KEY] if args.full else [SMALL_KEY]
    shapes = vgg19_shapes()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fxcore-bench-") as tmp:
        t0 = time.perf_counter()
        paths = make_files(Path(tmp), args.epochs, keys, args.light)
        file_mib = paths[0].stat().st_size / 2**20
        print(f"wrote {args.epochs} epochs x {file_mib:.0f} MiB in {time.perf_counter() - t0:.1f}s")
        for key in keys:
            results[key] = measure_key(tmp, paths, key, args.modes.split(","), args.repeat)
    print(f"{'tensor':<21}{'mode':<13}{'best s':>8}{'peak RSS +MiB':>15}{'x tensor':>10}  all runs")
    for key, r in results.items():
        tensor_mib = float(np.prod(shapes[key])) * 4 / 2**20
        for mode, m in r["modes"].items():
            runs = " ".join(f"{t:.3f}" for t in m["times"])
            print(
                f"{key:<21}{mode:<13}{m['time_s']:>8.3f}{m['rss_mib']:>15.0f}"
                f"{m['rss_mib'] / tensor_mib:>10.2f}  {runs}"
            )
        for k, v in r.items():
            if k != "modes":
                print(f"{key:<21}{k:<36}{v:.3g}")
    result = {
        "epochs": args.epochs,
        "file_mib": file_mib,
        "light": args.light,
        "keys": results,
        "rows": table_rows(results),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

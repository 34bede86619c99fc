"""Benchmark fxcore.stats.mean_var against a naive load-and-stack and the bare reading floor.

Writes one safetensors file per epoch (default 11) holding a VGG-19 sized ``classifier.3.weight``
(4096 x 4096 float32; ``--full`` adds ``classifier.0.weight`` 4096 x 25088) into a temp dir, then
measures, each in a fresh subprocess so peak RSS is its own:

- ``naive``:  ``safetensors.torch.load_file`` of every whole file, ``np.stack``, ``mean``/``var``;
- ``floor``:  only reading the tensors (``safe_open(...).get_tensor`` per epoch, then dropped);
- ``floor_stream``: only reading, in the same blocks and with the same reads ``mean_var`` uses;
- ``fxcore``: ``fxcore.stats.mean_var``.

Files are read from a warm page cache (they were just written). Times are the best of
``--repeat`` runs (the first, which also pays for fresh page faults, is listed too); "peak RSS +"
is the high-water RSS (``VmHWM``) after the runs minus the resident size just before them. RSS
counts touched pages of memory-mapped files too (``safe_open`` maps the file; ``mean_var`` does
positional reads into its own buffers, so only its allocations show).

    python benchmarks/bench_stats.py [--full] [--epochs 11] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"classifier.3.weight": (4096, 4096), "classifier.0.weight": (4096, 25088)}
MODES = ("naive", "floor", "floor_stream", "fxcore")


def make_files(folder: Path, epochs: int, full: bool) -> list[Path]:
    """A random walk per tensor, saved as epoch_000.safetensors ... (epoch 0 = init)."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(0)
    keys = list(SHAPES) if full else ["classifier.3.weight"]
    weights = {k: rng.standard_normal(SHAPES[k], dtype=np.float32) * 0.01 for k in keys}
    paths = []
    for e in range(epochs):
        p = folder / f"epoch_{e:03d}.safetensors"
        save_file({k: torch.from_numpy(w) for k, w in weights.items()}, str(p), {"fxcore": "{}"})
        paths.append(p)
        for w in weights.values():
            w += rng.standard_normal(w.shape, dtype=np.float32) * 0.001
    return paths


def work(mode: str, paths: list[Path], keys: list[str]) -> None:
    """One measured run of ``mode`` over all ``keys``."""
    sys.path.insert(0, str(ROOT))
    if mode == "naive":
        from safetensors.torch import load_file

        loaded = [load_file(str(p)) for p in paths]  # whole files, all tensors
        for k in keys:
            stack = np.stack([d[k].numpy() for d in loaded])  # (E, *shape)
            stack.mean(0), stack.var(0)
    elif mode == "floor":
        from safetensors import safe_open

        for k in keys:
            for p in paths:
                with safe_open(str(p), framework="numpy") as f:
                    f.get_tensor(k)
    elif mode == "floor_stream":
        from contextlib import ExitStack

        from fxcore import stats

        for k in keys:
            infos = stats.epoch_infos(paths, k)
            buf = np.empty(stats._BLOCK_ELEMS, np.float64)
            with ExitStack() as stack:
                fds = stats.open_fds(infos, stack)
                for s, e in stats.block_ranges(infos[0].numel, stats._BLOCK_ELEMS):
                    for fd, info in zip(fds, infos):
                        stats.read_block(fd, info, s, e, buf[: e - s])
    else:
        from fxcore import stats

        for k in keys:
            stats.mean_var(paths, k)


def rss_kib() -> dict[str, int]:
    """This process's resident size now and its high-water mark (KiB, Linux /proc).

    ``VmHWM`` belongs to this process image; ``ru_maxrss`` would also carry the parent's peak
    across ``fork``/``exec``.
    """
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    return {k: int(v.split()[0]) for k, v in fields.items()}


def child(mode: str, folder: str, keys: str, repeat: int) -> None:
    """Subprocess entry: time ``repeat`` runs, print JSON with best time and peak RSS increase."""
    paths = sorted(Path(folder).glob("epoch_*.safetensors"))
    sys.path.insert(0, str(ROOT))
    import safetensors.numpy  # noqa: F401  (imports are not part of the measurement)

    import fxcore.stats  # noqa: F401

    if mode == "naive":
        import safetensors.torch  # noqa: F401  (only naive needs torch)
    before = rss_kib()["VmRSS"]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work(mode, paths, keys.split(","))
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

    from fxcore import stats

    mean, var = stats.mean_var(paths, key)
    rows = []
    for p in paths:
        with safe_open(str(p), framework="numpy") as f:
            rows.append(f.get_slice(key)[0:64].astype(np.float64))
    st = np.stack(rows)
    err_m = np.max(np.abs(mean[:64] - st.mean(0)) / (np.abs(st.mean(0)) + 1e-12))
    err_v = np.max(np.abs(var[:64] - st.var(0)) / st.var(0))
    return float(max(err_m, err_v))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also classifier.0.weight (naive: ~10 GB)")
    ap.add_argument("--epochs", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="comma list, e.g. floor,fxcore")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "DIR", "KEYS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, repeat=args.repeat)
        return {}
    keys = list(SHAPES) if args.full else ["classifier.3.weight"]
    tensor_mib = sum(np.prod(SHAPES[k]) * 4 for k in keys) / 2**20
    with tempfile.TemporaryDirectory(prefix="fxcore-bench-") as tmp:
        t0 = time.perf_counter()
        paths = make_files(Path(tmp), args.epochs, args.full)
        print(
            f"wrote {args.epochs} epochs x {tensor_mib:.0f} MiB in {time.perf_counter() - t0:.1f}s"
        )
        res = {}
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--repeat", str(args.repeat)]
            out = subprocess.run(
                [*cmd, "--child", mode, tmp, ",".join(keys)], capture_output=True, text=True
            )
            if out.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{out.stderr}")
            res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        err = check(paths, keys[0])
    print(f"{'mode':<13}{'best s':>9}{'peak RSS +MiB':>15}{'x tensor':>10}   all runs")
    for mode, r in res.items():
        runs = " ".join(f"{t:.3f}" for t in r["times"])
        print(
            f"{mode:<13}{r['time_s']:>9.3f}{r['rss_mib']:>15.0f}{r['rss_mib'] / tensor_mib:>10.2f}   {runs}"
        )
    best = {m: r["time_s"] for m, r in res.items()}
    first = {m: r["times"][0] for m, r in res.items()}
    summary: dict[str, float] = {"max_rel_err_first_rows": err}
    for a, b in [("naive", "fxcore"), ("fxcore", "floor"), ("fxcore", "floor_stream")]:
        if a in res and b in res:
            summary[f"{a}_over_{b}"] = best[a] / best[b]
            summary[f"{a}_over_{b}_first_run"] = first[a] / first[b]
    for k, v in summary.items():
        print(f"{k:<36}{v:.3g}")
    result = {
        "epochs": args.epochs,
        "keys": keys,
        "tensor_mib": tensor_mib,
        "modes": res,
        **summary,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

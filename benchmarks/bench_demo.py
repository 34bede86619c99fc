"""Benchmark ``python -m fxcore demo``: wall time to create the built-in demo experiments.

Runs the real command into a temp folder (removed afterwards) and reads the per-experiment times it
prints (``demo: NAME done in N s``) and the per-epoch training times the runs logged.
Slow (minutes): ``run_all.py`` runs it only with ``--with-demo``.

    python benchmarks/bench_demo.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 120.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    # run_all stops an overrunning benchmark with SIGTERM: exit through the cleanup code.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fxcore-bench-demo-") as tmp:
        out = Path(tmp) / "checkpoints"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "fxcore", "demo", "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"fxcore demo failed:\n{proc.stderr[-3000:]}")
        parts = {
            m[1]: float(m[2]) for m in re.finditer(r"demo: (\S+) done in (\d+) s", proc.stderr)
        }
        epochs: dict[str, list[float]] = {}
        for metrics in sorted(out.glob("*/*/metrics.jsonl")):
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            epochs[f"{metrics.parent.parent.name}/{metrics.parent.name}"] = [
                round(r["seconds"], 2) for r in rows
            ]
    print(f"fxcore demo: {wall:.1f} s wall")
    for name, s in parts.items():
        print(f"  {name}: {s:.0f} s")
    for name, secs in epochs.items():
        print(f"  {name}: training loop per epoch {secs} s")
    rows = [
        {
            "bench": "demo",
            "what": "python -m fxcore demo (both experiments)",
            "value": f"{wall:.0f} s ("
            + ", ".join(f"{k.split('-')[0]} {v:.0f} s" for k, v in parts.items())
            + ")",
            "target": f"<= {TARGET_S:.0f} s",
            "ok": wall <= TARGET_S,
        }
    ]
    result = {"wall_s": wall, "experiments_s": parts, "epoch_loop_s": epochs, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

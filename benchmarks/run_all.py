"""Run every benchmark (each in its own process) and print one table of ratios and targets.

    python benchmarks/run_all.py [--with-demo] [--quick] [--only stats,payload] [--json out.json]
                                 [--markdown out.md]

``make bench`` runs this. Each benchmark measures its own baseline in the same run (machines are
noisy, so only ratios within one run are compared) and returns table rows; a benchmark that fails
or runs past its time limit gets a row saying so and the others still run. The 1-minute load
average before each benchmark is shown, because other work on the machine slows everything.
``--quick`` runs small sizes to check the scripts, not to measure. ``--with-demo`` adds the slow
``python -m fxcore demo`` timing (minutes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (script, full arguments, --quick arguments, time limit in seconds)
BENCHES: dict[str, tuple[str, list[str], list[str], int]] = {
    "stats": (
        "bench_stats.py",
        ["--full", "--repeat", "2"],
        ["--epochs", "3", "--repeat", "1", "--light"],
        480,
    ),
    "payload": ("bench_payload.py", ["--repeat", "3"], ["--repeat", "1", "--no-naive"], 240),
    "explain": ("bench_explain.py", ["--repeat", "3"], ["--repeat", "1", "--size", "64"], 300),
    "train": (
        "bench_train.py",
        ["--n", "1024"],
        ["--n", "64", "--n-val", "32", "--repeat", "1"],
        600,
    ),
    "contention": ("bench_contention.py", [], ["--n", "64"], 1800),
    "uploads": ("bench_uploads.py", [], [], 300),
    "app": ("bench_app.py", [], [], 300),
    "live": ("bench_live.py", [], ["--refreshes", "2"], 300),
    "compare": ("bench_compare.py", [], ["--quick"], 600),
    "demo": ("bench_demo.py", [], [], 900),
}


def run_logged(cmd: list[str], limit: int) -> tuple[str, str]:
    """Run ``cmd``, echoing its output as it comes; (output, error or "").

    Past ``limit`` seconds its whole process group gets SIGTERM (the scripts then remove their temp
    files and servers), and SIGKILL 20 s later.
    """
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "No runtime found" not in line:
                print(f"  {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=limit)
        error = f"exit code {code}" if code else ""
    except subprocess.TimeoutExpired:
        error = f"stopped after {limit} s"
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
    reader.join(timeout=5)
    return "".join(lines), error


def run_bench(name: str, quick: bool) -> tuple[list[dict], dict, float]:
    """Run one benchmark script; its rows (or one row saying why none), its JSON and seconds."""
    script, full, small, limit = BENCHES[name]
    with tempfile.TemporaryDirectory(prefix="fxcore-run-all-") as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(HERE / script), *(small if quick else full), "--json", str(out)]
        t0 = time.perf_counter()
        log, error = run_logged(cmd, limit)
        seconds = time.perf_counter() - t0
        if not error and out.is_file():
            data = json.loads(out.read_text())
            return data.get("rows", []), data, seconds
    tail = log.strip().splitlines()[-1:] or [""]
    row = {
        "bench": name,
        "what": f"{script} failed",
        "value": f"{error}: {tail[0][:60]}",
        "target": "",
        "ok": False,
    }
    return [row], {"error": error, "log_tail": log[-2000:]}, seconds


def mark(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[ok]


def table(rows: list[dict]) -> str:
    """The one plain-text table."""
    head = ("bench", "measure", "value", "target", "")
    cells = [head] + [(r["bench"], r["what"], r["value"], r["target"], mark(r["ok"])) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    out = ["| bench | measure | value | target | |", "|---|---|---|---|---|"]
    for r in rows:
        what = r["what"].replace("|", "/")
        what = f"↳ {what.strip()}" if what.startswith(" ") else what  # a detail of the row above
        out.append(f"| {r['bench']} | {what} | {r['value']} | {r['target']} | {mark(r['ok'])} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with-demo", action="store_true", help="also time `fxcore demo` (minutes)")
    ap.add_argument("--quick", action="store_true", help="small sizes: check the scripts only")
    ap.add_argument("--only", help="comma list of: " + ", ".join(BENCHES))
    ap.add_argument("--json", type=Path, help="write every benchmark's full results here")
    ap.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else [n for n in BENCHES if n != "demo"]
    if args.with_demo and "demo" not in names:
        names.append("demo")
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
    if "stats" in names and not args.quick:
        free = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
        if free < 8:
            print(f"note: only {free:.1f} GiB free in {tempfile.gettempdir()}; stats needs ~6 GiB")

    info = machine()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    print(
        f"fxcore benchmarks, {started}: {info['cpu']}, {info['cores']} cores, {info['memory']}, "
        f"{info['torch']}" + (" [--quick: NOT measurements]" if args.quick else ""),
        flush=True,
    )
    rows: list[dict] = []
    results: dict[str, dict] = {}
    t_all = time.perf_counter()
    for name in names:
        load = os.getloadavg()[0]
        print(f"\n== {name} (load average {load:.2f})", flush=True)
        bench_rows, data, seconds = run_bench(name, args.quick)
        rows += bench_rows
        results[name] = {"load_1min_before": load, "seconds": seconds, **data}
    total = time.perf_counter() - t_all
    loads = ", ".join(f"{n} {r['load_1min_before']:.1f}" for n, r in results.items())
    print(f"\n{table(rows)}\n")
    print(f"total {total / 60:.1f} min; 1-min load average before each: {loads}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started,
                    "machine": info,
                    "quick": args.quick,
                    "total_s": total,
                    "results": results,
                    "rows": rows,
                },
                indent=2,
            )
        )
    if args.markdown:
        args.markdown.write_text(markdown(rows) + "\n")
    return 1 if any(r["ok"] is False and "failed" in r["what"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

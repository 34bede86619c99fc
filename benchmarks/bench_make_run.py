"""Time from ``make run`` (install already done) to the first page, on a fresh clone.

Clones this checkout's HEAD into a temporary folder, reuses this checkout's .venv (so the install
is not timed: ``make -o .venv/.installed``), starts ``make run`` and measures until
``/_stcore/health`` answers and until Chromium shows the Home page with the shipped experiment;
``--load`` adds one CPU-bound process (``python -c "while True: pass"``) for the whole run. Then
stops ``make run`` (SIGTERM to its process group) and checks that the background demo trainer
left no temp file. Prints one JSON line.

    python benchmarks/bench_make_run.py [--load] [--port 8531]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def wait_health(url: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("no /_stcore/health answer")


def wait_home(url: str, text: str, timeout_s: float) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.wait_for_selector('[data-testid="stMain"] h1')
            page.get_by_text(text).first.wait_for()
            return time.monotonic()
        finally:
            browser.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", action="store_true", help="one extra CPU-bound process")
    ap.add_argument("--port", type=int, default=8531)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="make-run-"))
    clone = tmp / "fxcore"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to((ROOT / ".venv").resolve())
    env = {
        **os.environ,
        "PYTHONPATH": str(clone),
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_SERVER_PORT": str(args.port),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("FXCORE_DATA", None)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    load_before = os.getloadavg()[0]
    url = f"http://localhost:{args.port}"
    t0 = time.monotonic()
    make = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        t_health = wait_health(url, t0 + args.timeout)
        t_home = wait_home(url, "celeba-pair", args.timeout)
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=120)
        if hog:
            hog.kill()
    time.sleep(3)  # the trainer settles after SIGTERM
    log = clone / "checkpoints" / ".demo-training.log"
    print(
        json.dumps(
            {
                "load": "one CPU-bound job" if args.load else "idle",
                "loadavg_1min_before": round(load_before, 2),
                "health_s": round(t_health - t0, 1),
                "home_s": round(t_home - t0, 1),
                "temp_files_left": [str(p) for p in (clone / "checkpoints").rglob("*.tmp")],
                "demo_log_tail": log.read_text()[-300:] if log.is_file() else None,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

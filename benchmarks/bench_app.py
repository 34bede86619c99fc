"""Benchmark the real app in a real browser: cold start to the first page, page and epoch switches.

``streamlit run app/Home.py`` serves a copy of the demo experiments (``/tmp/demo_ckpt`` when it holds
experiments, else ``python -m fxcore demo --out /tmp/bench_ckpt`` first), with the comparison caches
that ``fxcore demo`` leaves (``.fxcore-cache``; filled with ``fxcore compare`` where a demo from an
older version lacks them). Headless Debian Chromium driven by
Playwright (never ``playwright install``) opens it. Python imports are warmed first (one process
imports torch, streamlit, plotly, captum, fxcore...), then:

- cold start: from launching the server to the Home page rendered (health answered, the first
  script run finished, the training-curve chart drawn);
- page switch: sidebar click -> that page's run finished and every element of it drawn (no stale
  element, every Plotly chart has its SVG). First visit (no model or image cached yet; measured
  after 4 s on Home, the time the app's background import of torch takes there) and second visit;
- epoch switch: one step of the epoch slider on Feature maps (both models rerun on the sample
  image) and of the epoch range on Weight statistics.

"Run finished" is the ``script_finished`` message the server sends over the websocket, read in the
browser session; layout is then awaited in the DOM. Needs Playwright's Python package and
``/usr/bin/chromium`` (``apt-get install -y chromium``).

    python benchmarks/bench_app.py [--root DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    ARGS,
    CHROMIUM,
    ROOT,
    demo_root,
    face_experiment,
    free_port,
    is_script_finished,
    server_command,
    wait_healthy,
)

DEMO_DIRS = [Path("/tmp/demo_ckpt"), Path("/tmp/bench_ckpt")]
PAGES = ["Feature maps", "Weight statistics", "Training dynamics", "Dataset", "Home"]
COLD_TARGET_S, SWITCH_TARGET_S = 5.0, 1.0
HOME_READ_MS = 4000
WARM_IMPORTS = (
    "import torch, torchvision, numpy, PIL, safetensors, streamlit, plotly, pandas, "
    "matplotlib, captum, cv2; import plotly.graph_objects; import fxcore.compare.analysis, "
    "fxcore.upload.faces, fxcore.train.loop"
)
DRAWN = """() => !document.querySelector('[data-stale="true"]')
  && !document.querySelector('[data-testid="stStatusWidget"]')
  && !document.querySelector('[data-testid="stSkeleton"]')
  && [...document.querySelectorAll('.stPlotlyChart')].every(c => c.querySelector('.main-svg'))"""


class Runs:
    """Counts the server's ``script_finished`` messages seen by the page's websocket."""

    def __init__(self, page) -> None:
        self.finished = 0
        self.t_finished = 0.0  # perf_counter of the last script_finished
        self.t_socket = 0.0  # perf_counter of the first websocket (the frontend has loaded)

        def on_frame(payload) -> None:
            if is_script_finished(payload):
                self.finished += 1
                self.t_finished = time.perf_counter()

        def on_socket(ws) -> None:
            self.t_socket = self.t_socket or time.perf_counter()
            ws.on("framereceived", on_frame)

        page.on("websocket", on_socket)

    def wait(self, page, before: int, timeout: float = 180.0) -> None:
        """Until a run that started after ``before`` finished and its output is drawn."""
        end = time.monotonic() + timeout
        while self.finished <= before:
            if time.monotonic() > end:
                raise TimeoutError("the script run did not finish")
            page.wait_for_timeout(5)
        page.wait_for_function(DRAWN, polling=10, timeout=timeout * 1000)


def no_errors(page, what: str) -> None:
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"{what}: the page shows an exception")


def measure(page, runs: Runs, action, what: str, split: dict) -> float:
    """Seconds from ``action`` to its run drawn; ``split[what]`` gets (server run, browser draw)."""
    before = runs.finished
    t0 = time.perf_counter()
    action()
    runs.wait(page, before)
    t1 = time.perf_counter()
    no_errors(page, what)
    split[what] = (runs.t_finished - t0, t1 - runs.t_finished)
    print(
        f"  {what}: {t1 - t0:.2f} s (script run {split[what][0]:.2f} s, then drawing "
        f"{split[what][1]:.2f} s)",
        flush=True,
    )
    return t1 - t0


def step_slider(page, label: str, key: str) -> None:
    """Move the (first thumb of the) slider labelled ``label`` one option (``key``: arrow key)."""
    block = page.locator('[data-testid="stSlider"]').filter(has_text=label).first
    thumb = block.locator('input[type="range"]').first
    thumb.focus()
    thumb.press(key)


def bench(root: Path) -> dict:
    from playwright.sync_api import sync_playwright

    exp = face_experiment(root)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], cwd=ROOT, check=True)
    imports_s = time.perf_counter() - t0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FXCORE_CHECKPOINTS": str(root)}
    cmd = server_command(port)
    res: dict = {"experiment": exp, "warm_imports_s": imports_s}
    split: dict[str, tuple[float, float]] = {}
    with sync_playwright() as p, tempfile.TemporaryFile() as log:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(120_000)
        runs = Runs(page)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, proc)
            res["server_ready_s"] = time.perf_counter() - t0
            page.goto(f"{url}/?experiment={exp}")
            runs.wait(page, 0)
            page.locator(".js-plotly-plot .main-svg").first.wait_for()
            res["cold_start_s"] = time.perf_counter() - t0
            res["cold_split"] = {
                "server_up_s": res["server_ready_s"],
                "frontend_loaded_s": runs.t_socket - t0 - res["server_ready_s"],
                "first_run_s": runs.t_finished - runs.t_socket,
                "drawing_s": t0 + res["cold_start_s"] - runs.t_finished,
            }
            no_errors(page, "Home")
            page.wait_for_timeout(HOME_READ_MS)  # cache.prewarm: 2 s delay, then ~2 s of imports
            nav = page.locator('[data-testid="stSidebarNav"]')
            for visit in ("first", "second"):
                for title in PAGES:
                    link = (
                        nav.get_by_text(title, exact=True)
                        if title != "Home"
                        else nav.locator("a").first
                    )
                    res[f"page {title} ({visit})"] = measure(
                        page, runs, link.click, f"{title} ({visit})", split
                    )
            nav.get_by_text("Feature maps", exact=True).click()
            runs.wait(page, runs.finished - 1)
            page.wait_for_timeout(300)
            for i in (1, 2):
                res[f"epoch switch Feature maps ({i})"] = measure(
                    page,
                    runs,
                    lambda: step_slider(page, "Epoch", "ArrowLeft"),
                    f"epoch Feature maps ({i})",
                    split,
                )
            before = runs.finished
            nav.get_by_text("Weight statistics", exact=True).click()
            runs.wait(page, before)
            for i in (1, 2):
                res[f"epoch range switch Weight statistics ({i})"] = measure(
                    page,
                    runs,
                    lambda: step_slider(page, "Epoch range", "ArrowRight"),
                    f"epoch range Weight statistics ({i})",
                    split,
                )
        finally:
            browser.close()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    res["split_s"] = split
    return res


def fill_caches(root: Path) -> None:
    """Run ``fxcore compare`` (as ``fxcore demo`` does after training) where no cache exists."""
    for exp in sorted(p for p in root.iterdir() if (p / "experiment.json").is_file()):
        if not any((exp / ".fxcore-cache").glob("dynamics-*.json")):
            print(f"filling the comparison cache of {exp.name} (a demo from before it was made)")
            subprocess.run(
                [sys.executable, "-m", "fxcore", "compare", str(exp)],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="experiments to serve (default: the demo ones)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    # run_all stops an overrunning benchmark with SIGTERM: exit through the cleanup code.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright (Python package) not installed"
    else:
        missing = "" if CHROMIUM.exists() else f"{CHROMIUM} not found (apt-get install chromium)"
    if missing:
        print(f"skipped: {missing}")
        row = {
            "bench": "app",
            "what": "app cold start / switches",
            "value": "skipped",
            "target": "",
            "ok": None,
            "note": missing,
        }
        return {"skipped": missing, "rows": [row]}

    src, how = (args.root, "given") if args.root else demo_root(DEMO_DIRS)
    with tempfile.TemporaryDirectory(prefix="fxcore-bench-app-") as tmp:
        root = Path(tmp) / "checkpoints"
        shutil.copytree(src, root)  # copy2 keeps mtimes, so the cache keys stay valid
        fill_caches(root)
        res = bench(root)
    res["source"] = f"{src} ({how})"
    print(f"experiments: {res['source']}; face experiment {res['experiment']}")
    for k, v in res.items():
        if isinstance(v, float):
            print(f"  {k:<48}{v:7.2f} s")
    first = {k: v for k, v in res.items() if k.startswith("page") and "(first)" in k}
    second = {k: v for k, v in res.items() if k.startswith("page") and "(second)" in k}
    epochs = {k: v for k, v in res.items() if k.startswith("epoch")}
    c = res["cold_split"]
    print(
        f"  cold start split: server up {c['server_up_s']:.2f} s, frontend loaded "
        f"{c['frontend_loaded_s']:.2f} s, first script run {c['first_run_s']:.2f} s, drawing "
        f"{c['drawing_s']:.2f} s"
    )
    worst = lambda d: max(d, key=d.get)  # noqa: E731
    w1, w2, we = worst(first), worst(second), worst(epochs)
    page = lambda k: k.split(" (")[0].replace("page ", "").replace("epoch range switch ", "")  # noqa: E731
    rows = [
        {
            "bench": "app",
            "what": "cold start: launch -> Home drawn (imports warm)",
            "value": f"{res['cold_start_s']:.1f} s",
            "target": f"<= {COLD_TARGET_S:.0f} s",
            "ok": res["cold_start_s"] <= COLD_TARGET_S,
        },
        {
            "bench": "app",
            "what": "  server up / frontend / 1st script run / draw",
            "value": f"{c['server_up_s']:.1f} / {c['frontend_loaded_s']:.1f} / "
            f"{c['first_run_s']:.1f} / {c['drawing_s']:.1f} s",
            "target": "",
            "ok": None,
        },
        {
            "bench": "app",
            "what": "page switch, slowest revisit of 5 pages",
            "value": f"{second[w2]:.2f} s ({page(w2)})",
            "target": f"<= {SWITCH_TARGET_S:.0f} s",
            "ok": second[w2] <= SWITCH_TARGET_S,
        },
        {
            "bench": "app",
            "what": "epoch switch, slowest of 4",
            "value": f"{epochs[we]:.2f} s ({page(we).replace('epoch switch ', '')})",
            "target": f"<= {SWITCH_TARGET_S:.0f} s",
            "ok": epochs[we] <= SWITCH_TARGET_S,
        },
        {
            "bench": "app",
            "what": "page first visit (new models/image), slowest",
            "value": f"{first[w1]:.2f} s ({page(w1)})",
            "target": "(info)",
            "ok": None,
        },
    ]
    result = {**res, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

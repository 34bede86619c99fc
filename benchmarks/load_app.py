"""Load test: N concurrent browser sessions drive the REAL Streamlit app for a bounded time.

Starts ``streamlit run app/Home.py`` on 127.0.0.1 (a free port, nothing else is contacted) over a
copy of the demo experiments (``/tmp/demo_ckpt`` when it holds experiments, else
``python -m fxcore demo --out /tmp/load_ckpt`` first; the copy leaves out any ``.fxcore-cache``).
One headless Debian Chromium (Playwright's Python package, never ``playwright install``) opens
``--sessions`` independent browser contexts, i.e. that many Streamlit sessions, and each one, with
its own seeded random choices, keeps doing what a user of the Feature maps page does:

- ``epoch``: move the Epoch slider one step (both models rerun on the current image);
- ``upload``: upload another face photo (JPEG/PNG/WebP, 256-1024 px; face crop on);
- ``sample``: switch to a dataset image and step the validation-image index;
- ``page``: go to Weight statistics, move its epoch range, come back.

Each interaction is timed from the action to the end of the script run it caused (the server's
``script_finished`` message on that page's websocket) AND the page drawn (no status widget, no
stale element, every Plotly chart rendered). After each one the page is checked for error
elements (uncaught exceptions and ``st.error`` boxes). The server's resident memory is sampled
from ``/proc/<pid>/status`` every 0.5 s. Everything stops by itself after ``--duration`` seconds
or ``--max-interactions`` interactions, whichever comes first.

    python benchmarks/load_app.py [--sessions 8] [--duration 120] [--root DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (
    ARGS,
    CHROMIUM,
    ROOT,
    demo_root,
    face_experiment,
    free_port,
    is_script_finished,
    machine,
    server_command,
    wait_healthy,
)

DEMO_DIRS = [Path("/tmp/demo_ckpt"), Path("/tmp/load_ckpt")]
STEP_TIMEOUT_S = 120.0  # one interaction slower than this counts as an error
DRAWN = """() => !document.querySelector('[data-stale="true"]')
  && !document.querySelector('[data-testid="stStatusWidget"]')
  && !document.querySelector('[data-testid="stSkeleton"]')
  && [...document.querySelectorAll('.stPlotlyChart')].every(c => c.querySelector('.main-svg'))"""
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
DIAGNOSE = """() => ({
  running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  stale: document.querySelectorAll('[data-stale="true"]').length,
  skeletons: document.querySelectorAll('[data-testid="stSkeleton"]').length,
  charts_undrawn: [...document.querySelectorAll('.stPlotlyChart')]
    .filter(c => !c.querySelector('.main-svg')).length,
  uploaded_files: document.querySelectorAll('[data-testid="stFileUploaderFile"]').length,
  uploader: (document.querySelector('[data-testid="stFileUploader"]') || {}).innerText || null,
  connection: (document.querySelector('[data-testid="stConnectionStatus"]') || {}).innerText
    || null,
})"""


def upload_images(folder: Path) -> list[Path]:
    """Synthetic face photos (not from any dataset) in the formats and sizes users upload."""
    from PIL import Image

    from fxcore.data.synthfaces import SynthFaces

    faces = SynthFaces("val", image_size=256, max_samples=8).render(list(range(4)))  # (4,3,S,S)
    out = []
    for i, (fmt, side) in enumerate([("JPEG", 256), ("PNG", 400), ("WEBP", 320), ("JPEG", 1024)]):
        img = Image.fromarray(faces[i].transpose(1, 2, 0)).resize((side, side))
        path = folder / f"face{i}.{fmt.lower()}"
        buf = io.BytesIO()
        img.save(buf, fmt, quality=90)
        path.write_bytes(buf.getvalue())
        out.append(path)
    return out


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class MemorySampler(threading.Thread):
    """Samples the server's resident memory (MB) every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - t0, rss_mb(self.pid)))
            self.stop.wait(self.period)


class Runs:
    """Counts the ``script_finished`` messages the server sends to one page."""

    def __init__(self, page) -> None:
        self.finished = 0

        def on_frame(payload) -> None:
            if is_script_finished(payload):
                self.finished += 1

        page.on("websocket", lambda ws: ws.on("framereceived", on_frame))

    async def wait(self, page, before: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.finished <= before:
            if time.monotonic() > end:
                raise TimeoutError("the script run did not finish")
            await asyncio.sleep(0.01)
        await page.wait_for_function(
            DRAWN, polling=20, timeout=max(1.0, end - time.monotonic()) * 1000
        )


@dataclass
class Record:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    interactions: int = 0


async def session(
    i: int,
    browser,
    url: str,
    exp: str,
    images: list[Path],
    deadline: float,
    budget: list[int],
    rec: Record,
) -> None:
    rng = random.Random(1000 + i)
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(STEP_TIMEOUT_S * 1000)
    runs = Runs(page)
    source = "sample"
    shown: list[Path | None] = [None]  # the file in the uploader now

    async def timed(kind: str, action) -> bool:
        before = runs.finished
        t0 = time.perf_counter()
        try:
            await action()
            await runs.wait(page, before, STEP_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a stuck or failed interaction is a finding
            state = await diagnose()
            left = deadline - t0
            rec.errors.append(
                f"session {i} {kind}: {type(exc).__name__}: {str(exc)[:200]} "
                f"(started {left:.0f} s before the deadline, gave up after "
                f"{time.perf_counter() - t0:.0f} s); page: {state}"
            )
            # Let a late run end before the next action, so its finish is not miscounted.
            with contextlib.suppress(Exception):
                await page.wait_for_function(DRAWN, polling=200, timeout=60_000)
            return False
        rec.latencies[kind].append(time.perf_counter() - t0)
        rec.interactions += 1
        budget[0] -= 1
        if await page.locator(ERRORS).count():
            text = (await page.locator(ERRORS).first.inner_text())[:200]
            rec.errors.append(f"session {i} {kind}: error element on the page: {text!r}")
        return True

    async def diagnose() -> str:
        """What the page shows when an interaction did not finish (for the error report)."""
        try:
            return json.dumps(await page.evaluate(DIAGNOSE) | {"runs_finished": runs.finished})
        except Exception as exc:  # noqa: BLE001
            return f"(page not readable: {type(exc).__name__})"

    async def step_slider(label: str) -> None:
        block = page.locator('[data-testid="stSlider"]').filter(has_text=label).first
        thumb = block.locator('input[type="range"]').first
        lo, hi = int(await thumb.get_attribute("min")), int(await thumb.get_attribute("max"))
        value = int(await thumb.get_attribute("value"))
        key = "ArrowLeft" if value == hi or (value > lo and rng.random() < 0.5) else "ArrowRight"
        await thumb.focus()
        await thumb.press(key)

    async def pick_source(name: str) -> None:
        await (
            page.locator('[data-testid="stRadio"]')
            .filter(has_text="Image")
            .first.get_by_text(name)
            .click()
        )

    async def upload() -> None:
        # Another file than the one shown: re-selecting the same file changes nothing, so the
        # browser sends no event and the app (rightly) does not rerun.
        shown[0] = rng.choice([f for f in images if f != shown[0]])
        inp = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        await inp.set_input_files(str(shown[0]))

    async def next_sample() -> None:
        box = page.locator('[data-testid="stNumberInput"]').filter(has_text="Validation image")
        await box.locator('[data-testid="stNumberInputStepUp"]').click()

    nav = page.locator('[data-testid="stSidebarNav"]')
    opened = await timed("open page", lambda: page.goto(f"{url}/Feature_maps?experiment={exp}"))
    while opened and time.perf_counter() < deadline and budget[0] > 0:
        kind = rng.choices(["epoch", "upload", "sample", "page"], weights=[5, 3, 2, 1])[0]
        if kind == "epoch":
            await timed("epoch switch", lambda: step_slider("Epoch"))
        elif kind == "upload":
            if source != "upload":
                source, shown[0] = "upload", None
                if not await timed("image source switch", lambda: pick_source("Upload a photo")):
                    continue
            await timed("upload", upload)
        elif kind == "sample":
            if source != "sample":
                source = "sample"
                if not await timed(
                    "image source switch", lambda: pick_source("Sample from the dataset")
                ):
                    continue
            await timed("next dataset image", next_sample)
        else:
            link = nav.get_by_text("Weight statistics", exact=True)
            if await timed("page switch", link.click):
                await timed("epoch range switch", lambda: step_slider("Epoch range"))
            await timed("page switch", nav.get_by_text("Feature maps", exact=True).click)
            source = "sample"  # widget state of a page is dropped when leaving it
    await ctx.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def drive(
    url: str, exp: str, images: list[Path], sessions: int, duration: float, max_interactions: int
) -> Record:
    from playwright.async_api import async_playwright

    rec = Record()
    budget = [max_interactions]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        deadline = time.perf_counter() + duration
        tasks = [
            session(i, browser, url, exp, images, deadline, budget, rec) for i in range(sessions)
        ]
        try:  # in-flight interactions may finish after the deadline, but not much later
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + STEP_TIMEOUT_S + 60)
        except TimeoutError:
            rec.errors.append("sessions did not stop in time (cancelled)")
        await browser.close()
    return rec


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (max 600)")
    ap.add_argument("--max-interactions", type=int, default=2000, help="stop after this many")
    ap.add_argument("--root", type=Path, help="experiments to serve (default: the demo ones)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    args.duration = min(max(args.duration, 5.0), 600.0)
    args.sessions = min(max(args.sessions, 1), 32)
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise SystemExit("needs Playwright's Python package (pip install playwright)") from None
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found (apt-get install -y chromium)")
    src, how = (args.root, "given") if args.root else demo_root(DEMO_DIRS)
    with tempfile.TemporaryDirectory(prefix="fxcore-load-") as tmp:
        root = Path(tmp) / "checkpoints"
        shutil.copytree(src, root, ignore=shutil.ignore_patterns(".fxcore-cache"))
        exp = face_experiment(root)
        images = upload_images(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "FXCORE_CHECKPOINTS": str(root)}
        cmd = server_command(port)
        with open(Path(tmp) / "server.log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            sampler = MemorySampler(proc.pid)
            try:
                wait_healthy(url, proc)
                sampler.start()
                t0 = time.perf_counter()
                rec = asyncio.run(
                    drive(url, exp, images, args.sessions, args.duration, args.max_interactions)
                )
                wall = time.perf_counter() - t0
            finally:
                sampler.stop.set()
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        server_log = (Path(tmp) / "server.log").read_text(errors="replace")
    mem = [m for _, m in sampler.samples if m == m]
    all_lat = [x for v in rec.latencies.values() for x in v]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "experiments": f"{src} ({how}); face experiment {exp}",
        "sessions": args.sessions,
        "duration_s": round(wall, 1),
        "interactions": rec.interactions,
        "errors": len(rec.errors),
        "error_details": rec.errors[:20],
        "server_log_tracebacks": server_log.count("Traceback"),
        "server_log_tail": server_log.splitlines()[-40:] if rec.errors else [],
        "latency_s": {
            kind: {
                "n": len(v),
                "p50": round(statistics.median(v), 2),
                "p95": round(percentile(v, 0.95), 2),
                "max": round(max(v), 2),
            }
            for kind, v in sorted(rec.latencies.items())
        },
        "latency_all_s": {
            "p50": round(percentile(all_lat, 0.5), 2),
            "p95": round(percentile(all_lat, 0.95), 2),
        },
        "server_rss_mb": {
            "start": round(mem[0], 0) if mem else None,
            "peak": round(max(mem), 0) if mem else None,
            "end": round(mem[-1], 0) if mem else None,
            "peak_first_half": round(max(mem[: len(mem) // 2] or [0]), 0),
            "peak_second_half": round(max(mem[len(mem) // 2 :] or [0]), 0),
        },
    }
    m = result["machine"]
    print(f"{result['date']}  {m['cores']} CPU cores ({m['cpu']}), {m['memory']} RAM, {m['os']}")
    print(
        f"{args.sessions} sessions for {wall:.0f} s: {rec.interactions} interactions, "
        f"{len(rec.errors)} errors, {result['server_log_tracebacks']} tracebacks in the "
        "server log"
    )
    print(f"{'interaction':22} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for kind, s in result["latency_s"].items():
        print(f"{kind:22} {s['n']:5d} {s['p50']:7.2f} {s['p95']:7.2f} {s['max']:7.2f}")
    a = result["latency_all_s"]
    print(f"{'all':22} {len(all_lat):5d} {a['p50']:7.2f} {a['p95']:7.2f}")
    r = result["server_rss_mb"]
    print(
        f"server RSS MB: start {r['start']}, peak {r['peak']} (first half {r['peak_first_half']}, "
        f"second half {r['peak_second_half']}), end {r['end']}"
    )
    for e in rec.errors[:20]:
        print("  error:", e)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

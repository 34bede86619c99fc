"""The real app in headless Chromium: every page renders, and an uploaded face reaches both models.

Needs Playwright's Python package and Debian's ``/usr/bin/chromium`` (never ``playwright install``);
skips otherwise. ``FXCORE_SCREENSHOTS=1`` saves one PNG per page under ``docs/screenshots/``;
``FXCORE_SCREENSHOT_ROOT=/path/to/checkpoints`` points the app at other experiments than the tiny
test fixture (e.g. the demo ones, for the documentation screenshots).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "docs" / "screenshots"
sys.path.insert(0, str(REPO / "benchmarks"))  # the server helpers the app benchmarks use too
from benchlib import ARGS, CHROMIUM, free_port, release, start_trainer, wait_healthy  # noqa: E402

PAGES = [
    ("Feature maps", "feature-maps"),
    ("Weight statistics", "weight-statistics"),
    ("Training dynamics", "training-dynamics"),
    ("Dataset", "dataset"),
]

pytestmark = pytest.mark.browser


def face_jpeg(path: Path) -> Path:
    """A synthetic face photo (not from any dataset) as a 256x256 JPEG."""
    from PIL import Image

    from fxcore.data.synthfaces import SynthFaces

    arr = SynthFaces("val", image_size=256, max_samples=4).render([3])[0].transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92)
    path.write_bytes(buf.getvalue())
    return path


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the script run is over (Streamlit shows a status widget while it runs)."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout)  # every page has a title
    page.wait_for_timeout(400)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout
    )
    page.wait_for_timeout(300)


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.inner_text("body")


def shot(page, name: str) -> None:
    if os.environ.get("FXCORE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        # The app scrolls inside its main pane, so grow the window to the content's height.
        height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
        page.wait_for_timeout(1500)  # let plotly redraw at the new size
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        page.set_viewport_size(size)
        page.wait_for_timeout(300)


def pick_experiments(root: Path) -> tuple[str, str | None]:
    """(a face experiment, an MNIST one or None) under ``root``."""
    from fxcore.store.runs import list_experiments

    exps = list_experiments(root)
    faces = [e.name for e in exps if e.info.get("dataset") not in ("mnist", "imported")]
    mnist = [e.name for e in exps if e.info.get("dataset") == "mnist"]
    assert faces, f"no face experiment under {root}"
    return faces[0], (mnist[0] if mnist else None)


@contextlib.contextmanager
def serve(root: Path, log_path: Path) -> Iterator[str]:
    """The app on a free port, reading experiments from ``root``; yields its URL."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python package) not installed")
    port = free_port()
    env = {**os.environ, "FXCORE_CHECKPOINTS": str(root)}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app/Home.py",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
    ]
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def server(tiny_root: Path, tmp_path: Path):
    root = Path(os.environ.get("FXCORE_SCREENSHOT_ROOT") or tiny_root)
    with serve(root, tmp_path / "streamlit.log") as url:
        yield url, root


@contextlib.contextmanager
def browser_page(width: int, height: int, timeout_ms: int) -> Iterator[Any]:
    """A page in Debian's Chromium; the browser is closed however the test ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


def test_every_page_and_an_upload(server, tmp_path: Path) -> None:
    url, root = server
    face_exp, mnist_exp = pick_experiments(root)
    photo = face_jpeg(tmp_path / "face.jpg")
    with browser_page(1500, 1100, 60_000) as page:
        page.goto(f"{url}/?experiment={face_exp}")
        settle(page)
        page.get_by_text("Training curves").first.wait_for()
        page.locator(".js-plotly-plot").first.wait_for()  # plotly.js loads lazily
        no_errors(page)
        shot(page, "home")

        nav = page.locator('[data-testid="stSidebarNav"]')
        for title, name in PAGES:  # sidebar navigation keeps the chosen experiment
            nav.get_by_text(title, exact=True).click()
            settle(page)
            page.get_by_role("heading", name=title.split()[0]).first.wait_for()
            picker = page.locator('[data-testid="stSidebar"] input[aria-label="Experiment"]')
            assert picker.input_value() == face_exp
            no_errors(page)
            if name == "feature-maps":
                upload_face(page, photo)
            elif name == "weight-statistics":  # another tensor: the maps follow
                tensor = page.locator('input[aria-label="Weight tensor"]')
                tensor.click()
                tensor.fill("classifier.0.weight")  # the list is long: filter it
                page.get_by_role("option").filter(has_text="classifier.0.weight").first.click()
                settle(page)
                page.get_by_text("L1 − L2 — variance").first.wait_for()
                assert "classifier.0.weight" in page.locator('[data-testid="stMain"]').inner_text()
            elif name == "training-dynamics":
                page.get_by_text("CKA(L1, L2)").first.wait_for()
                page.get_by_text("share of Grad-CAM mass").first.wait_for()
            page.locator(".js-plotly-plot").first.wait_for()
            shot(page, name)

        if mnist_exp:  # the MLP: 28x28 unit tiles on Weight statistics, a note on Feature maps
            picker = page.locator('[data-testid="stSidebar"] input[aria-label="Experiment"]')
            picker.click()
            page.get_by_role("option", name=mnist_exp).click()
            settle(page)
            nav.get_by_text("Weight statistics", exact=True).click()
            settle(page)
            page.get_by_text("First-layer units as 28×28 images").wait_for()
            assert picker.input_value() == mnist_exp
            no_errors(page)
            shot(page, "weight-statistics-mnist")
            nav.get_by_text("Feature maps", exact=True).click()
            settle(page)
            page.get_by_text("no convolutional layer").wait_for()
            no_errors(page)


def upload_face(page, photo: Path) -> None:
    page.get_by_text("Upload a photo").click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    page.get_by_text("evidence for", exact=False).first.wait_for()
    settle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    page.wait_for_timeout(500)
    cols = page.locator('[data-testid="stHorizontalBlock"]').filter(
        has=page.locator('[data-testid="stMetric"]')
    )
    columns = cols.last.locator(':scope > [data-testid="stColumn"]')
    assert columns.count() == 2
    for i in range(2):  # each model's column: prediction, heatmap images and a plotly chart
        col = columns.nth(i)
        assert col.locator('[data-testid="stMetric"]').count() == 1
        assert col.locator('[data-testid="stImage"] img').count() >= 3
        assert col.locator(".js-plotly-plot").count() == 1
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    no_errors(page)


EPOCHS = 20  # of a 480-image MNIST fixture: seconds on a fast machine, under a minute on a slow one


def test_home_follows_a_training_run(tmp_path: Path) -> None:
    """Home open while a tiny training runs: the saved epochs grow on the page, no reload."""
    from fixtures_data import make_mnist_fixture

    from fxcore.store.progress import read_progress

    root = tmp_path / "checkpoints"
    out = root / "live"
    data = make_mnist_fixture(tmp_path / "mnist", n_train=480, n_test=40)
    with serve(root, tmp_path / "streamlit.log") as url:
        trainer = start_trainer(data, out, EPOCHS, tmp_path / "train.log", hold_at=1)
        try:
            end = time.monotonic() + 300  # hang guard only (epoch 1 lands in seconds)
            while (p := read_progress(out)) is None or p.done < 1:
                assert trainer.poll() is None and time.monotonic() < end, "no epoch 1 saved"
                time.sleep(0.005)
            # Held after epoch 1 while the browser starts and Home loads.
            with browser_page(1400, 1000, 120_000) as page:
                page.goto(url)
                settle(page)
                main = page.locator('[data-testid="stMain"]')
                main.get_by_text("is training: epoch").wait_for()
                page.evaluate("window.__same_page = true")  # a reload would drop it
                saved = re.compile(r"epochs 0\.\.(\d+) saved")
                first = int(saved.search(main.inner_text()).group(1))
                release(trainer)
                page.wait_for_function(
                    "n => (/epochs 0\\.\\.(\\d+) saved/.exec(document.body.innerText)"
                    " || [0, -1])[1] > n",
                    arg=first,
                )
                assert trainer.wait(timeout=300) == 0
                main.get_by_text(f"finished: epochs 0..{EPOCHS} saved").wait_for()
                assert page.evaluate("window.__same_page") is True
                assert main.get_by_text("is training").count() == 0
                no_errors(page)
        finally:
            trainer.kill()
            trainer.wait()


CELEBA = REPO.parent / "shared" / "data" / "celeba-10k"
SHIPPED = REPO / "checkpoints" / "celeba-pair"


@pytest.fixture
def shipped_server(tiny_root: Path, tmp_path: Path):
    """The app on the shipped CelebA pair (beside the tiny fixture), else on the fixture alone."""
    import shutil

    root = tmp_path / "root"
    for exp in [p for p in tiny_root.iterdir() if p.is_dir()] + ([SHIPPED] * SHIPPED.is_dir()):
        shutil.copytree(exp, root / exp.name)  # the app refuses links that point outside its root
    with serve(root, tmp_path / "streamlit.log") as url:
        yield url, root


def real_photo(path: Path) -> Path:
    """A real face: a CelebA test-split image taken at run time, enlarged and tilted by 10 degrees
    inside a larger canvas so that it is not framed like CelebA (never committed)."""
    from PIL import Image

    from fxcore.data.registry import load_dataset

    if not (CELEBA / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA-10k not found at {CELEBA} (shared data absent)")
    test = load_dataset("celeba", split="test", root=CELEBA, max_samples=1)
    img = Image.open(CELEBA / "img_align_celeba" / test.files()[0]).convert("RGB")
    img = img.resize((267, 327), Image.BICUBIC).rotate(10, expand=True, fillcolor=(90, 90, 90))
    canvas = Image.new("RGB", (480, 420), (200, 200, 200))
    canvas.paste(img, (80, 30))
    canvas.save(path, "JPEG", quality=92)
    return path


def test_real_photo_is_aligned_and_reaches_both_models(shipped_server, tmp_path: Path) -> None:
    url, root = shipped_server
    face_exp = "celeba-pair" if (root / "celeba-pair").exists() else pick_experiments(root)[0]
    photo = real_photo(tmp_path / "real.jpg")
    with browser_page(1500, 1100, 90_000) as page:
        page.goto(f"{url}/?experiment={face_exp}")
        settle(page)
        page.get_by_text("Training curves").first.wait_for()
        picker = page.locator('[data-testid="stSidebar"] input[aria-label="Experiment"]')
        assert picker.input_value() == face_exp
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Feature maps").click()
        settle(page)
        upload_face(page, photo)
        page.get_by_text("aligned like CelebA from").first.wait_for()  # landmarks, eyes or box
        page.get_by_text("Alignment: detected face and landmarks").first.wait_for()
        page.get_by_text("Aligned to CelebA").first.wait_for()
        page.get_by_text("Grad-CAM share in this face's regions").first.wait_for()
        no_errors(page)
        shot(page, "feature-maps-aligned")

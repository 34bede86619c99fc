"""Home and Feature maps of an app served from the container, in Debian's Chromium.

Run by deploy/docker-check.sh with the project venv's Python:

    python deploy/browser_check.py http://127.0.0.1:PORT celeba-pair

Uploads matplotlib's bundled portrait (a real photo) on Feature maps and waits until both models
have answered. The page checks are the browser tests' own (tests/test_app_browser.py), so that the
container is held to what the suite checks on a local server; only the photo source is chosen
here, by role and exact label: without the dataset (CelebA is not in the image) the page also says
"Dataset samples unavailable: ... Upload a photo instead.", which a loose text match also finds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]

from test_app_browser import browser_page, no_errors, settle  # noqa: E402

UPLOAD = "Upload a photo"  # the option of the Feature maps page's "Image" radio


def choose_upload(page) -> None:
    """Select the "Upload a photo" source (the only one, and preselected, without the dataset)."""
    group = page.get_by_role("radiogroup", name="Image", exact=True)
    option = group.get_by_role("radio", name=UPLOAD, exact=True)
    option.wait_for(state="attached")  # the input itself is visually hidden
    if not option.is_checked():
        group.get_by_text(UPLOAD, exact=True).click()  # the option's visible label
        settle(page)
    assert option.is_checked(), f"{UPLOAD!r} not selected"


def upload_face(page, photo: Path) -> None:
    """tests/test_app_browser.upload_face after choose_upload: both models answer the photo."""
    choose_upload(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    page.get_by_text("evidence for", exact=False).first.wait_for()
    settle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    page.wait_for_timeout(500)
    cols = page.locator('[data-testid="stHorizontalBlock"]').filter(
        has=page.locator('[data-testid="stMetric"]')
    )
    columns = cols.last.locator(':scope > [data-testid="stColumn"]')
    assert columns.count() == 2, f"{columns.count()} model columns, expected 2"
    for i in range(2):  # each model's column: prediction, heatmap images and a plotly chart
        col = columns.nth(i)
        assert col.locator('[data-testid="stMetric"]').count() == 1
        assert col.locator('[data-testid="stImage"] img').count() >= 3
        assert col.locator(".js-plotly-plot").count() == 1
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    no_errors(page)


def portrait() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("experiment")
    args = parser.parse_args()
    photo = portrait()
    with browser_page(1500, 1100, 180_000) as page:
        t0 = time.monotonic()
        page.goto(f"{args.url}/?experiment={args.experiment}")
        settle(page, timeout=180_000)
        page.get_by_text("Training curves").first.wait_for()
        picker = page.locator('[data-testid="stSidebar"] input[aria-label="Experiment"]')
        assert picker.input_value() == args.experiment, picker.input_value()
        no_errors(page)
        print(f"browser: Home shows {args.experiment} ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Feature maps").click()
        settle(page, timeout=180_000)
        upload_face(page, photo)
        page.get_by_text("aligned like CelebA from").first.wait_for()
        no_errors(page)
        print(
            f"browser: Feature maps, {photo.name} uploaded, aligned, both models answered "
            f"({time.monotonic() - t0:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

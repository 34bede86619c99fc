"""Home and Feature maps of an app served from the container, in Debian's Chromium.

Run by deploy/docker-check.sh with the project venv's Python:

    python deploy/browser_check.py http://127.0.0.1:PORT celeba-pair

Uploads matplotlib's bundled portrait (a real photo) on Feature maps and waits until both models
have answered. The page steps are the browser tests' own (tests/test_app_browser.py), so that the
container is held to what the suite checks on a local server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]

from test_app_browser import browser_page, no_errors, settle, upload_face  # noqa: E402


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

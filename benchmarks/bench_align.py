"""Per-upload cost of the aligned upload path (target <= 0.05 s on the 2-core dev CPU).

Times :func:`fxcore.upload.faces.prepare_upload` with ``crop_face=True, align=True`` (decode, dlib's
face detector and five landmarks (the Haar face box and eyes only where dlib finds no face),
similarity, warp, training transform) on real faces: stand-in photos made from the
celeba-10k test split (256 px, benchmarks/make_standin.py's recipe) and the same photos enlarged
to 1,200 px. Reports the median of each photo's best-of-``--repeat`` wall time, and CPU time.

    python benchmarks/bench_align.py ../shared/data/celeba-10k --n 40
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
from benchlib import best_time, machine
from make_standin import SIDE, standin_matrix
from PIL import Image

from fxcore.data.registry import load_dataset
from fxcore.upload.align import FRAME
from fxcore.upload.faces import prepare_upload


def photos(root: Path, n: int, side: int) -> list[bytes]:
    import cv2

    ds = load_dataset("celeba", split="test", root=root, max_samples=n)
    rng = np.random.default_rng(1)
    out = []
    for name in ds.files():
        frame = np.asarray(Image.open(Path(ds._image_dir) / name).convert("RGB").resize(FRAME))
        m, _ = standin_matrix(rng)
        img = Image.fromarray(
            cv2.warpAffine(frame, m, (SIDE, SIDE), borderMode=cv2.BORDER_REFLECT_101)
        )
        buf = io.BytesIO()
        img.resize((side, side), Image.BICUBIC).save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    result = {"machine": machine()}
    for side in (SIDE, 1200):
        data = photos(args.root, args.n, side)
        walls, methods = [], {}
        cpu0 = time.process_time()
        for d in data:
            walls.append(
                best_time(
                    lambda d=d: prepare_upload(d, 64, True, crop_face=True, align=True), args.repeat
                )
            )
            m = prepare_upload(d, 64, True, crop_face=True, align=True).align_method or "none"
            methods[m] = methods.get(m, 0) + 1
        cpu = (time.process_time() - cpu0) / (len(data) * (args.repeat + 1))
        result[f"{side}px"] = {
            "median_wall_s": statistics.median(walls),
            "cpu_s": cpu,
            "framed": methods,
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

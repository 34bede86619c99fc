"""Measure the alignment templates of fxcore/upload/align.py on CelebA's aligned images.

Runs the upload path's own detectors (dlib's five landmarks; the Haar face box, then Haar eyes in
the box) over the first N aligned images of a CelebA folder, each brought to the official 178x218
frame, and prints the mean five points (LANDMARK_TEMPLATE), eye centres (EYE_TEMPLATE) and face box
(BOX_TEMPLATE) with their spread.

    python benchmarks/align_template.py ../shared/data/celeba-10k --n 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from fxcore.upload.align import FRAME, detect_eyes
from fxcore.upload.faces import detect_face
from fxcore.upload.landmarks import detect_landmarks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    files = sorted((args.root / "img_align_celeba").glob("*.jpg"))[: args.n]
    boxes, eyes, fives = [], [], []
    for f in files:
        img = Image.open(f).convert("RGB").resize(FRAME, Image.BICUBIC)
        five = detect_landmarks(np.asarray(img.convert("L")))
        if five is not None:
            fives.append(five[0])
        box = detect_face(img)
        if box is None:
            continue
        boxes.append(box)
        found = detect_eyes(np.asarray(img.convert("L")), box)
        if found is not None:
            eyes.append(found)
    b, e, v = np.array(boxes, float), np.array(eyes, float), np.array(fives, float)
    print(f"{len(files)} images: {len(v)} with dlib's five landmarks")
    print(
        "LANDMARK_TEMPLATE", np.round(v.mean(0), 1).tolist(), "sd", np.round(v.std(0), 1).tolist()
    )
    print(f"{len(files)} images: {len(b)} face boxes, {len(e)} with two eyes")
    print("BOX_TEMPLATE", np.round(b.mean(0), 1).tolist(), "sd", np.round(b.std(0), 1).tolist())
    print("EYE_TEMPLATE", np.round(e.mean(0), 1).tolist(), "sd", np.round(e.std(0), 1).tolist())
    y = e[:, :, 1].mean()
    print(f"symmetric: x {np.round(e[:, :, 0].mean(0), 1).tolist()}, y {y:.1f}")


if __name__ == "__main__":
    main()

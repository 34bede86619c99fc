"""Build the stand-in "unaligned real faces" set from the celeba-10k test split (not committed).

Each test image (CelebA aligned, 89x109 on disk) is brought to the official 178x218 frame and
re-photographed: a random similarity (scale 0.7-1.4, rotation +-15 degrees, shift +-15% of the
crop side) about the face centre, then a loose square crop of ``SIDE`` pixels in which the face at
scale 1 spans 1/1.3 of the side that CelebA's own training crop gives it. Pixels beyond the aligned
frame are mirrored (``BORDER_REFLECT_101``). Labels are the images' own rows of
``list_attr_celeba.txt``, so ``fxcore eval --images OUT/img_align_celeba`` finds them.

    python benchmarks/make_standin.py ../shared/data/celeba-10k /tmp/standin --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fxcore.data.celeba_files import ATTR_FILE, IMAGE_DIR
from fxcore.data.registry import load_dataset
from fxcore.upload.align import FRAME

SIDE = 256  # output photos are SIDE x SIDE
LOOSE = 1.3  # the crop is 1.3x wider than CelebA's training crop (the 178x178 centre square)
FACE_CENTRE = (89.0, 125.0)  # between the eyes and the mouth in the 178x218 frame


def standin_matrix(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """One random frame -> photo similarity and its parameters."""
    scale = rng.uniform(0.7, 1.4)
    angle = rng.uniform(-15.0, 15.0)
    dx, dy = rng.uniform(-0.15, 0.15, size=2) * SIDE
    k = scale * SIDE / (LOOSE * FRAME[0])
    m = cv2.getRotationMatrix2D(FACE_CENTRE, angle, k)  # rotate and scale about the face centre
    m[:, 2] += np.array([SIDE / 2 + dx, SIDE / 2 + dy]) - np.array(FACE_CENTRE)
    return m, {"scale": scale, "angle": angle, "dx": dx / SIDE, "dy": dy / SIDE}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="CelebA folder (official layout)")
    ap.add_argument("out", type=Path, help="output folder (gets img_align_celeba/ + labels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, help="only the first N test images")
    args = ap.parse_args()
    ds = load_dataset("celeba", split="test", root=args.root, max_samples=args.n)
    files = ds.files()
    rng = np.random.default_rng(args.seed)
    img_dir = args.out / IMAGE_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    src_dir = Path(ds._image_dir)
    for name in files:
        frame = np.asarray(Image.open(src_dir / name).convert("RGB").resize(FRAME, Image.BICUBIC))
        m, _ = standin_matrix(rng)
        photo = cv2.warpAffine(
            frame, m, (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        Image.fromarray(photo).save(img_dir / name, quality=95)
    keep = set(files)
    lines = (args.root / ATTR_FILE).read_text().splitlines()
    rows = [ln for ln in lines[2:] if ln.split(maxsplit=1)[0] in keep] if len(lines) > 2 else []
    (args.out / ATTR_FILE).write_text("\n".join([str(len(rows)), lines[1], *rows]) + "\n")
    print(f"wrote {len(files)} photos to {img_dir} and {args.out / ATTR_FILE}")


if __name__ == "__main__":
    main()

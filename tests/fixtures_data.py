"""Tiny on-disk fixtures in the official CelebA and MNIST layouts (real JPEGs, real IDX files).

Images carry their labels visibly (CelebA: mouth shape = Smiling, face shade = Male; MNIST: a bar
whose row is the digit), so a tiny model can learn them in a test.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CELEBA_ATTRIBUTES = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
]
# CelebA's mean aligned landmarks in the official 178x218 frame (see fxcore.data.celeba.MEAN_LANDMARKS).
_MEAN_LM = np.array([[69, 111], [108, 111], [88, 134], [72, 152], [105, 152]], dtype=np.float64)


def make_celeba_fixture(
    root: Path,
    n: int = 40,
    *,
    size: tuple[int, int] = (178, 218),
    landmarks: bool = True,
    all_train: bool = False,
    missing: int = 0,
    corrupt: int = 0,
    malformed: int = 0,
    nested: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``n`` aligned-face JPEGs and the official list files; return the root to pass on.

    ``all_train`` puts every row in partition 0 (as the 10k subset); otherwise the first 60% are
    train, the next 20% val and the rest test. ``missing`` deletes the last images (rows stay),
    ``corrupt`` truncates images 1..corrupt, ``malformed`` garbles the last rows of the attribute
    file, ``nested`` uses torchvision's ``root/celeba/`` layout. Landmarks refer to 178x218 as
    the official file does, whatever ``size`` the JPEGs have.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "celeba" if nested else Path(root)
    img_dir = base / "img_align_celeba"
    img_dir.mkdir(parents=True, exist_ok=True)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    attrs = rng.choice(np.array([-1, 1], np.int8), size=(n, 40))
    smile, male = CELEBA_ATTRIBUTES.index("Smiling"), CELEBA_ATTRIBUTES.index("Male")
    attrs[:, smile] = np.where(np.arange(n) % 2 == 0, 1, -1)  # both classes always present
    attrs[:, male] = np.where(np.arange(n) % 4 < 2, 1, -1)
    lms = np.rint(_MEAN_LM[None] + rng.normal(0, 2, size=(n, 5, 2))).astype(int)  # (n, 5, 2)
    sx, sy = size[0] / 178.0, size[1] / 218.0
    for f, a, lm in zip(files, attrs, lms):
        im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(40, 120, 3)))
        d = ImageDraw.Draw(im)
        shade = (120, 90, 70) if a[male] > 0 else (230, 190, 170)
        d.ellipse([30 * sx, 50 * sy, 148 * sx, 200 * sy], fill=shade)
        p = lm * np.array([sx, sy])
        for x, y in p[:2]:
            d.ellipse([x - 5 * sx, y - 3 * sy, x + 5 * sx, y + 3 * sy], fill=(20, 20, 20))
        d.line([p[2][0], p[2][1] - 12 * sy, p[2][0], p[2][1]], fill=(90, 60, 50), width=2)
        (lx, ly), (rx, ry) = p[3], p[4]
        if a[smile] > 0:  # open smile: a wide bright arc
            d.chord([lx, ly - 8 * sy, rx, ly + 10 * sy], 0, 180, fill=(250, 250, 250))
        else:
            d.line([lx, ly, rx, ry], fill=(120, 20, 20), width=max(1, round(2 * sy)))
        im.save(img_dir / f, quality=90)
    for f in files[1 : 1 + corrupt]:
        data = (img_dir / f).read_bytes()
        (img_dir / f).write_bytes(data[: len(data) // 2])
    for f in files[n - missing :] if missing else []:
        (img_dir / f).unlink()
    rows = [f + " " + " ".join(f"{v:2d}" for v in a) for f, a in zip(files, attrs)]
    bad_rows = [
        lambda f, vals: f"{f} " + " ".join(vals[:39]),  # 39 values
        lambda f, vals: f"{f} " + " ".join(["0"] + vals[1:]),  # value not in {-1, 1}
        lambda f, vals: f"{f} " + " ".join(["x"] + vals[1:]),  # not a number
    ]
    for k in range(malformed):
        i = n - 1 - k
        rows[i] = bad_rows[k % 3](files[i], [str(v) for v in attrs[i]])
    # Official quirks: CRLF endings, values padded to two characters (double spaces).
    attr_text = "\r\n".join([str(n), " ".join(CELEBA_ATTRIBUTES) + " ", *rows]) + "\r\n"
    (base / "list_attr_celeba.txt").write_bytes(attr_text.encode())
    part = [0 if all_train or i < 0.6 * n else (1 if i < 0.8 * n else 2) for i in range(n)]
    (base / "list_eval_partition.txt").write_bytes(
        "".join(f"{f} {p}\r\n" for f, p in zip(files, part)).encode()
    )
    if landmarks:
        head = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
        head += "rightmouth_x rightmouth_y"
        body = [f + " " + " ".join(f"{v:4d}" for v in lm.ravel()) for f, lm in zip(files, lms)]
        (base / "list_landmarks_align_celeba.txt").write_bytes(
            "\r\n".join([str(n), head, *body, ""]).encode()
        )
    return Path(root)


def _digit_images(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    imgs = rng.integers(0, 40, size=(len(digits), 28, 28), dtype=np.uint8)  # (N, 28, 28)
    for k, d in enumerate(digits):
        imgs[k, 3 + 2 * d : 5 + 2 * d, 4:24] = 255
    return imgs


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    """Write a uint8 array as an IDX file (magic 0x0000080N, big-endian dims)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    data = struct.pack(f">I{arr.ndim}I", 0x0800 + arr.ndim, *arr.shape) + arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def make_mnist_fixture(
    root: Path,
    n_train: int = 50,
    n_test: int = 20,
    gz: bool = True,
    *,
    torchvision_layout: bool = False,
    seed: int = 0,
) -> Path:
    """Write the four MNIST IDX files (digits cycle 0-9, shuffled); return the root to pass on."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "MNIST" / "raw" if torchvision_layout else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        digits = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", _digit_images(digits, rng), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", digits, gz)
    return Path(root)

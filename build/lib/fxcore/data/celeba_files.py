"""CelebA's list files in the official layout: attributes, partitions, landmarks; region boxes.

Parsing is tolerant: rows whose image is absent are skipped (so any subset of the aligned images
works), malformed rows are skipped and counted. The parsed table is cached while the files are
unchanged (size and mtime), so every split and the app share one parse.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fxcore.data.base import DataError, label_statistics

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
IMAGE_DIR = "img_align_celeba"
HOW_TO_GET = (
    "Expected ROOT/img_align_celeba/*.jpg, ROOT/list_attr_celeba.txt and "
    "ROOT/list_eval_partition.txt (optionally ROOT/list_landmarks_align_celeba.txt; "
    "ROOT/celeba/... also works). Get them from the official page "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html ('Align&Cropped Images' plus the 'Anno' "
    "and 'Eval' folders), or pass --download to let torchvision fetch them."
)
# One attribute row: file name then exactly 40 values of -1/1 (fast path; other rows parsed slowly).
_ROW = re.compile(r"(\S+)((?:[ \t]+-?1){40})[ \t]*")


@dataclass
class _Table:
    """Every well-formed row whose image is present, in file order."""

    image_dir: Path
    names: list[str]
    files: list[str]
    attrs: np.ndarray  # (M, 40) int8 in {-1, 1}
    partition: np.ndarray  # (M,) int8: 0 train, 1 val, 2 test
    landmarks: np.ndarray | None  # (M, 5, 2) float32 in the 178x218 frame, NaN where missing
    skipped_missing: int
    skipped_malformed: int
    missing_example: str


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()  # handles CRLF


def find_base(root: str | Path) -> Path:
    """The folder holding the CelebA list files: ``root`` or ``root/celeba``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"CelebA root {root} does not exist. {HOW_TO_GET}")
    bases = [root, root / "celeba"] + ([root.parent] if root.name == IMAGE_DIR else [])
    for base in bases:
        if (base / ATTR_FILE).is_file():
            for need in (PARTITION_FILE, IMAGE_DIR):
                if not (base / need).exists():
                    raise DataError(f"CelebA: {base / need} is missing. {HOW_TO_GET}")
            return base
    hint = (
        " (found Kaggle-style .csv files; use the official .txt files)"
        if list(root.glob("*.csv"))
        else ""
    )
    raise DataError(f"CelebA: {root / ATTR_FILE} not found{hint}. {HOW_TO_GET}")


def _parse_attrs(path: Path) -> tuple[list[str], list[str], np.ndarray, int]:
    lines = _lines(path)
    names = lines[1].split() if len(lines) > 1 else []
    if len(names) != 40:
        raise DataError(f"{path}: line 2 must list the 40 attribute names, found {len(names)}")
    files: list[str] = []
    rests: list[str] = []
    bad = 0
    for line in lines[2:]:
        m = _ROW.fullmatch(line)
        if m:
            files.append(m.group(1))
            rests.append(m.group(2))
        elif line.strip():
            parts = line.split()
            try:  # tolerate spellings such as "+1" or "01"
                vals = [int(v) for v in parts[1:]]
            except ValueError:
                vals = []
            if len(vals) == 40 and all(v in (-1, 1) for v in vals):
                files.append(parts[0])
                rests.append(" " + " ".join(map(str, vals)))
            else:
                bad += 1
    if not files:
        raise DataError(f"{path}: no well-formed rows ('NNNNNN.jpg' then 40 values of -1/1)")
    attrs = np.fromstring(" ".join(rests), dtype=np.int8, sep=" ").reshape(-1, 40)
    return names, files, attrs, bad


def _parse_keyed(path: Path, width: int, skip: int) -> tuple[dict[str, list[int]], int]:
    """``file v1 .. v_width`` rows as a dict; returns the count of malformed rows too."""
    out: dict[str, list[int]] = {}
    bad = 0
    for line in _lines(path)[skip:]:
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [int(v) for v in parts[1:]]
        except ValueError:
            vals = []
        if len(vals) == width:
            out[parts[0]] = vals
        else:
            bad += 1
    return out, bad


def _stamp(base: Path) -> tuple:
    paths = [base / f for f in (ATTR_FILE, PARTITION_FILE, LANDMARK_FILE, IMAGE_DIR)]
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in paths)


def read_table(root: str | Path) -> _Table:
    """Parse the list files under ``root`` (cached while the files are unchanged)."""
    base = find_base(root)
    return _read_table(base.resolve(), _stamp(base))


@lru_cache(maxsize=2)
def _read_table(base: Path, _stamp: tuple) -> _Table:
    names, files, attrs, bad = _parse_attrs(base / ATTR_FILE)
    part, bad_p = _parse_keyed(base / PARTITION_FILE, 1, 0)
    image_dir = base / IMAGE_DIR
    if (image_dir / IMAGE_DIR).is_dir():  # Kaggle's img_align_celeba/img_align_celeba/
        image_dir = image_dir / IMAGE_DIR
    present = set(os.listdir(image_dir))
    keep, missing = [], []
    for i, f in enumerate(files):
        if f not in present:
            missing.append(f)
        elif part.get(f, [-1])[0] in (0, 1, 2):
            keep.append(i)
        else:  # no (valid) partition row
            bad += 1
    if not keep:
        raise DataError(
            f"CelebA: none of the {len(files)} images listed in {base / ATTR_FILE} is in "
            f"{image_dir} (with a partition row). {HOW_TO_GET}"
        )
    kept = [files[i] for i in keep]
    landmarks = None
    if (base / LANDMARK_FILE).is_file():
        lm, bad_l = _parse_keyed(base / LANDMARK_FILE, 10, 2)
        bad += bad_l
        nan = [float("nan")] * 10
        landmarks = np.array([lm.get(f, nan) for f in kept], np.float32).reshape(-1, 5, 2)
    return _Table(
        image_dir=image_dir,
        names=names,
        files=kept,
        attrs=attrs[keep],
        partition=np.array([part[f][0] for f in kept], np.int8),
        landmarks=landmarks,
        skipped_missing=len(missing),
        skipped_malformed=bad + bad_p,
        missing_example=missing[0] if missing else "",
    )


def boxes_from_landmarks(lm: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """Region boxes (x0, y0, x1, y1) from (5, 2) landmarks, sized by the inter-ocular distance."""
    le, re_, nose, lmo, rmo = (np.asarray(p, np.float64) for p in lm)
    d = float(np.hypot(*(re_ - le))) or 1.0
    eye_y = (le[1] + re_[1]) / 2
    mouth_y = (lmo[1] + rmo[1]) / 2
    return {
        "eyes": (le[0] - 0.45 * d, eye_y - 0.3 * d, re_[0] + 0.45 * d, eye_y + 0.3 * d),
        "nose": (nose[0] - 0.3 * d, eye_y + 0.2 * d, nose[0] + 0.3 * d, nose[1] + 0.2 * d),
        "mouth": (lmo[0] - 0.2 * d, mouth_y - 0.25 * d, rmo[0] + 0.2 * d, mouth_y + 0.3 * d),
    }


def box_mask(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """(size, size) bool mask of the pixels whose centre lies inside ``box``."""
    c = np.arange(size) + 0.5
    cols = (c >= box[0]) & (c < box[2])
    rows = (c >= box[1]) & (c < box[3])
    return rows[:, None] & cols[None, :]


def attribute_statistics(root: str | Path) -> dict[str, object]:
    """Positive rate of all 40 attributes and their co-occurrence over every present row.

    ``cooccurrence[a, b] = P(a=1, b=1)``; ``conditional[a, b] = P(b=1 | a=1)`` (NaN if a is
    never 1). This is the seed paper's Fig. 2.1.
    """
    t = read_table(root)
    return {"names": list(t.names), **label_statistics(t.attrs)}

"""Where ``fxcore eval`` keeps its results: ``EXPERIMENT/evaluations/<set>-<framing>.json``.

One JSON file per evaluated image set and framing holds its latest evaluation (metrics per run and
epoch, see :mod:`fxcore.compare.evaluate`). This module reads and writes them without importing torch, so
the app's Home page can list them on a cold start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fxcore.store.checkpoints import atomic_write_json

EVAL_DIR = "evaluations"


def evaluation_path(experiment_dir: Path, set_name: str, framing: str) -> Path:
    """The file that holds the latest evaluation of ``set_name`` with ``framing``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{set_name}-{framing}")
    return Path(experiment_dir) / EVAL_DIR / f"{slug}.json"


def save_evaluation(experiment_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (with ``set`` and ``framing`` keys) atomically; returns its path."""
    path = evaluation_path(experiment_dir, record["set"], record["framing"])
    path.parent.mkdir(exist_ok=True)
    atomic_write_json(path, record)
    return path


def stored_evaluations(experiment_dir: Path) -> list[dict[str, Any]]:
    """Every stored evaluation of the experiment, newest first (unreadable files are skipped)."""
    out = []
    for path in sorted((Path(experiment_dir) / EVAL_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("runs"), dict):
            out.append(record)
    return sorted(out, key=lambda r: str(r.get("time", "")), reverse=True)

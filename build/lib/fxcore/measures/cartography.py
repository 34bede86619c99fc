"""Which images each task finds easy, ambiguous or hard over training (dataset cartography).

Swayamdipta et al. 2020: per image, a model's probability of the true label at each stored epoch;
its **confidence** is the mean over epochs, its **variability** the standard deviation, its
**correctness** the share of epochs it was right. Epoch 0 (the shared init) is left out by default:
it says nothing about the task. Regions, as in the paper's map: the third of images with the highest
variability are *ambiguous*; of the rest, confidence >= 0.5 is *easy to learn*, below it *hard to
learn*. Both tasks are measured on the same probe images, so :func:`disagreements` lists the images
one task finds easy and the other hard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fxcore.core.errors import CheckpointError, SimilarityError
from fxcore.store.cache import cached
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run, common_epochs
from fxcore.store.select import pick_control, pick_runs

AMBIGUOUS_SHARE = 1 / 3  # the most variable third of the images


@torch.no_grad()
def true_label_probability(
    model: torch.nn.Module, x: torch.Tensor, y: np.ndarray, batch: int = 64
) -> np.ndarray:
    """Per image, the model's probability of its true label ``y`` (sigmoid or softmax), (N,)."""
    model.eval()
    out = torch.cat([model(x[s : s + batch]) for s in range(0, len(x), batch)])
    out = out[:, None] if out.dim() == 1 else out
    y = np.asarray(y)
    if out.shape[1] == 1:
        p = torch.sigmoid(out[:, 0]).double().numpy()
        return np.where(y > 0, p, 1.0 - p)
    probs = torch.softmax(out.double(), 1).numpy()
    return probs[np.arange(len(y)), y.astype(np.int64)]


def regions(
    confidence: np.ndarray, variability: np.ndarray, ambiguous_share: float = AMBIGUOUS_SHARE
) -> list[str]:
    """``"ambiguous"`` for the most variable ``ambiguous_share`` of images, else ``"easy"``
    (confidence >= 0.5) or ``"hard"``."""
    c, v = np.asarray(confidence, float), np.asarray(variability, float)
    if c.shape != v.shape or c.ndim != 1:
        raise SimilarityError(f"confidence and variability must be (N,); got {c.shape}, {v.shape}")
    n_amb = int(round(ambiguous_share * len(v)))
    ambiguous = np.zeros(len(v), bool)
    if n_amb:
        ambiguous[np.argsort(-v, kind="stable")[:n_amb]] = True
    return ["ambiguous" if a else ("easy" if ci >= 0.5 else "hard") for a, ci in zip(ambiguous, c)]


def cartography_stats(prob: np.ndarray, ambiguous_share: float = AMBIGUOUS_SHARE) -> dict:
    """Confidence, variability, correctness and region per image from ``prob`` (epochs, N)."""
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise SimilarityError(f"probabilities must be (epochs, images); got {p.shape}")
    conf, var = p.mean(0), p.std(0)
    return {
        "confidence": conf.tolist(),
        "variability": var.tolist(),
        "correctness": (p > 0.5).mean(0).tolist(),
        "region": regions(conf, var, ambiguous_share),
    }


def disagreements(a: dict[str, Any], b: dict[str, Any], top: int = 10) -> dict[str, list[int]]:
    """Images easy for one task and hard for the other, largest confidence gap first."""
    ca, cb = np.asarray(a["confidence"]), np.asarray(b["confidence"])
    ra, rb = np.asarray(a["region"]), np.asarray(b["region"])

    def pick(mask: np.ndarray, gap: np.ndarray) -> list[int]:
        idx = np.flatnonzero(mask)
        return idx[np.argsort(-gap[idx], kind="stable")][:top].tolist()

    return {
        "easy_a_hard_b": pick((ra == "easy") & (rb == "hard"), ca - cb),
        "easy_b_hard_a": pick((rb == "easy") & (ra == "hard"), cb - ca),
    }


@dataclass
class CartographyMap:
    """Per run: ``prob`` (epochs x images) and :func:`cartography_stats`; ``disagree`` compares
    the first two runs (a = runs[0])."""

    experiment: str
    runs: list[str]
    attributes: dict[str, str]  # run -> the attribute its probabilities are of
    epochs: list[int]
    n_probe: int
    prob: dict[str, list[list[float]]]
    stats: dict[str, dict[str, Any]]
    disagree: dict[str, list[int]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CartographyMap:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def counts(self, run: str) -> dict[str, int]:
        r = self.stats[run]["region"]
        return {name: r.count(name) for name in ("easy", "ambiguous", "hard")}


def cartography(
    exp: Experiment,
    runs: Sequence[Run] | None = None,
    epochs: Sequence[int] | None = None,
    n_probe: int = 256,
    ambiguous_share: float = AMBIGUOUS_SHARE,
    top: int = 10,
) -> CartographyMap:
    """Data maps of ``runs`` (default: L1, L2 and L1's control) on the probe images over
    ``epochs`` (default: every common epoch after the init); disk-cached."""
    if runs is None:
        runs = pick_runs(exp)
        control = pick_control(exp, runs[0])
        runs = [*runs, *([control] if control is not None else [])]
    runs = list(runs)
    eps = list(epochs) if epochs is not None else [e for e in common_epochs(runs) if e > 0]
    if not eps:
        raise CheckpointError(f"no trained epoch common to {', '.join(r.name for r in runs)}")
    params = {
        "runs": [r.name for r in runs],
        "n_probe": n_probe,
        "ambiguous_share": ambiguous_share,
        "top": top,
    }

    def compute() -> dict[str, Any]:
        data = probe_data(exp, n_probe)
        names = [a.lower() for a in data.attributes]
        prob: dict[str, list[list[float]]] = {}
        stats: dict[str, dict[str, Any]] = {}
        for run in runs:
            col = names.index(run.attribute.lower()) if run.attribute.lower() in names else 0
            y = data.labels[:, col]
            p = np.stack([true_label_probability(run.build_model(e), data.x, y) for e in eps])
            prob[run.name] = p.tolist()
            stats[run.name] = cartography_stats(p, ambiguous_share)
        pair = disagreements(stats[runs[0].name], stats[runs[1].name], top) if len(runs) > 1 else {}
        return CartographyMap(
            exp.name,
            [r.name for r in runs],
            {r.name: r.attribute for r in runs},
            eps,
            int(len(data.x)),
            prob,
            stats,
            pair,
        ).to_json()

    return CartographyMap.from_json(cached(exp, "cartography", runs, eps, params, compute))

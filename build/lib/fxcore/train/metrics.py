"""Losses and validation metrics of the lockstep trainer (BCE on one logit; the seed's MSE)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fxcore.data.base import FxDataset, uint8_to_input
from fxcore.train.batches import Dist, iterate_batches, plan_batches


def task_loss(loss: str, num_classes: int) -> str:
    """Resolve ``auto``: BCE for binary attributes, MSE on one-hot targets for multi-class."""
    if loss != "auto":
        return loss
    return "bce" if num_classes == 2 else "mse"


def compute_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """``out`` (B, O) logits; ``y`` (B,) 0/1 for binary or class indices for multi-class."""
    if out.shape[1] == 1:
        if loss == "mse":
            return F.mse_loss(torch.sigmoid(out[:, 0]), y)
        return F.binary_cross_entropy_with_logits(out[:, 0], y)
    target = y.long()
    if loss == "ce":
        return F.cross_entropy(out, target)
    # Seed paper: softmax outputs against one-hot targets with mean squared error.
    return F.mse_loss(torch.softmax(out, 1), F.one_hot(target, out.shape[1]).to(out.dtype))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary ROC-AUC by the rank-sum formula (ties get average ranks); NaN if one class only."""
    pos, n = labels > 0.5, len(labels)
    n_pos, n_neg = int(pos.sum()), n - int(pos.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(n, dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < n:  # average ranks of tied scores
        j = i
        while j + 1 < n and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@torch.no_grad()
def evaluate(
    models: list[nn.Module],
    ds: FxDataset,
    device: torch.device,
    losses: list[str],
    amp: str = "none",
    cache_gb: float = 4.0,
    columns: list[int] | None = None,
) -> list[dict[str, float]]:
    """Validation loss, accuracy and ROC-AUC (binary) of each model on ``ds``.

    Model k is scored on label column ``columns[k]`` (default k: one model per attribute).
    """
    cols = list(range(len(models))) if columns is None else columns
    for m in models:
        m.eval()
    order = torch.arange(len(ds))
    batches = [b for b, _ in plan_batches(order, 256, Dist())]
    outs: list[list[torch.Tensor]] = [[] for _ in models]
    ys = []
    for xb, yb in iterate_batches(ds, batches, cache_gb, workers=0):
        x = uint8_to_input(xb.to(device), ds.normalize)
        ys.append(yb)
        for k, m in enumerate(models):
            with autocast(amp, device):
                outs[k].append(m(x).float().cpu())
    y = torch.cat(ys) if ys else torch.zeros(0, max(cols, default=0) + 1)
    results = []
    for k, _m in enumerate(models):
        out = torch.cat(outs[k]) if outs[k] else torch.zeros(0, 1)
        yk = y[:, cols[k]]
        row: dict[str, float] = {"val_loss": float(compute_loss(out, yk, losses[k]))}
        if out.shape[1] == 1:
            row["val_accuracy"] = float(((out[:, 0] > 0).float() == yk).float().mean())
            row["val_auc"] = roc_auc(out[:, 0].numpy(), yk.numpy())
        else:
            row["val_accuracy"] = float((out.argmax(1) == yk.long()).float().mean())
        results.append(row)
    return results


def autocast(amp: str, device: torch.device):
    """bf16 autocast on CUDA when asked; a no-op context elsewhere."""
    enabled = amp == "bf16" and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)

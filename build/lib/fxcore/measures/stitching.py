"""Is the difference functional? Model stitching (Lenc & Vedaldi 2015; Bansal et al. 2021).

For a block boundary *k* (after the k-th max-pool of ``features``): model A's layers up to it, a
1x1 convolution (the stitch), then model B's remaining layers, pooling and classifier. Everything
but the stitch is frozen (and in eval mode, so BatchNorm keeps B's statistics); the stitch starts
from the least-squares map of A's activations onto B's at the boundary (the identity when A is B)
and is trained briefly on B's task. The **stitching penalty** is B's accuracy alone minus the
stitched model's, per probe image, so its interval is a paired bootstrap
(:func:`fxcore.measures.uncertainty.mean_ci`). A pair whose penalty exceeds the control's (the control
stitched into L1) differs functionally, not only geometrically.

Works for any model with a ``features`` ``nn.Sequential`` followed by ``avgpool`` and
``classifier`` (vgg-mini, torchvision VGGs); boundaries are found by module type, not by name.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fxcore.core.errors import ModelError
from fxcore.measures.uncertainty import LEVEL, mean_ci
from fxcore.store.cache import cached
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run, shared_epochs
from fxcore.store.select import pick_control


def _parts(model: nn.Module) -> tuple[nn.Sequential, nn.Module, nn.Module]:
    features = getattr(model, "features", None)
    pool, head = getattr(model, "avgpool", None), getattr(model, "classifier", None)
    if not isinstance(features, nn.Sequential) or pool is None or head is None:
        raise ModelError(
            f"{type(model).__name__} has no features (nn.Sequential) + avgpool + classifier; "
            "stitching needs a VGG-like model"
        )
    return features, pool, head


def block_boundaries(model: nn.Module) -> list[int]:
    """Indices into ``model.features`` of each block's closing max-pool, the last one left out
    (nothing convolutional follows it)."""
    features, _, _ = _parts(model)
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    return pools[:-1]


def _channels_at(model: nn.Module, index: int) -> int:
    features, _, _ = _parts(model)
    for m in reversed(list(features[: index + 1])):
        if isinstance(m, nn.Conv2d):
            return int(m.out_channels)
    raise ModelError(f"no convolution before features.{index}")


class Stitched(nn.Module):
    """A's ``features[:index+1]`` -> 1x1 conv -> B's ``features[index+1:]``, pool, classifier."""

    def __init__(self, model_a: nn.Module, model_b: nn.Module, index: int) -> None:
        super().__init__()
        fa, _, _ = _parts(model_a)
        fb, pool, head = _parts(model_b)
        self.front = copy.deepcopy(fa[: index + 1])
        self.back = copy.deepcopy(fb[index + 1 :])
        self.pool, self.head = copy.deepcopy(pool), copy.deepcopy(head)
        c_a, c_b = _channels_at(model_a, index), _channels_at(model_b, index)
        self.stitch = nn.Conv2d(c_a, c_b, 1)
        with torch.no_grad():
            self.stitch.weight.zero_()
            self.stitch.weight[:, :, 0, 0] = torch.eye(c_b, c_a)
            self.stitch.bias.zero_()
        for part in (self.front, self.back, self.pool, self.head):
            part.requires_grad_(False)
        self.eval()

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        """The logits from front activations ``h`` (B, C_a, h, w)."""
        z = self.pool(self.back(self.stitch(h)))
        return self.head(torch.flatten(z, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.front(x))


@torch.no_grad()
def _front(module: nn.Module, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([module(x[s : s + batch]) for s in range(0, len(x), batch)])


@torch.no_grad()
def fit_least_squares(
    stitched: Stitched, model_b: nn.Module, x: torch.Tensor, max_rows: int = 200_000
) -> None:
    """Set the stitch to the least-squares map (with bias) of A's boundary activations onto B's."""
    fb, _, _ = _parts(model_b)
    model_b.eval()
    ha = _front(stitched.front, x)  # (N, C_a, h, w)
    hb = _front(fb[: len(stitched.front)], x)
    a = ha.permute(0, 2, 3, 1).reshape(-1, ha.shape[1]).double()
    b = hb.permute(0, 2, 3, 1).reshape(-1, hb.shape[1]).double()
    if len(a) > max_rows:  # positions are highly redundant: a seeded subsample fits as well
        keep = torch.randperm(len(a), generator=torch.Generator().manual_seed(0))[:max_rows]
        a, b = a[keep], b[keep]
    design = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    sol = torch.linalg.lstsq(design, b, driver="gelsd").solution  # (C_a + 1, C_b)
    stitched.stitch.weight.copy_(sol[:-1].T[:, :, None, None].float())
    stitched.stitch.bias.copy_(sol[-1].float())


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    return nn.functional.cross_entropy(logits, y.long())


def train_stitch(
    stitched: Stitched,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 60,
    lr: float = 1e-3,
    batch: int = 32,
    seed: int = 0,
) -> list[float]:
    """Adam on the stitch only, ``steps`` minibatches of B's task; the rest stays in eval mode."""
    if steps <= 0:
        return []
    h = _front(stitched.front, x)  # the frozen front runs once
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(stitched.stitch.parameters(), lr=lr)
    stitched.eval()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(h), (min(batch, len(h)),), generator=gen)
        loss = _loss(stitched.tail(h[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def correct(model: nn.Module, x: torch.Tensor, y: np.ndarray, batch: int = 64) -> np.ndarray:
    """Per image 1.0 where ``model`` predicts the label ``y`` (one logit: > 0; else argmax)."""
    model.eval()
    out = torch.cat([model(x[s : s + batch]) for s in range(0, len(x), batch)])
    out = out[:, None] if out.dim() == 1 else out
    pred = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(1)
    return (pred.numpy() == np.asarray(y).astype(np.int64)).astype(np.float64)


def stitching_penalty(
    model_a: nn.Module,
    model_b: nn.Module,
    index: int,
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_test: torch.Tensor,
    y_test: np.ndarray,
    steps: int = 60,
    init: str = "lstsq",
    n_resamples: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """B's accuracy minus A->B stitched at ``features[index]``, on ``x_test``, with its CI.

    ``init``: ``"lstsq"`` (least squares at the boundary, on ``x_train``) or ``"identity"``.
    """
    if init not in ("lstsq", "identity"):
        raise ModelError(f"stitch init must be 'lstsq' or 'identity', not {init!r}")
    stitched = Stitched(model_a, model_b, index)
    if init == "lstsq":
        fit_least_squares(stitched, model_b, x_train)
    losses = train_stitch(stitched, x_train, torch.as_tensor(y_train), steps, seed=seed)
    own, joined = correct(model_b, x_test, y_test), correct(stitched, x_test, y_test)
    est = mean_ci(own - joined, n_resamples, seed)
    return {
        "penalty": [est.value, est.low, est.high],
        "accuracy_b": float(own.mean()),
        "accuracy_stitched": float(joined.mean()),
        "final_loss": losses[-1] if losses else None,
    }


@dataclass
class StitchMap:
    """Per boundary and epoch: ``pair`` (L1 -> L2, L2's task) and ``control`` (control -> L1,
    L1's task), each ``{"penalty": [value, low, high], "accuracy_b", ...}``."""

    experiment: str
    runs: list[str]
    control_run: str | None
    epochs: list[int]
    boundaries: list[str]  # "features.N": the max-pool each stitch follows
    pair: dict[str, list[dict[str, Any]]]
    control: dict[str, list[dict[str, Any]]]
    steps: int
    n_probe: int
    n_train: int
    level: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StitchMap:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _labels(ds_attributes: Sequence[str], labels: np.ndarray, run: Run) -> np.ndarray:
    names = [a.lower() for a in ds_attributes]
    col = names.index(run.attribute.lower()) if run.attribute.lower() in names else 0
    return np.asarray(labels)[:, col]


def stitching(
    exp: Experiment,
    runs: Sequence[Run],
    control: Run | None = None,
    epochs: Sequence[int] | None = None,
    n_probe: int = 256,
    n_train: int = 512,
    steps: int = 60,
    n_resamples: int = 200,
    seed: int = 0,
) -> StitchMap:
    """Stitching penalties at every block boundary for the pair and the control; disk-cached."""
    from fxcore.data.base import uint8_to_input
    from fxcore.data.inputs import load_split

    a, b = runs[0], runs[1]
    c = control if control is not None else pick_control(exp, a)
    involved = [a, b] + ([c] if c is not None else [])
    eps = shared_epochs(involved, epochs if epochs is not None else shared_epochs(involved)[-1:])
    params = {
        "runs": [r.name for r in involved],
        "n_probe": n_probe,
        "n_train": n_train,
        "steps": steps,
        "n_resamples": n_resamples,
        "seed": seed,
    }

    def compute() -> dict[str, Any]:
        test = probe_data(exp, n_probe)
        ds = load_split(exp.info, "train", max_samples=n_train)
        x_train = uint8_to_input(ds.images_uint8()[:n_train], ds.normalize)
        train_labels = np.asarray(ds.labels())[: len(x_train)]
        pair: dict[str, list[dict[str, Any]]] = {}
        ctrl: dict[str, list[dict[str, Any]]] = {}
        names: list[str] = []
        for e in eps:
            models = {r.name: r.build_model(e) for r in involved}
            cuts = block_boundaries(models[a.name])
            names = [f"features.{i}" for i in cuts]
            jobs = [(pair, a, b)] + ([(ctrl, c, a)] if c is not None else [])
            for target, src, dst in jobs:
                y_tr = _labels(ds.attributes, train_labels, dst)
                y_te = _labels(test.attributes, test.labels, dst)
                for name, i in zip(names, cuts):
                    res = stitching_penalty(
                        models[src.name],
                        models[dst.name],
                        i,
                        x_train,
                        y_tr,
                        test.x,
                        y_te,
                        steps,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                    target.setdefault(name, []).append(res)
        return StitchMap(
            exp.name,
            [a.name, b.name],
            c.name if c else None,
            eps,
            names,
            pair,
            ctrl,
            steps,
            int(len(test.x)),
            int(len(x_train)),
            LEVEL,
        ).to_json()

    return StitchMap.from_json(cached(exp, "stitching", involved, eps, params, compute))

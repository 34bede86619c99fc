"""Batch plans shared by the lockstep trainer and torchrun ranks, and the two ways to feed them.

Epoch ``e``'s global order is ``torch.randperm(N)`` from a generator seeded with ``seed + e`` (what
``DistributedSampler(seed=seed).set_epoch(e)`` draws). Small datasets are decoded once into a uint8
tensor and indexed; large ones stream through a DataLoader with workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fxcore.data.base import FxDataset


@dataclass
class Dist:
    """torchrun environment (world 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def main(self) -> bool:
        return self.rank == 0


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Global data order of one epoch (DistributedSampler's draw for shuffle=True)."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g)


def plan_batches(order: torch.Tensor, batch: int, dist: Dist) -> list[tuple[torch.Tensor, int]]:
    """This rank's index batches with the global batch size: rank r takes every world-th item of
    each global batch (a final global batch smaller than the world is dropped so no rank idles)."""
    out = []
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        if len(chunk) < dist.world:
            break
        out.append((chunk[dist.rank :: dist.world], len(chunk)))
    return out


class _Stream(torch.utils.data.Dataset):
    """Items as uint8 images for the DataLoader path (normalisation happens on the device)."""

    def __init__(self, ds: FxDataset) -> None:
        self.ds, self.labels = ds, torch.from_numpy(ds.labels())

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ds.get_uint8(i), self.labels[i]


def iterate_batches(
    ds: FxDataset,
    batches: list[torch.Tensor],
    cache_gb: float = 4.0,
    workers: int = 2,
    pin: bool = False,
):
    """Yield (uint8 images (B,C,S,S), labels (B,K)) for the given index batches, decoding once."""
    if ds.nbytes_uint8() <= cache_gb * 2**30:
        images, labels = ds.images_uint8(), torch.from_numpy(ds.labels())
        for idx in batches:
            yield images[idx], labels[idx]
        return
    dl = torch.utils.data.DataLoader(
        _Stream(ds),
        batch_sampler=[b.tolist() for b in batches],
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
    )
    yield from dl

"""Hand-built models whose decision provably depends on one image region only (test oracles).

A :class:`RegionModel` is vgg-mini with the input multiplied by a fixed region mask, every 3x3
kernel reduced to its (non-negative) centre tap, zero biases and identity BatchNorm: each layer is
pointwise up to its max-pools, so every activation outside the region is exactly 0 at every depth
and the input gradient outside it is exactly 0. Non-negative weights make the logit a growing
function of the region's pixels, so every attribution source has evidence to show, and where it
may put it is known exactly on any CPU: nothing here depends on training or on float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from fxcore.models.nets import VGGMini

SIZE = 64  # input side; the deepest block is 4x4, one cell per 16 px
CELL = 16


class RegionModel(nn.Module):
    def __init__(self, mask: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        net = VGGMini(num_outputs=1)
        self.features, self.avgpool, self.classifier = net.features, net.avgpool, net.classifier
        self.register_buffer("mask", mask.float()[None, None])
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    centre = m.weight[:, :, 1, 1].abs()
                    m.weight.zero_()
                    m.weight[:, :, 1, 1] = centre
                    m.bias.zero_()
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0)
                elif isinstance(m, nn.Linear):
                    m.weight.abs_()
                    m.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x * self.mask)
        return self.classifier(torch.flatten(self.avgpool(h), 1))


def box(rows: tuple[int, int], cols: tuple[int, int], size: int = SIZE) -> torch.Tensor:
    """A boolean (size, size) mask, True on rows[0]:rows[1], cols[0]:cols[1]."""
    m = torch.zeros(size, size, dtype=torch.bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


def grow(mask: torch.Tensor, by: int) -> torch.Tensor:
    """``mask`` dilated by ``by`` pixels (a square structuring element)."""
    m = mask.float()[None, None]
    return nn.functional.max_pool2d(m, 2 * by + 1, stride=1, padding=by)[0, 0] > 0


# Two disjoint regions on the deepest block's 16-px grid: a "mouth" box and a "cues" band.
MOUTH = box((32, 48), (16, 48))
CUES = box((0, 16), (0, 64))


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Non-negative seeded test images (N, 3, SIZE, SIZE)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIZE, SIZE, generator=g)

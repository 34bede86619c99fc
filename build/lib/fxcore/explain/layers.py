"""Which layers of a model an analysis looks at (torch imported by the functions, not here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def cam_layer(model: nn.Module, image_size: int, min_side: int = 16) -> str:
    """Deepest conv layer whose maps are still at least ``min_side`` pixels wide.

    Mouth and eye boxes cover 1-2% of a face crop; Grad-CAM at a 2x2-8x8 layer smears them into
    their neighbours, so region shares use the last conv at >= 16x16 (VGG-19 at 224 px: the last
    conv of block 4, 28x28; vgg-mini at 64 px: block 3, 16x16).
    """
    from torch import nn

    from fxcore.explain.activations import last_conv_layer

    side, best = image_size, None
    for name, module in model.named_modules():
        if isinstance(module, nn.MaxPool2d):
            side //= 2
        elif isinstance(module, nn.Conv2d) and side >= min_side:
            best = name
    return best or last_conv_layer(model)


def layer_names(model: nn.Module) -> list[str]:
    """Conv and linear layers, named like their weights (``features.0`` <-> ``features.0.weight``)."""
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]

"""Model zoo: torchvision VGGs with a per-attribute head, a CPU-sized VGG, and the seed's 3-layer MLP.

Layer names follow torchvision (``features.N``, ``classifier.N``) so a checkpoint from a stock VGG and
one from fxcore name the same tensors, and the app's layer picker shows familiar names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fxcore.core.errors import ModelError  # noqa: F401 - re-exported
from fxcore.data.registry import MODEL_NAMES, VGG_NAMES  # noqa: F401 - re-exported

# torchvision's VGG configurations (numbers = conv widths, "M" = 2x2 max-pool).
_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    + [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGGMini(nn.Module):
    """VGG-19's block structure (16 convs, 5 pools, 3 linear layers) at 1/8 width, with BatchNorm.

    BatchNorm lets this small net train from scratch with Adam 1e-3 in a few CPU epochs; the
    attribute names (``features``, ``avgpool``, ``classifier``) and indices of the linear layers
    (``classifier.0/3/6``) match torchvision's VGG.
    """

    def __init__(self, num_outputs: int = 1, width: int = 8, hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _CFGS["vgg19"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c_out = max(4, int(v) * width // 64)
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(True),
                ]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))  # 64 px input -> 2x2 after 5 pools
        self.classifier = nn.Sequential(
            nn.Linear(c_in * 4, hidden),
            nn.ReLU(True),
            nn.Dropout(0.3),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(0.3),
            nn.Linear(hidden, num_outputs),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, num_outputs)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class FCNN3(nn.Module):
    """The seed paper's 3-layer fully connected net for MNIST: 784 -> 128 -> 64 -> 10."""

    def __init__(
        self, num_outputs: int = 10, in_features: int = 784, hidden: tuple[int, int] = (128, 64)
    ):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, num_outputs)
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _torchvision_vgg(
    name: str, num_outputs: int, pretrained: bool, weights: str | None
) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    if weights:
        load_weights_file(model, weights)
    elif pretrained:
        enum = getattr(torchvision.models, f"VGG{name[3:]}_Weights").IMAGENET1K_V1
        try:
            state = enum.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # offline, proxy, corrupt cache ...
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            raise ModelError(
                f"could not get ImageNet weights for {name} ({type(exc).__name__}: {exc}). "
                f"Either connect to the internet once (they are cached in {cache}), put the file "
                f"{Path(enum.url).name} there, or pass --weights FILE.safetensors with a state dict."
            ) from exc
        model.load_state_dict(state)
    # One logit per binary attribute (or N for multi-class): replace the 1000-class ImageNet head.
    model.classifier[6] = nn.Linear(model.classifier[6].in_features, num_outputs)
    return model


def load_weights_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors state dict (no pickle); the 1000-class head is dropped if it does not fit."""
    from safetensors.torch import load_file

    p = Path(path)
    if p.suffix != ".safetensors":
        raise ModelError(f"{p}: --weights takes a .safetensors state dict (no pickle files)")
    if not p.is_file():
        raise ModelError(f"{p}: weights file not found")
    state = load_file(str(p))
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in state and not k.startswith("classifier.6")]
    if missing:
        raise ModelError(
            f"{p}: does not fit the model; missing/mismatched tensors e.g. {missing[:3]}"
        )
    model.load_state_dict(state, strict=False)


def build_model(
    name: str,
    num_outputs: int = 1,
    pretrained: bool = False,
    weights: str | None = None,
) -> nn.Module:
    """Build a model by name with ``num_outputs`` logits (1 for a binary attribute)."""
    name = name.lower()
    if name in VGG_NAMES:
        return _torchvision_vgg(name, num_outputs, pretrained, weights)
    if pretrained or weights:
        raise ModelError(f"{name} has no pretrained weights; drop --pretrained/--weights")
    if name == "vgg-mini":
        return VGGMini(num_outputs)
    if name == "fcnn3":
        return FCNN3(num_outputs)
    raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def num_outputs_from_state(state_shapes: dict[str, tuple[int, ...]]) -> int:
    """Head size read from a state dict's last linear layer (``classifier.6`` or ``fc3``)."""
    for key in ("classifier.6.weight", "fc3.weight"):
        if key in state_shapes:
            return int(state_shapes[key][0])
    raise ModelError("cannot find the head (classifier.6.weight or fc3.weight) in the tensors")

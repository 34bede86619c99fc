"""The training config: every field's default and help stated once (torch-free).

:class:`TrainConfig` is saved in ``experiment.json`` and every checkpoint; the ``train`` command's
options are built from its fields (:func:`add_train_args`), so the CLI and the library cannot drift.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fxcore.core.argtypes import fraction, nonneg_int, positive_float, positive_int
from fxcore.core.errors import CheckpointError
from fxcore.data.registry import DATASETS, FACE_DATASETS, MODEL_NAMES

AUGMENT_CHOICES = (
    "auto",
    "on",
    "off",
)  # --augment (fxcore.train.augment): auto = on for face datasets
# What experiments written before --augment existed were trained with (their config lacks the key).
LEGACY_AUGMENT = "off"
# Config keys that may change between a run and its resumption without changing the results' meaning.
RESUMABLE_KEYS = frozenset({"epochs", "device", "workers", "progress"})


def _opt(default: Any, help: str, **cli: Any) -> Any:
    """A config field: its default, its help and how the ``train`` command parses it."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything that defines an experiment (saved in experiment.json and every checkpoint)."""

    dataset: str = _opt("celeba", "image source", choices=DATASETS)
    data_root: str | None = _opt(
        None, "dataset folder (CelebA official layout, MNIST IDX files); none = bundled"
    )
    attributes: list[str] = _opt(
        ["Smiling", "Male"], "one run per attribute", nargs="+", metavar="A"
    )
    model: str = _opt(
        "vgg19", "architecture shared by all runs (seed paper: VGG-19)", choices=MODEL_NAMES
    )
    epochs: int = _opt(10, "epochs to train (checkpoints epoch_000..epoch_N)", type=positive_int)
    batch_size: int = _opt(16, "global batch size (seed paper: 16)", type=positive_int)
    lr: float = _opt(1e-3, "Adam learning rate (seed paper: 1e-3)", type=positive_float)
    lr_schedule: str = _opt(
        "constant",
        "learning rate per epoch: constant, or cosine decay from --lr over --epochs (then fixed)",
        choices=("constant", "cosine"),
    )
    loss: str = _opt(
        "auto",
        "auto = BCE on one logit for binary, MSE on one-hot for multi-class",
        choices=("auto", "bce", "mse", "ce"),
    )
    image_size: int = _opt(
        224, "square input side in pixels (VGG: 224; vgg-mini: 64)", type=positive_int
    )
    seed: int = _opt(0, "fixes the shared init, the data order and dropout", type=nonneg_int)
    pretrained: str = _opt(
        "auto",
        "ImageNet weights for VGG (auto: when they can be had)",
        choices=("auto", "yes", "no"),
    )
    weights: str | None = _opt(None, "local .safetensors ImageNet state dict (offline pretrained)")
    max_train: int | None = _opt(None, "use the first N training images", type=positive_int)
    max_val: int | None = _opt(None, "use the first N validation images", type=positive_int)
    val_fraction: float = _opt(
        0.1,
        "share carved from train for val (and test) when the official split has no images",
        type=fraction,
    )
    synth_train: int | None = _opt(
        None, "SynthFaces training-set size (none = its default)", type=positive_int
    )
    device: str = _opt(
        "auto", "auto = cuda, then mps, then cpu", choices=("auto", "cpu", "cuda", "mps")
    )
    amp: str = _opt("none", "bf16 autocast (CUDA only)", choices=("none", "bf16"))
    channels_last: bool = _opt(False, "NHWC memory format (faster convs on CUDA tensor cores)")
    workers: int = _opt(2, "DataLoader workers when images are streamed from disk", type=nonneg_int)
    cache_gb: float = _opt(
        4.0, "decode the split into memory once when it fits this budget", type=positive_float
    )
    progress: bool = _opt(True, "progress bars (a summary line per epoch is always printed)")
    augment: str = _opt(
        "auto",
        "batch augmentation shared by the lockstep (auto: on for face datasets, off for MNIST)",
        choices=AUGMENT_CHOICES,
        nargs="?",
        const="on",
    )
    controls: int = _opt(
        0,
        "extra runs learning the first attribute with their own batch order "
        "(the noise floor of every comparison)",
        type=nonneg_int,
    )
    control_init: str = _opt(
        "same",
        "controls start from the shared init (same) or their own seeded one (seed)",
        choices=("same", "seed"),
    )

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based): ``lr`` throughout, or a cosine from ``lr``
        at epoch 1 towards 0 after epoch ``epochs`` (a function of the epoch alone, so a resumed
        run continues the same curve; extending ``--epochs`` stretches what is left of it)."""
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))

    def shared(self) -> dict[str, Any]:
        """The config keys that must match for a resumed or extended experiment."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_KEYS}


def add_train_args(p: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainConfig` field (flags off by default get ``--x``, on ``--no-x``)."""
    for f in fields(TrainConfig):
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            if default:
                p.add_argument(
                    f"--no-{flag[2:]}", dest=f.name, action="store_false", help=f"no {help_text}"
                )
            else:
                p.add_argument(flag, action="store_true", help=help_text)
            continue
        shown = " ".join(default) if isinstance(default, list) else default
        suffix = f" (default: {shown})" if default is not None else ""
        # Lists keep None here so TrainConfig makes a fresh copy of its own default.
        p.add_argument(
            flag,
            default=None if isinstance(default, list) else default,
            help=help_text + suffix,
            **meta,
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``train`` options (``data_root`` made absolute)."""
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if values.get("data_root"):  # saved in the experiment: make it valid from any folder
        values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
    return TrainConfig(**values)


# ---------------------------------------------------------------- the runs a config trains


def control_name(attribute: str, i: int) -> str:
    """Folder name of the i-th (1-based) control run of ``attribute``."""
    return f"{attribute}-control{i}"


def run_names(attributes: list[str], controls: int = 0) -> list[str]:
    """Run folders of a trained experiment: one per attribute, then the first one's controls."""
    return [*attributes, *(control_name(attributes[0], i) for i in range(1, controls + 1))]


# Control i draws its batch order (and, with control_init="seed", its init) from seed + i * this:
# far enough apart that seed + epoch never meets another run's stream.
CONTROL_SEED_STEP = 10_000


@dataclass
class RunSpec:
    """One model of the lockstep trainer: folder, label column, batch-order seed and init seed."""

    name: str
    column: int  # label column of the attribute it learns
    order_seed: int  # epoch e's order is epoch_order(N, order_seed, e)
    init_seed: int | None  # None = the shared init
    control: bool = False


def run_specs(
    attributes: list[str], seed: int, controls: int = 0, control_init: str = "same"
) -> list[RunSpec]:
    """One run per attribute (shared init and batch order), then ``controls`` runs that learn
    ``attributes[0]`` from the same init (``control_init="seed"``: their own) with their own
    batch order: two runs of one task, i.e. how far any second run drifts (the noise floor)."""
    if control_init not in ("same", "seed"):
        raise CheckpointError(f"control_init must be 'same' or 'seed', not {control_init!r}")
    names = run_names(attributes, controls)
    specs = [RunSpec(a, k, seed, None) for k, a in enumerate(attributes)]
    for i, name in enumerate(names[len(attributes) :], start=1):
        s = seed + i * CONTROL_SEED_STEP
        specs.append(RunSpec(name, 0, s, s if control_init == "seed" else None, control=True))
    return specs


def resolve_augment(value: str, dataset: str) -> str:
    """``auto`` -> ``on`` for face datasets, ``off`` otherwise; ``on``/``off`` pass through."""
    if value not in AUGMENT_CHOICES:
        raise ValueError(f"augment={value!r}: use one of {', '.join(AUGMENT_CHOICES)}")
    if value == "auto":
        return "on" if dataset in FACE_DATASETS else "off"
    return value

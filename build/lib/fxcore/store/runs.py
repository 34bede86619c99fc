"""The run store: experiments and runs on disk, read lazily (one header or one tensor at a time).

``Run`` validates each epoch file before use (:func:`fxcore.store.checkpoints.read_header`) and reports
bad epochs instead of failing; listing experiments reads JSON only, so it needs no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxcore.core.errors import FxcoreError
from fxcore.store.checkpoints import (
    EPOCH_RE,
    CheckpointError,
    epoch_file,
    file_stamp,
    read_header,
    read_json,
    read_jsonl,
    read_meta,
)
from fxcore.store.progress import PROGRESS_FILE, state_fields

if TYPE_CHECKING:  # torch is imported by the functions that make tensors: listing runs stays fast
    import torch


STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm buffers


@functools.lru_cache(maxsize=16)
def architecture_order(model_name: str, num_outputs: int) -> tuple[str, ...]:
    """State-dict names of an architecture in model order (empty for one fxcore cannot build)."""
    import torch

    from fxcore.models.nets import build_model

    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            net = build_model(model_name, num_outputs=num_outputs)
    except (FxcoreError, RuntimeError, ValueError):
        return ()
    return tuple(net.state_dict())


def safe_child(root: Path, name: str) -> Path:
    """``root/name`` for a single path component that stays inside ``root`` (no ``..``, no
    absolute path, no symlink pointing outside)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise CheckpointError(f"invalid name {name!r}: use a plain folder name")
    root_real = Path(root).resolve()
    path = Path(root) / name
    real = path.resolve()
    if real.parent != root_real and root_real not in real.parents:
        raise CheckpointError(f"{path}: points outside {root} (refused)")
    return path


@dataclass
class Run:
    """One model's history: lazy, reads headers and single tensors on demand."""

    path: Path
    experiment: str
    info: dict[str, Any]
    _bad: dict[int, str] | None = field(default=None, repr=False)  # cache of bad_epochs()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def attribute(self) -> str:
        return str(self.info.get("attribute", self.name))

    @property
    def model(self) -> str:
        return str(self.info.get("model", "?"))

    @property
    def dataset(self) -> str:
        return str(self.info.get("dataset", "?"))

    @property
    def is_control(self) -> bool:
        """A control run: learns the same attribute as the first run from the same start."""
        return bool(self.info.get("control", False))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.info.get("config", {}))

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v) for k, v in self.info.get("tensors", {}).items()}

    def tensor_order(self) -> list[str]:
        """The run's tensor names in model order.

        run.json lists tensors in the model's state-dict order (the store writes it so), so no
        model is built, or torch imported, to order the layer pickers. Runs written before that
        (alphabetical lists: a model order always has ``.weight`` before its ``.bias``) get the
        order of the architecture instead.
        """
        names = list(self.shapes)
        if len(names) > 1 and names == sorted(names):
            built = architecture_order(self.model, int(self.info.get("num_outputs", 1)))
            return [k for k in built if k in self.shapes] + [k for k in names if k not in built]
        return names

    def weight_keys(self) -> list[str]:
        """Trainable tensors (BatchNorm running statistics left out), in model order."""
        return [k for k in self.tensor_order() if not k.endswith(STAT_SUFFIXES)]

    def model_order(self, names: Iterable[str]) -> list[str]:
        """``names`` (weight keys or layer names such as ``features.3``) in the model's order."""
        order = self.tensor_order()
        rank: dict[str, int] = {}
        for i, key in enumerate(order):
            rank.setdefault(key, i)
            rank.setdefault(key.rsplit(".", 1)[0], i)  # the layer owning this parameter
        return sorted(names, key=lambda n: (rank.get(n, len(order)), n))

    def epoch_path(self, epoch: int) -> Path:
        return epoch_file(self.path, epoch)

    def epochs_on_disk(self) -> list[int]:
        found = []
        for p in self.path.iterdir():
            m = EPOCH_RE.match(p.name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def check_epoch(self, epoch: int) -> None:
        """Raise CheckpointError unless epoch's file exists, is intact and fits the architecture."""
        path = self.epoch_path(epoch)
        if not path.exists():
            raise CheckpointError(f"{path}: epoch {epoch} is missing")
        if path.is_symlink():
            real = path.resolve()
            if self.path.resolve() not in real.parents:
                raise CheckpointError(f"{path}: symlink pointing outside the run folder (refused)")
        header, _ = read_header(path)
        read_meta(path)
        want = self.shapes
        if want:
            got = {k: tuple(v["shape"]) for k, v in header.items()}
            missing = sorted(set(want) - set(got))
            wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
            if missing or wrong:
                detail = f"missing {missing[:3]}" if missing else ""
                if wrong:
                    k = wrong[0]
                    detail += f" {k} has shape {got[k]}, run expects {want[k]}"
                raise CheckpointError(
                    f"{path}: does not match the run's architecture ({self.model}):{detail}"
                )

    def bad_epochs(self) -> dict[int, str]:
        """Epochs that fail validation (file problem or gap in the sequence), with the reason."""
        if self._bad is None:
            bad: dict[int, str] = {}
            on_disk = self.epochs_on_disk()
            for e in on_disk:
                try:
                    self.check_epoch(e)
                except CheckpointError as exc:
                    bad[e] = str(exc)
            # Trained runs have every epoch 0..N; imported ones list theirs in run.json.
            expected = self.info.get("epochs") or range(0, max(on_disk, default=0))
            for e in expected:
                if e not in on_disk:
                    bad[e] = f"{self.epoch_path(e)}: epoch {e} is missing"
            self._bad = bad
        return dict(self._bad)

    def epochs(self) -> list[int]:
        """Epochs whose checkpoint is present and valid (bad ones are listed by bad_epochs)."""
        bad = self.bad_epochs()
        return [e for e in self.epochs_on_disk() if e not in bad]

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "metrics.jsonl")

    def read_tensor(self, epoch: int, key: str) -> torch.Tensor:
        """One tensor at one epoch, memory-mapped: the other tensors are never read."""
        from safetensors import safe_open

        self.check_epoch(epoch)
        path = self.epoch_path(epoch)
        with safe_open(str(path), framework="pt") as fh:
            if key not in fh.keys():  # noqa: SIM118 (safe_open has no __contains__)
                raise CheckpointError(f"{path}: no tensor {key!r}")
            return fh.get_tensor(key)

    def state_dict(self, epoch: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        self.check_epoch(epoch)
        return load_file(str(self.epoch_path(epoch)))

    def build_model(self, epoch: int, device: str = "cpu") -> torch.nn.Module:
        """The run's model with epoch's weights, on ``device`` (``cpu`` or ``cuda``, see
        :func:`fxcore.core.devices.resolve_device`), in eval mode."""
        from fxcore.models.nets import build_model

        model = build_model(self.model, num_outputs=int(self.info.get("num_outputs", 1)))
        try:
            model.load_state_dict(self.state_dict(epoch))
        except RuntimeError as exc:
            raise CheckpointError(f"{self.epoch_path(epoch)}: does not fit {self.model}") from exc
        return (model if device == "cpu" else model.to(device)).eval()

    def meta(self, epoch: int) -> dict[str, Any]:
        return read_meta(self.epoch_path(epoch))


@dataclass
class Experiment:
    path: Path
    info: dict[str, Any]
    runs: list[Run]

    @property
    def name(self) -> str:
        return self.path.name

    def run(self, name: str) -> Run:
        for r in self.runs:
            if r.name == name or r.attribute.lower() == name.lower():
                return r
        raise CheckpointError(
            f"experiment {self.name} has no run {name!r}; runs: {', '.join(r.name for r in self.runs)}"
        )


def load_experiment(path: Path) -> Experiment:
    """Open an experiment folder (its runs are listed in experiment.json, or found as subfolders)."""
    path = Path(path)
    if not (path / "experiment.json").is_file():
        raise CheckpointError(f"{path}: not an experiment folder (no experiment.json)")
    info = read_json(path / "experiment.json")
    names = info.get("runs") or sorted(p.name for p in path.iterdir() if (p / "run.json").is_file())
    runs = []
    for name in names:
        run_dir = safe_child(path, str(name))
        if (run_dir / "run.json").is_file():
            runs.append(Run(run_dir, path.name, read_json(run_dir / "run.json")))
    return Experiment(path, info, runs)


def open_experiment(name_or_path: str | Path, root: str | Path = "checkpoints") -> Experiment:
    """An experiment by folder path, or by name under ``root``."""
    p = Path(name_or_path)
    if (p / "experiment.json").is_file():
        return load_experiment(p)
    if not Path(root).is_dir():
        raise CheckpointError(f"no experiment {str(name_or_path)!r}: {root} does not exist")
    return load_experiment(safe_child(Path(root), str(name_or_path)))


def list_experiments(root: str | Path = "checkpoints") -> list[Experiment]:
    """Every experiment folder directly under ``root`` (unreadable ones are skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in sorted(root.iterdir()):
        if (p / "experiment.json").is_file():
            try:
                found.append(load_experiment(safe_child(root, p.name)))
            except CheckpointError:
                continue
    return found


def runs_table(experiments: Iterable[Experiment]) -> list[dict[str, Any]]:
    """The ``runs --json`` contract: one row per run with epochs, metrics and the training state
    (``state``: running / finished / interrupted / failed / stale, None without progress.json)."""
    rows = []
    for exp in experiments:
        live = state_fields(exp.path)
        for run in exp.runs:
            rows.append(
                {
                    "experiment": exp.name,
                    "run": run.name,
                    "attribute": run.attribute,
                    "model": run.model,
                    "dataset": run.dataset,
                    "epochs": run.epochs(),
                    "bad_epochs": {str(k): v for k, v in run.bad_epochs().items()},
                    "metrics": run.metrics(),
                    **live,
                }
            )
    return rows


def common_epochs(runs: Iterable[Run]) -> list[int]:
    """Epochs valid in every run (bad or missing epochs in any run are left out)."""
    sets = [set(r.epochs()) for r in runs]
    return sorted(set.intersection(*sets)) if sets else []


def shared_epochs(runs: Iterable[Run], epochs: Iterable[int] | None = None) -> list[int]:
    """``epochs`` as given, else those valid in every run; an error naming the runs when none."""
    runs = list(runs)
    eps = list(epochs) if epochs is not None else common_epochs(runs)
    if not eps:
        raise CheckpointError(f"no epoch common to runs {', '.join(r.name for r in runs)}")
    return eps


def skipped_epochs(
    runs: Iterable[Run], lo: int | None = None, hi: int | None = None
) -> list[tuple[str, int, str]]:
    """(run name, epoch, reason naming the file) of each damaged or missing epoch in ``lo..hi``
    (None = open end): the epochs an analysis over that span leaves out."""
    return [
        (run.name, e, why)
        for run in runs
        for e, why in sorted(run.bad_epochs().items())
        if (lo is None or e >= lo) and (hi is None or e <= hi)
    ]


def epochs_text(epochs: Iterable[int]) -> str:
    """``0–5`` for a whole span, ``0, 2, 3`` when one is missing (never a range over a gap)."""
    eps = sorted(epochs)
    if len(eps) > 1 and eps == list(range(eps[0], eps[-1] + 1)):
        return f"{eps[0]}–{eps[-1]}"
    return ", ".join(map(str, eps)) or "none"


def experiment_stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of every JSON/JSONL/safetensors file of an experiment (two levels deep);
    not progress.json: it changes every few seconds while a run trains, its epochs don't."""

    def named(p: Path) -> tuple[str, int, int]:
        return (p.name, *file_stamp(p))

    out: list[tuple[str, int, int]] = []
    try:
        entries = sorted(Path(path).iterdir())
    except OSError:
        return ()
    for p in entries:
        if p.is_file() and p.suffix == ".json" and p.name != PROGRESS_FILE:
            out.append(named(p))
        elif p.is_dir() and not p.name.startswith("."):
            try:
                files = sorted(p.iterdir())
            except OSError:
                continue
            out += [
                (f"{p.name}/{n}", sz, mt)
                for n, sz, mt in (
                    named(f) for f in files if f.suffix in (".json", ".jsonl", ".safetensors")
                )
            ]
    return tuple(out)

"""Static PNG figures of the seed paper (Fig. 2.1, 3.1-3.10) and the new measures, from stored runs.

The numbers come from the same ``fxcore.compare.analysis`` calls the app uses; only the rendering differs
(matplotlib's Agg backend here, Plotly in the app), so there is no second implementation.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fxcore.compare import analysis  # noqa: E402
from fxcore.data.inputs import attribute_statistics, capabilities, input_spec  # noqa: E402
from fxcore.explain.sanity import layer_sanity  # noqa: E402
from fxcore.measures.stats import mnist_unit_tiles, tile_grid  # noqa: E402
from fxcore.store.probeset import probe_set
from fxcore.store.runs import Experiment  # noqa: E402
from fxcore.store.select import pick_control, pick_runs


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attribute_rates(exp: Experiment, out: Path) -> Path:
    """Fig. 2.1: positive rate of every attribute of the experiment's dataset."""
    st = attribute_statistics(exp.info)
    name, names, rates = st["dataset"], st["names"], np.asarray(st["positive_rate"])
    fig, ax = plt.subplots(figsize=(max(5, 0.28 * len(names) + 2), 3.6))
    chosen = set(exp.info.get("attributes", []))
    ax.bar(names, rates, color=["tab:red" if n in chosen else "tab:blue" for n in names])
    ax.set_ylabel("positive rate" if name != "mnist" else "share of digits")
    ax.set_title(f"{name}: attribute distribution (chosen attributes in red)")
    ax.tick_params(axis="x", rotation=90)
    return _save(fig, out / "fig2_1_attributes.png")


def feature_map_figures(
    exp: Experiment, out: Path, image: str | None, n_layers: int = 4, device: str = "cpu"
) -> list[Path]:
    """Fig. 3.1/3.2: channel-mean and top channels of a few conv layers, L1 and L2, final epoch."""
    import torch

    from fxcore.explain.activations import conv_layers

    runs = pick_runs(exp)
    epoch = analysis.common_epochs(runs)[-1]
    models = [(r.name, r.attribute, r.build_model(epoch, device)) for r in runs]
    convs = conv_layers(models[0][2])
    if not convs:
        return []
    if image:
        from fxcore.upload.faces import prepare_upload

        spec = input_spec(exp.info)
        x = prepare_upload(Path(image), spec.image_size, spec.normalize, mode=spec.mode).tensor
    else:
        x, _ = probe_set(exp, 1)
    picks = [convs[int(i)] for i in np.linspace(0, len(convs) - 1, n_layers).round()]
    paths = []
    for k, (run, _attr, _model) in enumerate(models):
        fig, axes = plt.subplots(2, n_layers, figsize=(3 * n_layers, 6), squeeze=False)
        for j, layer in enumerate(picks):
            view = analysis.explain([models[k]], x[:1].to(torch.float32), layer, top_k=4)[0]
            axes[0, j].imshow(view.channel_mean, cmap="viridis")
            axes[0, j].set_title(f"{layer} channel mean", fontsize=8)
            axes[1, j].imshow(np.concatenate(list(view.top_maps[:4]), axis=1), cmap="viridis")
            axes[1, j].set_title(f"top-4 channels {view.top_channels[:4]}", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.suptitle(f"Feature maps, {run} model, epoch {epoch} (L{k + 1})")
        paths.append(_save(fig, out / f"fig3_{k + 1}_feature_maps_{run}.png"))
    return paths


def _heat(ax: plt.Axes, m: np.ndarray, title: str, vmin=None, vmax=None, cmap="viridis") -> None:
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)


def weight_figures(exp: Experiment, out: Path, layer: str | None) -> list[Path]:
    """MNIST: Fig. 3.3-3.6 and unit tiles; VGG: Fig. 3.7-3.10 mean/variance maps of both nets."""
    runs = pick_runs(exp)
    eps = analysis.common_epochs(runs)
    paths = []
    if runs[0].model == "fcnn3":
        run = runs[0]
        for fig_no, e in (("3_3", min(1, eps[-1])), ("3_4", eps[-1])):
            w = run.read_tensor(e, "fc1.weight").numpy()
            fig, ax = plt.subplots(figsize=(9, 3))
            _heat(ax, w, f"fc1.weight (128x784) after epoch {e}", cmap="RdBu_r")
            paths.append(_save(fig, out / f"fig{fig_no}_mnist_weights_epoch{e}.png"))
        mean, var = analysis.run_mean_var(run, "fc1.weight", eps[0], eps[-1])
        for fig_no, m, what in (("3_5", mean, "mean"), ("3_6", var, "variance")):
            fig, ax = plt.subplots(figsize=(9, 3))
            _heat(ax, m, f"fc1.weight per-weight {what}, epochs {eps[0]}..{eps[-1]}")
            paths.append(_save(fig, out / f"fig{fig_no}_mnist_{what}.png"))
        tiles = tile_grid(
            mnist_unit_tiles(run.read_tensor(eps[-1], "fc1.weight").numpy()), normalize=True
        )
        fig, ax = plt.subplots(figsize=(7, 7))
        _heat(ax, tiles, f"fc1 units as 28x28 tiles, epoch {eps[-1]}", cmap="RdBu_r")
        paths.append(_save(fig, out / "mnist_unit_tiles.png"))
        return paths
    key = layer or next(k for k, s in reversed(list(runs[0].shapes.items())) if len(s) == 4)
    wm = analysis.weight_maps(runs, key, eps[0], eps[-1])
    for kind, fig_no in (("mean", ("3_7", "3_8")), ("var", ("3_9", "3_10"))):
        maps = getattr(wm, kind)
        both = np.concatenate([maps[r.name].ravel() for r in runs[:2]])
        lo, hi = np.nanmin(both), np.nanmax(both)
        for run, no in zip(runs[:2], fig_no):
            fig, ax = plt.subplots(figsize=(6, 5))
            _heat(
                ax,
                maps[run.name],
                f"{run.name}: {key} per-weight {kind}, epochs "
                f"{eps[0]}..{eps[-1]} (block {wm.block[0]}x{wm.block[1]})",
                lo,
                hi,
            )
            paths.append(_save(fig, out / f"fig{no}_{run.name}_{kind}.png"))
    return paths


def _band(ax: plt.Axes, x, value, low, high, label: str, style: str = "o-") -> None:
    """A line with its interval drawn as a shaded band."""
    line = ax.plot(x, value, style, label=label)[0]
    if low is not None and high is not None:
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def dynamics_figures(exp: Experiment, out: Path, n_probe: int, device: str = "cpu") -> list[Path]:
    """New: drift by layer, cross-model cosine, CKA by layer and epoch, attention shares.

    With a control run (``train --controls``) every pairwise figure draws L1 vs control beside
    L1 vs L2, and CKA and attention shares carry their 95% intervals as bands / error bars.
    """
    runs = pick_runs(exp)
    control = pick_control(exp, runs[0]) if runs else None
    paths = []
    dyn = analysis.dynamics(exp, runs)
    ctl = analysis.dynamics(exp, [runs[0], control]) if control is not None else None
    layers = list(dyn["layers"])
    xs = range(len(layers))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for run_key, name in (("drift_a", dyn["runs"][0]), ("drift_b", dyn["runs"][1])):
        axes[0].plot(xs, [dyn["layers"][k][run_key][-1] for k in layers], "o-", label=name)
    axes[1].plot(
        xs,
        [dyn["layers"][k]["cosine"][-1] for k in layers],
        "o-",
        label=f"{dyn['runs'][0]} vs {dyn['runs'][1]}",
    )
    if ctl is not None:
        axes[0].plot(
            xs,
            [ctl["layers"][k]["drift_b"][-1] for k in layers],
            "s:",
            color="grey",
            label=f"{control.name} (control)",
        )
        axes[1].plot(
            xs,
            [ctl["layers"][k]["cosine"][-1] for k in layers],
            "s:",
            color="grey",
            label=f"{runs[0].name} vs {control.name} (control)",
        )
    for ax, title in zip(axes, ("relative drift from init, final epoch", "weight cosine, final")):
        ax.set_xticks(xs, layers, rotation=90, fontsize=7)
        ax.set_title(title)
        ax.legend(fontsize=8)
    paths.append(_save(fig, out / "drift_by_layer.png"))
    can = capabilities(exp.info)
    if len(runs) < 2 or not can.probe_images:
        return paths
    res = analysis.cka(exp, runs, n_probe=n_probe, device=device)
    names = list(res["layers"])
    grid = np.array([res["layers"][n] for n in names])
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 2))
    im = ax.imshow(grid, vmin=0, vmax=1, aspect="auto", cmap="magma")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks(range(len(res["epochs"])), res["epochs"])
    ax.set_xlabel("epoch")
    ax.set_title(
        f"linear CKA between {res['runs'][0]} and {res['runs'][1]} ({res['n_probe']} images)"
    )
    plt.colorbar(im, ax=ax)
    paths.append(_save(fig, out / "cka_layer_epoch.png"))
    paths.append(_cka_vs_control(exp, res, runs[0], control, n_probe, out, device))
    if not can.face_regions:
        return paths
    shown = [*runs[:2], *([control] if control is not None else [])]
    loc = analysis.localisation(exp, shown, n_probe=n_probe, device=device)
    fig, ax = plt.subplots(figsize=(7, 4))
    for run, shares in loc["runs"].items():
        for region, style in (("mouth", "-"), ("eyes", "--")):
            ci = np.array(loc.get("ci", {}).get(run, {}).get(region, []), float).reshape(-1, 2)
            err = np.abs(ci.T - np.asarray(shares[region])) if len(ci) else None  # 95% bootstrap
            tag = " (control)" if control is not None and run == control.name else ""
            ax.errorbar(
                loc["epochs"],
                shares[region],
                yerr=err,
                fmt=style,
                marker="o",
                capsize=2,
                label=f"{run}{tag}: {region}",
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of Grad-CAM energy")
    layer = loc.get("layer", "?")
    verdict = layer_sanity(exp, shown, loc["epochs"][-1]).get(layer)
    check = verdict.text if verdict else "? sanity not checked"
    ax.set_title(f"Where each model looks (Grad-CAM at {layer}, {check}; 95% CI)", fontsize=10)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "attention_localisation.png"))
    return paths


def _cka_vs_control(
    exp: Experiment, res: dict, first, control, n_probe: int, out: Path, device: str = "cpu"
) -> Path:
    """Final-epoch CKA per layer: L1 vs L2 against L1 vs control, each with its 95% band."""
    names = list(res["layers"])
    xs = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))

    def last(r: dict, key: str) -> list[float]:
        return [r[key][n][-1] for n in names]

    _band(
        ax,
        xs,
        last(res, "layers"),
        last(res, "low"),
        last(res, "high"),
        f"{res['runs'][0]} vs {res['runs'][1]}",
    )
    if control is not None:
        ctl = analysis.cka(exp, [first, control], n_probe=n_probe, device=device)
        _band(
            ax,
            xs,
            last(ctl, "layers"),
            last(ctl, "low"),
            last(ctl, "high"),
            f"{first.name} vs {control.name} (control: same task)",
            "s:",
        )
        title = "CKA per layer, final epoch: the pair against the control (95% CI)"
    else:
        title = "CKA per layer, final epoch (95% CI; no control run: train --controls 1)"
    ax.plot(xs, last(res, "null"), "x", color="black", label="permuted pairing (null, ~0)")
    ax.set_xticks(xs, names, rotation=90, fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("linear CKA")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out / "cka_vs_control.png")


def write_figures(
    exp: Experiment,
    out: Path,
    image: str | None = None,
    layer: str | None = None,
    n_probe: int = 64,
    device: str = "cpu",
) -> list[Path]:
    """Write every figure that applies to ``exp`` into ``out``; returns the paths written (the
    models run on ``device``)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [attribute_rates(exp, out)]
    if capabilities(exp.info).conv_layers:
        paths += feature_map_figures(exp, out, image, device=device)
    paths += weight_figures(exp, out, layer)
    paths += dynamics_figures(exp, out, n_probe, device)
    return paths

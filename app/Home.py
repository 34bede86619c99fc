"""fxcore app, entry script: ``streamlit run app/Home.py``.

Declares the pages (``st.navigation``) and draws what they share: the page config and the
experiment picker in the sidebar (kept in the URL), so one choice holds for all of them. The Home
page itself: the experiments found, their training curves and bad epochs; the built-in demo when
there is none. The other pages live in ``app/views/`` (not ``pages/``, which Streamlit would also
register as file-based pages: AppTest would then run them without this entry script).
"""

from __future__ import annotations

import math
from pathlib import Path

import cache
import live
import pandas as pd
import streamlit as st
import ui
from plotly.subplots import make_subplots

from fxcore.store.runs import Experiment, Run, epochs_text


def best_accuracy(run: Run) -> str:
    rows = [r for r in run.metrics() if isinstance(r.get("val_accuracy"), int | float)]
    rows = [r for r in rows if not math.isnan(r["val_accuracy"])]
    if not rows:
        return f"{run.attribute}: –"
    best = max(rows, key=lambda r: r["val_accuracy"])
    return f"{run.attribute}: {best['val_accuracy']:.3f} (epoch {best.get('epoch', '?')})"


def overview(exps: list[Experiment]) -> pd.DataFrame:
    rows = []
    states = live.states(exps)
    for exp in exps:
        cfg = exp.info.get("config", {})
        bad = sum(len(r.bad_epochs()) for r in exp.runs)
        eps = sorted({e for r in exp.runs for e in r.epochs()})
        rows.append(
            {
                "experiment": exp.name,
                "dataset": exp.info.get("dataset", cfg.get("dataset", "?")),
                "model": exp.info.get("model", cfg.get("model", "?")),
                "attributes": ", ".join(r.attribute for r in exp.runs),
                "epochs": epochs_text(eps),
                "state": live_text(*states[exp.name]) if exp.name in states else "–",
                "best val accuracy": "; ".join(best_accuracy(r) for r in exp.runs),
                "bad epochs": bad,
            }
        )
    return pd.DataFrame(rows)


def live_text(state: str, p) -> str:
    """``running 2/5``, ``finished 5/5``, ``stale 2/5`` (epochs saved / epochs of the run)."""
    return f"{state} {max(p.done, 0)}/{p.epochs}"


def curves(exp: Experiment) -> None:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Validation accuracy"))
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    shown = False
    for i, run in enumerate(exp.runs):
        rows = sorted((r for r in run.metrics() if "epoch" in r), key=lambda r: r["epoch"])
        if not rows:
            continue
        shown = True
        c, label = colours[i % len(colours)], ui.run_label(i, run)
        x = [r["epoch"] for r in rows]
        for key, dash, where in (
            ("train_loss", "solid", 1),
            ("val_loss", "dot", 1),
            ("val_accuracy", "solid", 2),
        ):
            y = [r.get(key) for r in rows]
            if all(v is None for v in y):
                continue
            name = f"{label} {key.replace('_', ' ')}"
            fig.add_scatter(
                x=x,
                y=y,
                name=name,
                mode="lines+markers",
                row=1,
                col=where,
                line={"color": c, "dash": dash},
            )
    if not shown:
        st.info("No metrics recorded yet for this experiment (metrics.jsonl is empty).")
        return
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="loss (per image)", row=1, col=1)
    fig.update_yaxes(title_text="accuracy (0–1)", row=1, col=2)
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    st.plotly_chart(fig, key="curves")


def bad_epochs(exp: Experiment) -> None:
    bad = [(r, e, why) for r in exp.runs for e, why in sorted(r.bad_epochs().items())]
    if not bad:
        st.success("Every checkpoint of this experiment is intact.", icon=":material/check:")
        return
    lines = "\n".join(f"- **{r.name}** epoch {e}: `{why}`" for r, e, why in bad)
    st.warning(
        f"{len(bad)} epoch(s) cannot be used and are skipped on every page; the other "
        f"epochs stay usable.\n\n{lines}"
    )


FRAMING_TEXT = {"centre": "centre crop", "face": "face crop", "align": "re-aligned"}
FRAMING_PREFERENCE = ("align", "face", "centre")  # an upload's framing: the app's default first


def set_label(ev: dict) -> str:
    """What an evaluated image set is, in words (its stored name is a folder's name)."""
    name, source = str(ev.get("set", "?")), str(ev.get("source", ""))
    if name == "test-split":
        return "test split, aligned" if source.startswith("celeba") else "test split"
    if "standin" in source.replace("-", "").lower():  # benchmarks/make_standin.py's output
        return "stand-in, unaligned"
    return f"folder {name}/"


def headline(evals: list[dict]) -> dict[str, dict[str, dict]]:
    """Set label -> run -> the metrics at the last epoch evaluated, one framing per set: the
    test split as in training (centre crop), any other set as the app frames an upload (align)."""
    per_set: dict[str, dict] = {}
    for ev in evals:
        label = set_label(ev)
        order = ("centre", "align", "face") if ev.get("set") == "test-split" else FRAMING_PREFERENCE
        rank = order.index(ev.get("framing")) if ev.get("framing") in order else len(order)
        if label not in per_set or rank < per_set[label][0]:
            per_set[label] = (rank, ev)
    out: dict[str, dict[str, dict]] = {}
    for label, (_, ev) in sorted(
        per_set.items(), key=lambda kv: kv[1][1].get("set") != "test-split"
    ):
        for run, per in ev.get("runs", {}).items():
            if per:
                epoch = max(per, key=int)
                out.setdefault(run, {})[label] = {
                    **per[epoch],
                    "epoch": int(epoch),
                    "framing": ev.get("framing"),
                }
    return out


def summary_lines(exp: Experiment, evals: list[dict]) -> list[str]:
    """One line per model: each set's accuracy and AUC at the last epoch evaluated."""
    best = headline(evals)
    lines = []
    for i, run in enumerate(r for r in exp.runs if r.name in best):
        parts = [
            f"{label} ({FRAMING_TEXT.get(m['framing'], m['framing'])}, epoch {m['epoch']}): "
            f"accuracy **{m.get('accuracy', float('nan')):.3f}**, "
            f"AUC **{m.get('auc', float('nan')):.3f}**"
            for label, m in best[run.name].items()
        ]
        lines.append(f"**{ui.run_label(i, run)}** — " + " · ".join(parts))
    return lines


def evaluation_section(exp: Experiment) -> None:
    """The last evaluations ``fxcore eval`` stored in the experiment: a line per model, the
    whole table behind an expander."""
    from fxcore.store.eval_store import stored_evaluations

    st.subheader("Evaluation")
    evals = stored_evaluations(exp.path)
    if not evals:
        st.caption(
            f"No stored evaluation. Run `python -m fxcore eval {exp.name} [--images DIR]` "
            "to score every run and epoch through the upload path."
        )
        return
    st.markdown("  \n".join(summary_lines(exp, evals)))
    st.caption(
        "Stored by `python -m fxcore eval`, through the same upload path as the Feature maps "
        "page: the test split framed as in training, other sets re-aligned like an upload."
    )
    rows = [
        {
            "set": set_label(ev),
            "framing": FRAMING_TEXT.get(ev.get("framing"), ev.get("framing")),
            "images": ev.get("n_images"),
            "run": run,
            "epoch": int(epoch),
            "accuracy": m.get("accuracy"),
            "balanced accuracy": m.get("balanced_accuracy"),
            "AUC": m.get("auc"),
            "ECE": m.get("ece"),
            "source": ev.get("source"),
            "when": ev.get("time"),
        }
        for ev in evals
        for run, per in ev.get("runs", {}).items()
        for epoch, m in per.items()
    ]
    with st.expander(f"Every set, framing, run and epoch ({len(rows)} rows)"):
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def demo_section() -> None:
    root = cache.checkpoints_root()
    st.info(f"No experiment found in `{root}`.")
    st.markdown(
        "**Try the built-in demo** — two small experiments trained on this machine "
        "(a VGG pair on synthetic faces, Smiling vs Male; and the seed paper's MNIST MLP). "
        "This takes a few minutes on a CPU."
    )
    if st.button("Train the built-in demo", type="primary", key="demo"):
        run_demo(root)
    st.markdown("**Or train on CelebA** (set `FXCORE_CHECKPOINTS` to read experiments elsewhere):")
    st.code(ui.TRAIN_CELEBA, language="bash")


def run_demo(root) -> None:
    from fxcore.cli.demo import DEMOS, make_demo

    lock = cache.demo_lock()
    if not lock.acquire(blocking=False):
        st.warning("The demo is already being trained in another session; reload in a minute.")
        return
    try:
        with st.status("Training the demo experiments…", expanded=True) as status:
            bar = st.progress(0.0)
            for i, name in enumerate(DEMOS):
                st.write(f"{name}: training (progress in the server console)…")
                make_demo(root, [name])
                bar.progress((i + 1) / len(DEMOS))
            status.update(label="Demo experiments ready", state="complete")
    except Exception as exc:  # noqa: BLE001 - e.g. a read-only folder: say so
        st.error(f"The demo could not be trained in {root}: {exc}")
        return
    finally:
        lock.release()
    st.rerun()


def experiments_live() -> bool:
    """The parts of Home that follow a training run (a fragment, see ``live.follow``): progress,
    the experiment list, the training curves. Returns whether a run is going."""
    exps, _ = cache.experiments()
    going = live.progress_panel(exps)
    st.subheader("Experiments")
    st.caption(f"From `{cache.checkpoints_root()}`")
    st.dataframe(overview(exps), hide_index=True)
    exp = cache.experiment(st.session_state.get("experiment")) or (exps[0] if exps else None)
    if exp is None:
        return going
    st.subheader(f"Training curves: {exp.name}")
    with ui.guard("Training curves"):
        curves(exp)
    with ui.guard("Checkpoint check"):
        bad_epochs(exp)
    return going


def home() -> None:
    st.title("fxcore: identical networks, different labels")
    st.caption(
        "K copies of one network share their initialisation and every batch, but learn "
        "different attributes. Pick an experiment in the sidebar; the other pages show "
        "how the models come to differ."
    )
    exps, problems = cache.experiments()
    for msg in problems:
        st.warning(f"Skipped an experiment folder: {msg}")
    if not exps:
        demo_section()
        return
    going = live.running(exps)
    live.follow(experiments_live, "home_live", going)
    exp = cache.experiment(st.session_state.get("experiment")) or exps[0]
    with ui.guard("Evaluation"):
        evaluation_section(exp)
    with st.expander("Configuration"):
        st.json(exp.info.get("config", {}), expanded=False)
    cache.prewarm()  # after the page is drawn: the analysis pages' imports load in the background


def page(path: str, title: str, icon: str) -> st.Page:
    """A page file of ``app/views/``; its URL keeps the name it had as a file-based page."""
    return st.Page(path, title=title, icon=icon, url_path=Path(path).stem.split("_", 1)[1])


PAGES = {
    "home": st.Page(home, title="Home", icon=":material/home:", default=True),
    "features": page("views/1_Feature_maps.py", "Feature maps", ":material/image_search:"),
    "weights": page("views/2_Weight_statistics.py", "Weight statistics", ":material/grid_on:"),
    "dynamics": page("views/3_Training_dynamics.py", "Training dynamics", ":material/timeline:"),
    "dataset": page("views/4_Dataset.py", "Dataset", ":material/dataset:"),
}
navigation = st.navigation(list(PAGES.values()))
ui.page_setup(PAGES, follow=navigation.title != "Home")  # Home's live part follows runs itself
navigation.run()

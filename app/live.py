"""Following a training run in the app: progress bars, stopped runs, and parts that refresh.

While a run is going, the live parts are Streamlit fragments with ``run_every``: only they rerun,
every ``REFRESH_S`` seconds, reading ``progress.json`` and the store's stamps (JSON and file
sizes, never a tensor). When no run is going they are plain fragments that do not rerun; when the
last run ends, one rerun of the page turns the refresh off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import cache
import streamlit as st

from fxcore.store.progress import STOPPED, Progress, duration, live_state, read_progress
from fxcore.store.runs import Experiment, common_epochs

REFRESH_S = 3.0
RECENT_S = 3600.0  # a run that finished this recently gets a line on Home


def states(exps: Sequence[Experiment]) -> dict[str, tuple[str, Progress]]:
    """Experiment name -> (live state, progress) for the experiments that have progress.json."""
    out = {}
    for exp in exps:
        p = read_progress(exp.path)
        if p is not None:
            out[exp.name] = (live_state(p), p)
    return out


def running(exps: Sequence[Experiment]) -> bool:
    return any(s == "running" for s, _ in states(exps).values())


def follow(draw: Callable[[], bool], key: str, going: bool) -> None:
    """Draw ``draw()`` in a fragment that reruns every few seconds while ``going``.

    ``draw`` returns whether a run is still going; when that changes, the whole page reruns once
    so the fragment is set up again with (or without) its timer.
    """

    def body(was_going: bool) -> None:
        if draw() != was_going:
            st.rerun()

    st.fragment(body, run_every=REFRESH_S if going else None, key=key)(going)


def progress_panel(exps: Sequence[Experiment]) -> bool:
    """A progress bar per running experiment; stopped ones with their ``--resume`` command.

    Returns whether any experiment is running.
    """
    going = False
    for name, (state, p) in states(exps).items():
        if state == "running":
            going = True
            where = f"batch {p.batch}/{p.batches}" if p.phase == "training" else p.phase
            saved = f"epochs 0..{p.done} saved" if p.done >= 0 else "no epoch saved yet"
            st.progress(
                p.fraction,
                text=f"**{name}** is training: epoch {p.epoch}/{p.epochs} ({where}), {saved}",
            )
            speed = f"{p.images_per_s:,.0f} images/s" if p.images_per_s else "measuring speed"
            st.caption(f"{speed} · ETA {duration(p.eta_s)} · {p.host} pid {p.pid}")
        elif state in STOPPED:
            why = {
                "interrupted": "interrupted (Ctrl-C)",
                "failed": f"failed: {p.error}",
                "stale": "the trainer stopped reporting (killed?)",
            }[state]
            st.warning(
                f"**{name}** stopped at epoch {max(p.done, 0)} of {p.epochs}: {why}. "
                "Continue it with:",
                icon=":material/pause_circle:",
            )
            st.code(p.command, language="bash")
        elif state == "finished" and time.time() - p.updated < RECENT_S:
            st.caption(
                f":material/check_circle: **{name}** finished: epochs 0..{p.done} saved, "
                f"{duration(time.time() - p.updated)} ago"
            )
    return going


def sidebar_follow(name: str | None, epochs: Sequence[int]) -> None:
    """In the sidebar of every page: the picked experiment's progress while it trains.

    When it saves a new epoch the page reruns once, so its epoch pickers offer it (widget state is
    kept: their keys do not change).
    """
    exp = cache.experiment(name)
    if exp is None or read_progress(exp.path) is None:
        return
    drawn = tuple(epochs)

    def draw() -> bool:
        fresh = cache.experiment(name)
        if fresh is None:
            return False
        state, p = states([fresh]).get(fresh.name, ("", None))
        if p is None or state != "running":
            return False
        st.progress(p.fraction, text=f"Training: epoch {p.epoch}/{p.epochs}")
        if tuple(common_epochs(fresh.runs)) != drawn:
            st.rerun()
        return True

    with st.sidebar:
        follow(draw, "sidebar_follow", running([exp]))

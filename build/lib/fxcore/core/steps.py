"""Progress of a long analysis, counted in steps (one run x epoch of one measure each).

The measures (:func:`fxcore.compare.analysis.cka`, :func:`fxcore.compare.control.accuracy`, ...) call a ``tick``
hook with a label after each step; :class:`Steps` turns those ticks into the library's progress
callback ``progress(done, total, label)``, which the CLI draws as a bar on stderr and the app can
draw as its own. A measure that does not tick (served from the cache, or weights only) moves the count on by
all of its steps at once.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just done)


def quiet(_label: str) -> None:
    """The default tick: nothing is reported."""


class Steps:
    """Counts the steps of a planned piece of work and reports each to ``progress``."""

    def __init__(self, total: int, progress: Progress | None = None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def tick(self, label: str) -> None:
        """One step done."""
        self.done = min(self.total, self.done + 1)
        if self.progress is not None:
            self.progress(self.done, self.total, label)

    def measure(self, steps: int, label: str, run: Callable[[Callable[[str], None]], object]):
        """``run(tick)`` for a measure of ``steps`` steps; when it ticked fewer (served from the
        cache, or fewer epochs than planned) the count moves on to where the measure ends."""
        end = min(self.total, self.done + steps)
        result = run(self.tick)
        if self.done < end:
            self.done = end
            if self.progress is not None:
                self.progress(self.done, self.total, label)
        return result

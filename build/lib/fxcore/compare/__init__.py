"""Every measure against the control, with intervals: the cached calls, the comparison,
its plan and estimate, evaluation, figures, shipping an experiment with its results."""

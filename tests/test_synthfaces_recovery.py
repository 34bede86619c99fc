"""SynthFaces' ground truth recovered by trained models: only what holds over seeds and CPUs.

The Smiling cue lives only in the mouth, the Male cues in brows, ears, sideburns and hair. One
trained model is one draw: another seed or another processor's kernels train another model, and
a single run's attribution can land on either side of any threshold. So the demo's pair is trained
from three seeds and the assertions are those measured to hold, with a margin, in every seed whose
models learned their attribute, on three CPU code paths (AVX-512, AVX2 and the scalar default; the
table is in docs/findings.md, section 2):

- smoothed input x gradient: the Smiling model's mouth share beats the Male model's and the Male
  model's cue share beats the Smiling model's, bootstrap intervals apart, by a factor >= 1.2
  (measured >= 1.5), and it passes the cascading-randomisation check (rank correlation <= 0.28,
  threshold 0.5);
- each model's own attribute is read by a linear probe at classifier.3 at >= 0.9 (measured >= 0.95).

Grad-CAM at any single block is not asserted: it recovered the truth in only some seeds at each
layer, and not at the same layer on different CPUs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fxcore.compare import control as trust
from fxcore.explain.attribution import INPUT_METHOD
from fxcore.store.runs import open_experiment
from fxcore.store.select import pick_runs

LEARNED = 0.85  # validation accuracy from which a model counts as having learned its attribute
EPOCH = 2


def recovery(att: dict, source: str) -> tuple[bool, float]:
    """(intervals apart, weakest of the two share ratios) for one attribution source."""
    sm, ma = att["shares"]["Smiling"][source]["with"], att["shares"]["Male"][source]["with"]
    (sm_mouth,), (ma_mouth,) = sm["mouth"], ma["mouth"]
    (sm_male,), (ma_male,) = sm["Male"], ma["Male"]
    apart = sm_mouth[1] > ma_mouth[2] and ma_male[1] > sm_male[2]
    ratio = min(sm_mouth[0] / max(ma_mouth[0], 1e-12), ma_male[0] / max(sm_male[0], 1e-12))
    return apart, ratio


@pytest.mark.slow
def test_synthfaces_truth_over_seeds(synth_seeds: dict[int, Path]) -> None:
    learned = []
    for seed, path in synth_seeds.items():
        exp = open_experiment(path)
        runs = pick_runs(exp)
        if min(r.metrics()[-1]["val_accuracy"] for r in runs) < LEARNED:
            continue  # a model stuck at the majority class has nothing to attribute
        learned.append(seed)
        att = trust.attribution(exp, runs, n_probe=128, n_resamples=50, epochs=[EPOCH])
        assert att["regions_from"].startswith("per-image ground truth")
        apart, ratio = recovery(att, INPUT_METHOD)
        assert apart and ratio >= 1.2, (seed, ratio, att["shares"])
        for run in ("Smiling", "Male"):
            assert att["sanity"][run][INPUT_METHOD]["passes"], (seed, att["sanity"][run])
        pr = trust.probes(exp, runs, n_probe=200, n_resamples=50, epochs=[EPOCH])
        for run in ("Smiling", "Male"):
            assert pr["runs"][run][run]["classifier.3"][0][0] >= 0.9, (seed, pr["runs"][run])
    # Smiling stays at the majority class for a whole run in some seeds (seed 2 on every CPU
    # measured); the other two learned on each.
    assert len(learned) >= 2, learned

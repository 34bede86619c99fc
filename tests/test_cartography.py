"""Dataset cartography: confidence, variability, regions and the two tasks' disagreements."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from fxcore.core.errors import FxcoreError
from fxcore.measures.cartography import (
    CartographyMap,
    cartography,
    cartography_stats,
    disagreements,
    regions,
    true_label_probability,
)
from fxcore.store.runs import load_experiment

# Four images over four epochs: learnt at once, never learnt, flipping, learnt late.
PROB = np.array(
    [
        [0.9, 0.1, 0.1, 0.2],
        [0.95, 0.1, 0.9, 0.3],
        [0.95, 0.05, 0.1, 0.8],
        [0.99, 0.05, 0.9, 0.9],
    ]
)


def test_stats_of_hand_made_curves() -> None:
    s = cartography_stats(PROB, ambiguous_share=0.25)
    np.testing.assert_allclose(s["confidence"], PROB.mean(0))
    np.testing.assert_allclose(s["variability"], PROB.std(0))
    assert s["correctness"] == [1.0, 0.0, 0.5, 0.5]
    assert s["region"] == ["easy", "hard", "ambiguous", "easy"]  # late: mean 0.55
    json.dumps(s)
    with pytest.raises(FxcoreError):
        cartography_stats(np.ones(3))


def test_regions_take_the_most_variable_share_as_ambiguous() -> None:
    conf = np.array([0.9, 0.2, 0.6, 0.4, 0.7, 0.1])
    var = np.array([0.0, 0.01, 0.3, 0.25, 0.02, 0.03])
    assert regions(conf, var, 1 / 3) == ["easy", "hard", "ambiguous", "ambiguous", "easy", "hard"]
    assert regions(conf, var, 0.0).count("ambiguous") == 0


def test_disagreements_list_images_easy_for_one_task_and_hard_for_the_other() -> None:
    a = {"confidence": [0.9, 0.8, 0.2, 0.5], "region": ["easy", "easy", "hard", "ambiguous"]}
    b = {"confidence": [0.1, 0.4, 0.9, 0.5], "region": ["hard", "hard", "easy", "ambiguous"]}
    assert disagreements(a, b) == {"easy_a_hard_b": [0, 1], "easy_b_hard_a": [2]}
    assert disagreements(a, b, top=1)["easy_a_hard_b"] == [0]


def test_true_label_probability_for_one_logit_and_for_classes() -> None:
    x = torch.zeros(3, 2)
    one = nn.Linear(2, 1)
    nn.init.zeros_(one.weight)
    nn.init.constant_(one.bias, np.log(3.0))  # sigmoid = 0.75
    np.testing.assert_allclose(
        true_label_probability(one, x, np.array([1, 0, 1])), [0.75, 0.25, 0.75], rtol=1e-6
    )
    many = nn.Linear(2, 3)
    nn.init.zeros_(many.weight)
    with torch.no_grad():
        many.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    np.testing.assert_allclose(
        true_label_probability(many, x, np.array([0, 1, 2])), [0.2, 0.3, 0.5], rtol=1e-6
    )


def test_cartography_of_the_tiny_pair(tiny_root) -> None:
    exp = load_experiment(tiny_root / "tiny-synth")
    m = cartography(exp, n_probe=16)
    assert m.runs == [r.name for r in exp.runs[:2]] and m.epochs == [1, 2, 3]
    for run in m.runs:
        assert np.asarray(m.prob[run]).shape == (3, 16)
        assert sum(m.counts(run).values()) == 16
        assert all(0 <= c <= 1 for c in m.stats[run]["confidence"])
    assert set(m.disagree) == {"easy_a_hard_b", "easy_b_hard_a"}
    assert m.attributes == {r.name: r.attribute for r in exp.runs[:2]}
    assert CartographyMap.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert cartography(exp, n_probe=16) == m

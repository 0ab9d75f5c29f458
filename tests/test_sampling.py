"""gamma-weighted sampling of corrected ("hard") and pseudo-labelled ("easy") patches."""

import numpy as np
import pytest

from csrefiner.errors import CsrefinerError
from csrefiner.hitl.sampling import DEFAULT_GAMMA, sample_weights, sampling_record, weighted_order

GROUPS = ["hard"] * 4 + ["easy"] * 16


def test_weights_follow_the_formula_and_its_limits():
    w = sample_weights(GROUPS)
    n, n_hard, n_easy, g = 20, 4, 16, DEFAULT_GAMMA
    assert w[0] == pytest.approx(n / (g * n_hard + (1 - g) * n))
    assert w[-1] == pytest.approx(n / (g * n_easy + (1 - g) * n))
    assert np.allclose(sample_weights(GROUPS, gamma=0.0), 1.0)  # gamma 0: every patch alike
    balanced = sample_weights(GROUPS, gamma=1.0)
    assert balanced[:4].sum() == pytest.approx(balanced[4:].sum())  # gamma 1: both classes the same total weight


def test_seeded_order_matches_the_recorded_shares():
    record = sampling_record(GROUPS, 0.85)
    assert record["gamma"] == 0.85 and record["counts"] == {"easy": 16, "hard": 4}
    order = weighted_order(sample_weights(GROUPS, 0.85), 20_000, seed=3)
    hard_share = np.isin(order, np.arange(4)).mean()
    assert hard_share == pytest.approx(record["expected_share"]["hard"], abs=0.015)
    assert 0.2 < hard_share < 0.5  # 4 of 20 patches, drawn far more often than 1 in 5
    assert np.array_equal(order, weighted_order(sample_weights(GROUPS, 0.85), 20_000, seed=3))
    assert not np.array_equal(order, weighted_order(sample_weights(GROUPS, 0.85), 20_000, seed=4))


def test_bad_gamma_and_weights_are_refused():
    with pytest.raises(CsrefinerError, match="gamma"):
        sample_weights(GROUPS, gamma=1.5)
    with pytest.raises(CsrefinerError):
        weighted_order([0.0, 0.0], 5, seed=0)
    with pytest.raises(CsrefinerError):
        sample_weights([])

"""`seeded`: repeatable draws inside, the global random states untouched outside, also after an error."""

from __future__ import annotations

import random

import numpy as np
import pytest

from csrefiner.models.seeding import seeded


def _draws() -> tuple:
    return random.random(), tuple(np.random.rand(3))


def test_draws_inside_repeat_for_the_same_seed():
    with seeded(42):
        first = _draws()
    with seeded(42):
        assert _draws() == first
    with seeded(43):
        assert _draws() != first


def test_states_are_restored_after_an_exception():
    random.seed(7)
    np.random.seed(7)
    expected = _draws()
    random.seed(7)
    np.random.seed(7)
    with pytest.raises(ValueError), seeded(1):
        _draws()
        raise ValueError("inside")
    assert _draws() == expected


def test_torch_state_is_restored_when_torch_is_loaded():
    torch = pytest.importorskip("torch")
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with pytest.raises(ValueError), seeded(1):
        inside = torch.rand(3)
        raise ValueError("inside")
    assert torch.equal(torch.rand(3), expected)
    assert not torch.equal(inside, expected)

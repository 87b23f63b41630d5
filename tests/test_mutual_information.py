"""Standard error of the ratio of two paired MI estimates."""

import math

import numpy as np
import pytest
import torch

from mimmu.errors import MimmuError
from mimmu.mutual_information import paired_ratio_stderr


def test_ratio_stderr_matches_simulation():
    # Correlated pairs, like an erased and a base model's estimates on the same rows.
    rng = np.random.default_rng(0)
    ratios, predicted = [], []
    for _ in range(4000):
        base = rng.normal(5.0, 1.0, size=64)
        erased = 0.1 * base + rng.normal(0.0, 0.2, size=64)
        ratios.append(erased.mean() / base.mean())
        predicted.append(paired_ratio_stderr(torch.from_numpy(erased), torch.from_numpy(base)))
    assert abs(np.mean(predicted) - np.std(ratios)) / np.std(ratios) < 0.05


def test_ratio_stderr_counts_correlation():
    # Exactly proportional pairs: the ratio cannot vary. Treating the estimates as independent would give 0.004.
    base = torch.linspace(3.0, 7.0, 64, dtype=torch.float64)
    assert paired_ratio_stderr(0.1 * base, base) == pytest.approx(0.0, abs=1e-12)


def test_ratio_stderr_needs_two_rows():
    assert math.isnan(paired_ratio_stderr(torch.tensor([1.0]), torch.tensor([2.0])))


def test_ratio_stderr_zero_denominator_nan():
    assert math.isnan(paired_ratio_stderr(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -1.0])))


def test_ratio_stderr_rejects_unpaired_shapes():
    with pytest.raises(MimmuError, match="same rows"):
        paired_ratio_stderr(torch.ones(4), torch.ones(5))

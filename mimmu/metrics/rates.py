"""Rates of the erased concept: target rate, UA, chance rate and EE, with binomial standard errors."""

from __future__ import annotations

import math

import numpy as np


def binomial_stderr(rate: float, count: int) -> float:
    """Return sqrt(p (1 - p) / n), the standard error of a rate measured on `count` samples."""
    return math.sqrt(rate * (1.0 - rate) / count) if count else float("nan")


def paired_drop_stderr(hits_before: np.ndarray, hits_after: np.ndarray) -> float:
    """Return the standard error of mean(hits_before - hits_after) over paired images.

    hits_before and hits_after (N,) are True where image i of the base (before) or the
    erased model (after) was graded as expected. Row i of both has the same prompt and seed.
    The differences are -1, 0 or 1. Their sample standard deviation over sqrt(N) is the
    error of the accuracy drop: 0 when no image changed its grade, NaN for fewer than two.
    """
    differences = hits_before.astype(np.float64) - hits_after.astype(np.float64)
    if len(differences) < 2:
        return float("nan")
    return float(differences.std(ddof=1) / math.sqrt(len(differences)))


def target_rate(labels: np.ndarray, concept_index: int) -> float:
    """Return the share of images whose label on the concept's attribute is the concept."""
    return float(np.mean(labels == concept_index)) if len(labels) else float("nan")


def erasure_efficacy(rate_base: float, rate_erased: float, chance: float) -> float:
    """Return EE = (rate_base - rate_erased) / (rate_base - chance); 1 means all information gone.

    NaN when the base model draws the concept no more often than chance, since then there
    was nothing measurable to erase.
    """
    gap = rate_base - chance
    return (rate_base - rate_erased) / gap if gap > 1e-9 else float("nan")

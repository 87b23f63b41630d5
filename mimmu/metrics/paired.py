"""Paired preservation: base and erased images of the same prompt and seed, compared one to one."""

from __future__ import annotations

import numpy as np


def paired_psnr_db(base: np.ndarray, erased: np.ndarray) -> float:
    """Return the mean PSNR in dB over pairs of images (N, H, W, 3) in [0, 1]; identical pairs count as 100 dB."""
    errors = ((base.astype(np.float64) - erased.astype(np.float64)) ** 2).reshape(len(base), -1).mean(axis=1)
    psnr = np.where(errors > 1e-10, 10.0 * np.log10(1.0 / np.maximum(errors, 1e-10)), 100.0)
    return float(psnr.mean())


def labels_unchanged(base_labels: dict[str, np.ndarray], erased_labels: dict[str, np.ndarray]) -> float:
    """Return the share of pairs whose labels agree on every attribute."""
    same = np.ones(len(next(iter(base_labels.values()))), dtype=bool)
    for name, values in base_labels.items():
        same &= values == erased_labels[name]
    return float(same.mean()) if len(same) else float("nan")

"""Frechet distance between two sets of features (the FID formula on evaluator features)."""

from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Return ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) for features (N, F).

    Formula of Heusel et al. (NeurIPS 2017); the matrix square root comes from scipy.
    """
    mu1, mu2 = first.mean(axis=0), second.mean(axis=0)
    sigma1 = np.cov(first, rowvar=False)
    sigma2 = np.cov(second, rowvar=False)
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2.0 * covmean))

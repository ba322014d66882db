"""Frechet Inception Distance (Heusel et al. 2017) with TTUR / pytorch-fid numerics.

FID = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
Statistics are float64 with np.cov's N-1 normalisation; the matrix square root is
`scipy.linalg.sqrtm(S_1 S_2, disp=False)`; when it is not finite the product is retried with
eps * I added to both covariances; the real part is kept.
"""
import logging
import warnings

import numpy as np
import scipy.linalg

_CHUNK = 4096


def feature_statistics(features):
    """(mu, sigma) of [N, D] features in float64; sigma equals np.cov(features, rowvar=False).

    Two passes over row chunks (mean, then centred cross products) so that 50k x 2048 float32
    features never need a full float64 copy.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
    mu = np.zeros(d, np.float64)
    for i in range(0, n, _CHUNK):
        mu += x[i:i + _CHUNK].astype(np.float64).sum(axis=0)
    mu /= n
    sigma = np.zeros((d, d), np.float64)
    for i in range(0, n, _CHUNK):
        c = x[i:i + _CHUNK].astype(np.float64) - mu
        sigma += c.T @ c
    sigma /= n - 1
    return mu, sigma


def _sqrtm(matrix):
    """scipy.linalg.sqrtm(matrix, disp=False)[0], as TTUR / pytorch-fid call it (newer SciPy warns about
    `disp`; the result is the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return scipy.linalg.sqrtm(matrix, disp=False)[0]


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """FID between N(mu1, sigma1) and N(mu2, sigma2), as a Python float."""
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}, "
                         f"{sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        logging.warning("FID: sqrtm(S1 S2) is singular; adding %g to the covariance diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag)) if covmean.size else 0.0
        if imag > 1e-3:
            logging.warning("FID: sqrtm has an imaginary component of %.3g; keeping the real part", imag)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1, features2):
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))

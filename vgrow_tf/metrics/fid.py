"""Frechet Inception Distance (Heusel et al. 2017) with TTUR / pytorch-fid numerics.

FID = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
Statistics are float64 with np.cov's N-1 normalisation. Only the trace of the square root enters, and
S_1 S_2 is similar to the symmetric positive semi-definite R S_2 R, R = S_1^(1/2) (both symmetric): so
Tr (S_1 S_2)^(1/2) = sum sqrt(eigenvalues of R S_2 R), from two `eigh` calls (about 4x less CPU than
`scipy.linalg.sqrtm` at 2048 x 2048, see benchmarks/metrics_speed.py, and well defined for the singular
covariances of fewer samples than dimensions). `trace_sqrt_product_sqrtm` keeps TTUR / pytorch-fid's
formula (`sqrtm(S_1 S_2, disp=False)`, retried with eps * I added to both covariances when not finite,
real part kept) as the reference the tests compare with: they agree to 1e-6 relative.
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


def trace_sqrt_product(sigma1, sigma2):
    """Tr (sigma1 sigma2)^(1/2) for symmetric positive semi-definite sigma1, sigma2, via eigenvalues.

    Eigenvalues that rounding makes slightly negative (singular covariances) count as 0."""
    w, u = np.linalg.eigh(sigma1)
    root = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
    product = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)  # symmetric up to rounding
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def _sqrtm(matrix):
    """scipy.linalg.sqrtm(matrix, disp=False)[0], as TTUR / pytorch-fid call it (newer SciPy warns about
    `disp`; the result is the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return scipy.linalg.sqrtm(matrix, disp=False)[0]


def trace_sqrt_product_sqrtm(sigma1, sigma2, eps=1e-6):
    """The reference: Tr sqrtm(sigma1 sigma2) as TTUR / pytorch-fid compute it (slow: minutes at 2048)."""
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
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh"):
    """FID between N(mu1, sigma1) and N(mu2, sigma2), as a Python float. method: "eigh" (fast) or
    "sqrtm" (the reference formula)."""
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}, "
                         f"{sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    trace_root = {"eigh": trace_sqrt_product, "sqrtm": trace_sqrt_product_sqrtm}[method](sigma1, sigma2)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)


def fid_from_features(features1, features2):
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))

"""Improved precision and recall (Kynkaanniemi et al. 2019), batched as in StyleGAN2-ADA.

The radius of each point of a manifold is the distance to its k-th nearest neighbour in the same set
(the (k+1)-th smallest distance, since the distance to itself, 0, is counted). precision = share of
fakes inside at least one real ball (distance <= radius); recall = the same with the roles swapped.
"""
import numpy as np


def _pairwise_distances(a, b):
    """Euclidean distances [len(a), len(b)] in float64 (clipped at 0 before the root)."""
    aa = np.sum(a * a, axis=1)[:, None]
    bb = np.sum(b * b, axis=1)[None, :]
    return np.sqrt(np.maximum(aa + bb - 2.0 * (a @ b.T), 0.0))


def knn_radii(features, k=3, batch_size=10000):
    x = np.asarray(features, np.float64)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {len(x)}")
    radii = np.empty(len(x))
    for i in range(0, len(x), batch_size):
        d = _pairwise_distances(x[i:i + batch_size], x)
        radii[i:i + batch_size] = np.partition(d, k, axis=1)[:, k]
    return radii


def coverage_fraction(manifold, radii, probes, batch_size=10000):
    """Share of `probes` within distance <= radius of at least one point of `manifold`."""
    manifold = np.asarray(manifold, np.float64)
    probes = np.asarray(probes, np.float64)
    inside = np.zeros(len(probes), bool)
    for i in range(0, len(probes), batch_size):
        for j in range(0, len(manifold), batch_size):
            d = _pairwise_distances(probes[i:i + batch_size], manifold[j:j + batch_size])
            inside[i:i + batch_size] |= np.any(d <= radii[None, j:j + batch_size], axis=1)
    return float(np.mean(inside))


def precision_recall(real_features, fake_features, k=3, batch_size=10000):
    real = np.asarray(real_features, np.float64).reshape(len(real_features), -1)
    fake = np.asarray(fake_features, np.float64).reshape(len(fake_features), -1)
    precision = coverage_fraction(real, knn_radii(real, k, batch_size), fake, batch_size)
    recall = coverage_fraction(fake, knn_radii(fake, k, batch_size), real, batch_size)
    return precision, recall

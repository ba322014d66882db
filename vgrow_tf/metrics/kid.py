"""Kernel Inception Distance (Binkowski et al. 2018) as StyleGAN2-ADA and clean-fid compute it.

Kernel k(x, y) = (x.y / d + 1)^3. The unbiased MMD^2 estimate is averaged over `num_subsets`
subsets of m = min(max_subset_size, n_real, n_fake) rows of each set, drawn without replacement.
"""
import numpy as np


def polynomial_kernel(x, y):
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def kernel_inception_distance(real_features, fake_features, num_subsets=100, max_subset_size=1000, seed=0):
    real = np.asarray(real_features, np.float64).reshape(len(real_features), -1)
    fake = np.asarray(fake_features, np.float64).reshape(len(fake_features), -1)
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples of each set, got {len(real)} and {len(fake)}")
    rng = np.random.RandomState(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        a = polynomial_kernel(x, x) + polynomial_kernel(y, y)
        b = polynomial_kernel(x, y)
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)

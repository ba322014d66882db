"""Metric numerics against direct / closed-form computations (no networks, no TensorFlow)."""
import numpy as np
import pytest
import scipy.linalg

from vgrow_tf.errors import UserError
from vgrow_tf.metrics import fid, inception_score, kid, precision_recall, registry


def _direct_fid(a, b):
    """Independent TTUR-style computation straight from numpy/scipy."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * root)


def test_statistics_match_numpy_cov():
    x = np.random.RandomState(0).randn(300, 7).astype(np.float32) * 3 + 1
    mu, sigma = fid.feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)


def test_fid_matches_direct_scipy_on_random_features():
    rng = np.random.RandomState(1)
    a = rng.randn(400, 16)
    b = rng.randn(500, 16) @ rng.randn(16, 16) * 0.5 + 0.3
    assert fid.fid_from_features(a, b) == pytest.approx(_direct_fid(a, b), rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero():
    a = np.random.RandomState(2).randn(200, 10)
    assert abs(fid.fid_from_features(a, a)) < 1e-6


def test_fid_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_fid_equal_covariances_gives_squared_mean_distance():
    s = np.random.RandomState(3).randn(5, 5)
    sigma = s @ s.T + np.eye(5)
    mu1, mu2 = np.arange(5.0), np.ones(5)
    assert fid.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-6)


def test_fid_singular_covariances_stay_finite():
    """Rank-deficient covariances (N < D) go through the eps retry and give a finite real number."""
    rng = np.random.RandomState(4)
    a, b = rng.randn(5, 20), rng.randn(5, 20)
    value = fid.fid_from_features(a, b)
    assert np.isfinite(value) and isinstance(value, float)


def _relu_features(rng, n, d, shift):
    """Post-ReLU features with a decaying spectrum, like a network's pooled features: ill-conditioned,
    and singular (rank < d) when n <= d."""
    mixing = rng.randn(d, d) * np.exp(-np.arange(d) / 8.0)
    return np.maximum((rng.randn(n, d) + shift) @ mixing.T, 0.0)


@pytest.mark.parametrize("n1, n2, d", [(400, 500, 64), (40, 50, 64), (10, 300, 96), (150, 120, 128)])
def test_fid_eigh_agrees_with_the_sqrtm_reference(n1, n2, d):
    """The eigenvalue trace against TTUR / pytorch-fid's scipy.linalg.sqrtm formula (with its eps retry),
    also on rank-deficient covariances (fewer samples than dimensions)."""
    rng = np.random.RandomState(n1 + d)
    stats = [fid.feature_statistics(_relu_features(rng, n, d, shift)) for n, shift in ((n1, 0.0), (n2, 0.3))]
    fast = fid.frechet_distance(*stats[0], *stats[1])
    reference = fid.frechet_distance(*stats[0], *stats[1], method="sqrtm")
    assert fast == pytest.approx(reference, rel=1e-6)
    sigma1, sigma2 = stats[0][1], stats[1][1]
    assert fid.trace_sqrt_product(sigma1, sigma2) == pytest.approx(
        np.trace(scipy.linalg.sqrtm(sigma1 @ sigma2).real), rel=1e-6)


def test_fid_eigh_agrees_on_random_positive_definite_covariances():
    rng = np.random.RandomState(5)
    for d in (2, 17, 64):
        a, b = rng.randn(d, d), rng.randn(d, 2 * d)
        sigma1, sigma2 = a @ a.T + 0.1 * np.eye(d), b @ b.T / (2 * d)
        mu1, mu2 = rng.randn(d), rng.randn(d)
        assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
            fid.frechet_distance(mu1, sigma1, mu2, sigma2, method="sqrtm"), rel=1e-6)


def _brute_kid(real, fake, subsets, m, seed):
    """Unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3 from explicit double loops over index pairs."""
    rng = np.random.RandomState(seed)
    d = real.shape[1]
    k = lambda x, y: (x @ y / d + 1) ** 3  # noqa: E731
    total = 0.0
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        total += kxx + kyy - 2 * kxy
    return total / subsets


def test_kid_matches_brute_force():
    rng = np.random.RandomState(5)
    real, fake = rng.randn(30, 6), rng.randn(25, 6) + 0.5
    got = kid.kernel_inception_distance(real, fake, num_subsets=4, max_subset_size=12, seed=7)
    assert got == pytest.approx(_brute_kid(real, fake, 4, 12, 7), rel=1e-10)


def test_kid_of_same_distribution_is_near_zero_and_shift_is_positive():
    rng = np.random.RandomState(6)
    a, b = rng.randn(400, 8), rng.randn(400, 8)
    same = kid.kernel_inception_distance(a, b, num_subsets=10, max_subset_size=200)
    shifted = kid.kernel_inception_distance(a, b + 1.0, num_subsets=10, max_subset_size=200)
    assert abs(same) < 0.01 and shifted > 0.1


def test_inception_score_uniform_predictions_is_one():
    mean, std = inception_score.inception_score(np.full((100, 7), 1 / 7), num_splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_balanced_is_number_of_classes():
    probs = np.tile(np.eye(5), (20, 1))  # each split of 10 holds every class twice
    mean, std = inception_score.inception_score(probs, num_splits=10)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_hand_computation():
    rng = np.random.RandomState(8)
    probs = inception_score.softmax(rng.randn(40, 6) * 2)
    scores = []
    for part in np.split(probs, 4):
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(p * np.log(p / py)) for p in part])))
    mean, std = inception_score.inception_score(probs, num_splits=4)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-8)


def test_knn_radius_counts_self_distance():
    x = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    np.testing.assert_allclose(precision_recall.knn_radii(x, k=1), [1, 1, 2, 3, 4])
    np.testing.assert_allclose(precision_recall.knn_radii(x, k=2), [3, 2, 3, 4, 7])


def test_precision_recall_on_constructed_sets():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1 radii are all 1: the real manifold is [-1, 4]
    fake = np.array([[0.5], [3.9], [4.5], [10.0], [10.2]])  # radii .. first two inside, the rest outside
    p, r = precision_recall.precision_recall(real, fake, k=1, batch_size=2)
    assert p == pytest.approx(2 / 5)
    # fake k=1 radii: 0.5 -> 3.4, 3.9 -> 0.6, 4.5 -> 0.6, 10 -> 0.2, 10.2 -> 0.2; reals within a ball:
    # 0 (0.5 + 3.4), 1, 2, 3 (all within 3.4 of 0.5; 3 also within .6 of 3.9)
    assert r == pytest.approx(1.0)
    p2, r2 = precision_recall.precision_recall(real, real + 100.0, k=1)
    assert p2 == 0.0 and r2 == 0.0
    p3, r3 = precision_recall.precision_recall(real, real, k=3)
    assert p3 == 1.0 and r3 == 1.0


def test_registry_parses_counts():
    s = registry.parse_metric("fid50k")
    assert (s.kind, s.num_fakes, s.num_reals, s.cycle_reals, s.full) == ("fid", 50000, 50000, True, False)
    s = registry.parse_metric("fid50k_full")
    assert s.full and s.num_reals is None
    s = registry.parse_metric("pr50k3")
    assert (s.kind, s.num_fakes, s.k) == ("pr", 50000, 3)
    assert registry.parse_metric("pr1k5").k == 5
    assert registry.parse_metric("pr64").num_fakes == 64 and registry.parse_metric("pr64").k == 3
    assert registry.parse_metric("is50k").num_reals == 0
    assert registry.parse_metric("kid500").num_fakes == 500
    s = registry.parse_metric("ppl_wend")
    assert (s.kind, s.space, s.sampling, s.num_fakes) == ("ppl", "w", "end", 50000)
    assert registry.parse_metric("ppl_zfull16").num_fakes == 16
    for bad in ("fidd", "fid50x", "is50k_full", "kid50k3", "ppl_x", "fid1"):
        with pytest.raises(UserError):
            registry.parse_metric(bad)

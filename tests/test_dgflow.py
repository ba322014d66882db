"""DGflow (vgrow_tf.sampling.refine): the update against hand computations, a 2-D toy with an exact
density ratio, and refinement of a tiny snapshot."""
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import divergences, snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.models import vgrow_pg
from vgrow_tf.sampling import latents as latents_lib
from vgrow_tf.sampling import refine


def identity(z):
    return z


@pytest.mark.parametrize("name", ["KL", "JS", "LogD", "Jef"])
def test_one_step_equals_hand_computation_linear_discriminator(name):
    rng = np.random.RandomState(0)
    w, b = rng.randn(3).astype(np.float32), 0.3
    z = rng.randn(5, 3).astype(np.float32)
    xi = rng.randn(5, 3).astype(np.float32)
    eta, gamma = 0.1, 0.01
    new, d = refine.dgflow_step(z, identity, lambda x: tf.linalg.matvec(x, w) + b, eta, gamma, name, xi)
    d_hand = z @ w + b
    s = divergences.s_weight_np(d_hand, name, js_floor=0.0)  # DGflow: JS exactly sigmoid(d)
    expected = z + eta * s[:, None] * w[None] + math.sqrt(2 * eta * gamma) * xi
    np.testing.assert_allclose(d.numpy(), d_hand, rtol=1e-5)
    np.testing.assert_allclose(new.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_s_weights_are_the_papers():
    """KL 1, JS sigmoid(d), LogD sigmoid(-d) (spec glo_scogan_dgflow.md §3.1)."""
    d = np.linspace(-6, 6, 13)
    sig = 1 / (1 + np.exp(-d))
    np.testing.assert_allclose(divergences.s_weight_np(d, "KL"), 1.0)
    np.testing.assert_allclose(divergences.s_weight_np(d, "JS"), sig, rtol=1e-3)  # up to the 1e-6 guard
    np.testing.assert_allclose(divergences.s_weight_np(d, "LogD"), 1 - sig, rtol=1e-6)
    # DGflow's code has no guard: at d = -14 VGrow's 1e-6 would more than double s.
    d = np.array([-14.0, -800.0, 0.5])
    with np.errstate(over="ignore"):
        sigmoid = 1 / (1 + np.exp(-d))
    np.testing.assert_allclose(divergences.s_weight_np(d, "JS", js_floor=0.0), sigmoid, rtol=1e-12)
    assert divergences.s_weight_np(d, "JS")[0] > 2 * divergences.s_weight_np(d, "JS", js_floor=0.0)[0]


def test_one_step_with_a_nonlinear_generator_and_discriminator():
    """G(z) = tanh(A z), d(x) = -|x - m|^2 / 2: grad_z d = A^T ((m - x) * (1 - x^2))."""
    rng = np.random.RandomState(1)
    A = rng.randn(4, 2).astype(np.float32)
    m = rng.randn(4).astype(np.float32) * 0.3
    z = rng.randn(6, 2).astype(np.float32)
    xi = rng.randn(6, 2).astype(np.float32)
    g = lambda z: tf.tanh(tf.matmul(z, A, transpose_b=True))  # noqa: E731
    dfn = lambda x: -0.5 * tf.reduce_sum(tf.square(x - m), axis=1)  # noqa: E731
    new, _ = refine.dgflow_step(z, g, dfn, 0.05, 0.02, "JS", xi)
    x = np.tanh(z @ A.T)
    d = -0.5 * np.sum((x - m) ** 2, axis=1)
    grad = ((m - x) * (1 - x ** 2)) @ A
    expected = z + 0.05 * divergences.s_weight_np(d, "JS", js_floor=0.0)[:, None] * grad + math.sqrt(2 * 0.05 * 0.02) * xi
    np.testing.assert_allclose(new.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_noise_is_one_stream_per_latent_and_independent_of_grouping():
    z = np.zeros([7, 3], np.float32)
    flat = lambda x: 0.0 * tf.reduce_sum(x, axis=1)  # noqa: E731 - zero gradient: only the noise moves z
    a, _ = refine.refine_latents(z, identity, flat, eta=0.1, gamma=0.5, steps=2, seed=3, group_size=2)
    b, _ = refine.refine_latents(z, identity, flat, eta=0.1, gamma=0.5, steps=2, seed=3, group_size=100)
    np.testing.assert_array_equal(a[2], b[2])
    expected = [math.sqrt(2 * 0.1 * 0.5) * np.random.default_rng([3, i]).standard_normal((2, 3)).sum(axis=0)
                for i in range(7)]
    np.testing.assert_allclose(a[2], expected, rtol=1e-5, atol=1e-6)
    c, _ = refine.refine_latents(z[4:], identity, flat, eta=0.1, gamma=0.5, steps=2, seed=3, noise_keys=[4, 5, 6])
    np.testing.assert_array_equal(c[2], a[2][4:])  # the key, not the row, picks the stream
    assert sorted(a) == [0, 2]  # step 0 and the last step (save_every 5 > steps)


def test_gamma_zero_kl_is_plain_gradient_ascent():
    rng = np.random.RandomState(2)
    w = rng.randn(3).astype(np.float32)
    dfn = lambda x: tf.reduce_sum(tf.sin(x) * w, axis=1)  # noqa: E731
    z0 = rng.randn(4, 3).astype(np.float32)
    saved, _ = refine.refine_latents(z0, identity, dfn, eta=0.2, gamma=0.0, steps=3, save_every=3)
    z = z0.astype(np.float64)
    for _ in range(3):
        z = z + 0.2 * np.cos(z) * w
    np.testing.assert_allclose(saved[3], z, rtol=1e-5, atol=1e-5)


# --- a 2-D toy with an exactly known density ratio ----------------------------------------------------

CENTRES = np.array([[2.0, 0.0], [-2.0, 0.0]], np.float32)
SD = 0.5


def _log_p(x):
    """Data: an equal mixture of N(+-2 e1, 0.5^2 I)."""
    sq = tf.reduce_sum(tf.square(x[:, None, :] - CENTRES[None]), axis=2)
    return tf.reduce_logsumexp(-sq / (2 * SD ** 2), axis=1) - math.log(2) - math.log(2 * math.pi * SD ** 2)


def _log_q(x):
    """Generator: N(0, I) (G is the identity on z)."""
    return -0.5 * tf.reduce_sum(tf.square(x), axis=1) - math.log(2 * math.pi)


def _energy_distance(x, y):
    def mean_dist(a, b):
        return np.mean(np.linalg.norm(a[:, None] - b[None], axis=2))
    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


@pytest.mark.parametrize("name", ["KL", "JS", "LogD"])
def test_toy_flow_moves_samples_toward_the_data(name):
    rng = np.random.RandomState(0)
    data = CENTRES[rng.randint(0, 2, 400)] + SD * rng.randn(400, 2)
    z = rng.randn(400, 2).astype(np.float32)
    logit = lambda x: _log_p(x) - _log_q(x)  # noqa: E731 - the exact log density ratio
    # the ratio is stale (fixed at the initial generator), so the flow is a short-time method: with a
    # large eta * steps the particles overshoot the modes (KL at eta 0.05 turns back after ~5 steps)
    saved, logits = refine.refine_latents(z, identity, logit, eta=0.01, gamma=0.01, steps=20, divergence=name,
                                          save_every=5, seed=1, group_size=400)
    dist = [_energy_distance(saved[s], data) for s in sorted(saved)]
    assert all(b < a for a, b in zip(dist, dist[1:])), dist
    assert dist[-1] < 0.85 * dist[0], dist
    means = [float(np.mean(logits[s])) for s in sorted(saved)]
    assert means[-1] > means[0]


# --- snapshots ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg():
    keras.utils.set_random_seed(1)
    config = vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8)
    nets = vgrow_pg.build_networks(config)
    return snapshot.Snapshot("pg.h5", vgrow_pg.KIND, config, nets, {}, vgrow_pg)


def test_refinement_with_gamma_zero_raises_the_mean_logit(pg):
    z = np.random.RandomState(0).randn(8, 8).astype(np.float32)
    saved, logits = refine.refine_snapshot(pg, z, eta=0.05, gamma=0.0, steps=10, save_every=5)
    assert sorted(saved) == [0, 5, 10]
    means = [float(np.mean(logits[s])) for s in (0, 5, 10)]
    assert means[0] < means[1] < means[2], means
    np.testing.assert_allclose(logits[0], np.reshape(pg.discriminator_logit(pg.generate(z)), [-1]), rtol=1e-4,
                               atol=1e-5)


FLOW = dict(eta=0.05, gamma=0.01, steps=3, save_every=3, seed=5)


def test_minibatch_stddev_makes_refinement_depend_on_the_batch(pg):
    """Why groups exist: VGrow-PG's D mixes the batch, so the same latents move differently with others."""
    z = np.random.RandomState(0).randn(8, 8).astype(np.float32)
    alone, _ = refine.refine_snapshot(pg, z[:4], group_size=4, **FLOW)
    together, _ = refine.refine_snapshot(pg, z, group_size=8, **FLOW)
    assert np.max(np.abs(alone[3] - together[3][:4])) > 1e-4


def test_a_seed_refines_the_same_whatever_else_is_generated(pg):
    few, few_logits = refine.refine_seeds(pg, [0, 1, 2, 3], group_size=4, **FLOW)
    many, many_logits = refine.refine_seeds(pg, list(range(12)), group_size=4, **FLOW)
    scattered, _ = refine.refine_seeds(pg, [9, 2], group_size=4, **FLOW)  # completes groups {0..3}, {8..11}
    np.testing.assert_array_equal(few[3], many[3][:4])
    np.testing.assert_array_equal(few_logits[3], many_logits[3][:4])
    np.testing.assert_array_equal(scattered[3], many[3][[9, 2]])
    np.testing.assert_array_equal(few[0], latents_lib.latents_for_seeds(pg, [0, 1, 2, 3]))
    other, _ = refine.refine_seeds(pg, [0, 1, 2, 3], group_size=8, **FLOW)  # documented: another batch differs
    assert np.max(np.abs(other[3] - few[3])) > 1e-4


def test_a_stream_refines_its_first_rows_the_same_whatever_the_count(pg):
    sampler = latents_lib.LatentSampler(pg)
    short = refine.refine_stream(pg, sampler, 5, 7, group_size=4, **{k: v for k, v in FLOW.items() if k != "seed"})
    long = refine.refine_stream(pg, sampler, 12, 7, group_size=4, **{k: v for k, v in FLOW.items() if k != "seed"})
    assert short.shape == (5, 8)
    np.testing.assert_array_equal(short, long[:5])


def test_snapshot_without_a_discriminator_points_to_the_corrector(pg):
    no_d = snapshot.Snapshot("g.h5", "vgrow_pg", pg.config, {"Gs": pg.networks["Gs"]}, {}, vgrow_pg)
    with pytest.raises(UserError, match="--corrector"):
        refine.refine_snapshot(no_d, np.zeros([2, 8], np.float32), steps=1)


def test_bad_flow_parameters(pg):
    z = np.zeros([2, 8], np.float32)
    for kw in (dict(eta=0.0), dict(gamma=-1.0), dict(steps=-1), dict(divergence="Hellinger"), dict(group_size=0)):
        with pytest.raises(UserError):
            refine.refine_snapshot(pg, z, **kw)


# --- the density-ratio corrector ----------------------------------------------------------------------

def test_corrector_trains_and_refines_a_generator_without_discriminator(tmp_path):
    from vgrow_tf.data import tool
    from vgrow_tf.models import glo
    from vgrow_tf.sampling import corrector, modes
    from vgrow_tf.training import loop
    from vgrow_tf.training.options import make_options

    data = str(tmp_path / "digits8")
    tool.create_digits(data, resolution=8)
    keras.utils.set_random_seed(4)
    gconf = glo.make_config(8, 1, z_dim=4, fmaps=8, num_latents=10)
    table = np.random.RandomState(0).randn(10, 4).astype(np.float32)
    gpath = str(tmp_path / "glo.h5")
    snapshot.save(gpath, "glo", gconf, glo.build_networks(gconf), {"latents": table})
    pconf = vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8)
    dpath = str(tmp_path / "pg.h5")
    snapshot.save(dpath, "vgrow_pg", pconf, vgrow_pg.build_networks(pconf))

    options = make_options("dgflow_corrector", dataset=data, generator_snapshot=gpath, discriminator_snapshot=dpath,
                           corrector_fmaps=8, batch_size=16, total_nimg=320, tick_kimg=0.16, snapshot_kimg=0.32,
                           run_dir=str(tmp_path / "run"), learning_rate=1e-2)
    run_dir = loop.train(options)
    cpath = os.path.join(run_dir, "network-final.h5")
    corr = snapshot.load(cpath, expect_kind="dgflow_corrector")
    assert corr.config["discriminator_snapshot"] == os.path.abspath(dpath)

    gen, base = snapshot.load(gpath), snapshot.load(dpath)
    logit = corrector.logit_function(corr)
    x = gen.generate(table[:4])
    c_only = corrector.corrector_logit(corr.networks, corr.config, x).numpy()
    assert np.any(c_only != 0)  # C has learned something (it starts at exactly zero)
    np.testing.assert_allclose(logit(x).numpy(), np.reshape(base.discriminator_logit(x), [-1]) + c_only,
                               rtol=1e-4, atol=1e-5)
    # refinement through the corrector (GLO has no D of its own)
    paths = modes.save_samples(gen, str(tmp_path / "out"), [0, 1],
                               refine=dict(corrector=corr, steps=2, save_every=1, gamma=0.0))
    assert any(p.endswith(os.path.join("dgflow-step02", "seed0001.png")) for p in paths)
    # a wrong-kind or missing base is a clear error
    with pytest.raises(UserError):
        corrector.load_base(gpath)


def test_corrector_bce_loss_by_hand():
    from vgrow_tf.sampling import corrector
    r, f = np.array([0.5, -1.0], np.float32), np.array([2.0, 0.0], np.float32)
    expected = np.mean(np.log1p(np.exp(-r))) + np.mean(np.log1p(np.exp(f)))
    np.testing.assert_allclose(float(corrector.bce_loss(r, f)), expected, rtol=1e-5)

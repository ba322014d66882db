"""GLO: projections, PCA init, the sparse latent step, losses against numpy, evaluation, snapshots, resume."""
import glob
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import losses, snapshot
from vgrow_tf.models import glo
from vgrow_tf.sampling import glo_eval
from vgrow_tf.training import loop
from vgrow_tf.training.options import make_options

TINY = dict(batch_size=32, fmaps=8, z_dim=8, holdout=97, num_row=2, num_line=4)
RNG = np.random.RandomState(0)


def make_trainer(digits8, **kw):
    options = make_options("glo", dataset=digits8, **dict(TINY, **kw))
    return glo.Trainer(options, tf.distribute.get_strategy(), glo.Trainer.inspect_data(options))


def train(trainer, steps):
    nimg, stats = 0, []
    for _ in range(steps):
        s = trainer.train_iteration(nimg)
        nimg += s["nimg"]
        stats.append(s)
    return stats


@pytest.fixture(scope="module")
def trained(digits8):
    trainer = make_trainer(digits8)
    images = glo.read_images(digits8, 8, 0, 64)
    mse_before = glo_eval.mse(images, glo.generate(trainer.networks(), trainer.config(), trainer.latents[:64]))
    stats = train(trainer, 160)
    return trainer, stats, mse_before


# --- formulas --------------------------------------------------------------------------------------

def test_latent_samplers_come_from_the_family():
    """GLO's sampler is its own (the Gaussian fitted to the table); a family without one gets N(0, I)."""
    import types
    from vgrow_tf import models
    table = RNG.randn(50, 3) @ np.diag([1.0, 2.0, 0.5]) + 4.0
    draw, standard = models.latent_sampler(glo, {}, {"latents": table})
    np.testing.assert_allclose(draw(4, 9), glo.sample_gaussian(*glo.fit_gaussian(table), 4, 9), rtol=1e-6)
    assert not standard
    plain = types.SimpleNamespace(latent_dim=lambda config: 3)
    draw, standard = models.latent_sampler(plain, {}, {})
    np.testing.assert_array_equal(draw(4, 9), np.random.RandomState(9).randn(4, 3).astype(np.float32))
    assert standard


def test_projections():
    z = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(glo.project_np(z, "sphere")[:2], [[0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(glo.project_np(z, "ball"), [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(glo.project_np(z, "none"), z)
    assert np.isfinite(glo.project_np(z, "sphere")).all()


def test_pca_init_is_sklearns_projection_normalised(digits8):
    from sklearn.decomposition import PCA
    images = glo.read_images(digits8, 8, 0, 1700)
    u8 = np.rint((images + 1.0) * 127.5)
    ref = PCA(6).fit_transform(u8.reshape(len(u8), -1) / 255.0)  # the reference's pixels, x / 255
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(glo.initial_latents("pca", 1700, 6, "sphere", images=images), ref, atol=2e-4)
    trainer = make_trainer(digits8, z_dim=6)  # init=pca by default; 1797 - 97 training images
    np.testing.assert_allclose(trainer.latents.numpy(), ref, atol=2e-4)


def test_uniform_and_gaussian_inits_are_the_raw_codes():
    """As the reference's download.py stores them: U(-1, 1) / N(0, 1), not normalised (the first step
    starts from them; see test_first_step_starts_from_the_raw_code)."""
    np.testing.assert_array_equal(glo.initial_latents("uniform", 50, 5, "sphere", seed=1),
                                  np.random.RandomState(1).uniform(-1, 1, (50, 5)).astype(np.float32))
    np.testing.assert_array_equal(glo.initial_latents("gaussian", 50, 5, "sphere", seed=1),
                                  np.random.RandomState(1).randn(50, 5).astype(np.float32))


def _np_blur(x):
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    p = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    h, w = x.shape[1:3]
    rows = sum(k[i] * p[:, i:i + h, :, :] for i in range(5))
    return sum(k[i] * rows[:, :, i:i + w, :] for i in range(5))


def _np_lap1(a, b, levels):
    """Independent numpy: Burt-Adelson pyramid (binomial 5x5, reflect), sum_j 2^(2j) |dL_j|_1 / (HWC)."""
    def pyramid(x):
        out = []
        for _ in range(levels - 1):
            down = _np_blur(x)[:, ::2, ::2, :]
            up = np.repeat(np.repeat(down, 2, axis=1), 2, axis=2)
            out.append(x - _np_blur(up))
            x = down
        return out + [x]
    n = a[0].size
    return sum(2.0 ** (2 * j) * np.abs(pa - pb).reshape(len(a), -1).sum(1) / n
               for j, (pa, pb) in enumerate(zip(pyramid(a), pyramid(b))))


def test_lap1_matches_an_independent_numpy_pyramid():
    a, b = RNG.randn(3, 16, 16, 3), RNG.randn(3, 16, 16, 3)
    got = losses.lap1_loss(tf.constant(a, tf.float32), tf.constant(b, tf.float32)).numpy()
    np.testing.assert_allclose(got, _np_lap1(a, b, 3), rtol=1e-4)
    got4 = losses.lap1_loss(tf.constant(a, tf.float32), tf.constant(b, tf.float32), levels=2).numpy()
    np.testing.assert_allclose(got4, _np_lap1(a, b, 2), rtol=1e-4)
    # the 2^(2j) weights give each level the same per-pixel weight: the sum of per-level means
    pa = losses.laplacian_pyramid(tf.constant(a, tf.float32), 3)
    pb = losses.laplacian_pyramid(tf.constant(b, tf.float32), 3)
    means = sum(np.abs(x.numpy() - y.numpy()).mean(axis=(1, 2, 3)) for x, y in zip(pa, pb))
    np.testing.assert_allclose(got, means, rtol=1e-4)


def test_lap1_closed_forms_of_the_burt_adelson_pyramid():
    """Values the binomial kernel with reflect padding gives exactly (a sigma-2 Gaussian or zero
    padding would not): a constant offset c lives only in the residual and costs |c| (the 2^(2j)
    weight undoes the 4^-j fewer pixels); a Nyquist checkerboard is removed entirely by the
    [1, 4, 6, 4, 1]/16 blur (response 1 - 4 + 6 - 4 + 1 = 0), so it lives only in band 0 and costs
    its amplitude."""
    x = tf.constant(RNG.rand(2, 16, 16, 3), tf.float32)
    np.testing.assert_allclose(losses.lap1_loss(x, x + 0.3).numpy(), [0.3, 0.3], rtol=1e-5)
    checker = np.fromfunction(lambda i, j: (-1.0) ** (i + j), (16, 16))[None, :, :, None] * np.ones([1, 1, 1, 2])
    zero = tf.zeros([1, 16, 16, 2])
    np.testing.assert_allclose(losses.lap1_loss(zero, tf.constant(0.7 * checker, tf.float32)).numpy(), [0.7],
                               rtol=1e-5)
    bands = losses.laplacian_pyramid(tf.constant(checker, tf.float32), 3)
    np.testing.assert_allclose(bands[0].numpy(), checker, atol=1e-6)
    assert all(np.abs(b.numpy()).max() < 1e-6 for b in bands[1:])


def test_tf1_resize_bilinear_is_its_definition():
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False): out[i] samples in[i * in/out],
    linear between floor and floor + 1, the upper neighbour clamped to the last pixel."""
    x = RNG.randn(2, 3, 5, 4).astype(np.float32)

    def axis(n_in, n_out):
        src = np.arange(n_out) * n_in / n_out
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    (r0, r1, fr), (c0, c1, fc) = axis(3, 7), axis(5, 10)
    rows = x[:, r0] * (1 - fr)[None, :, None, None] + x[:, r1] * fr[None, :, None, None]
    expect = rows[:, :, c0] * (1 - fc)[None, None, :, None] + rows[:, :, c1] * fc[None, None, :, None]
    np.testing.assert_allclose(glo.resize_bilinear_tf1(tf.constant(x), [7, 10]).numpy(), expect, atol=1e-6)


def test_batch_bn_mode_uses_the_batch_statistics_and_leaves_the_moving_ones(digits8):
    g = glo.build_networks(glo.make_config(8, 1, z_dim=4, arch="reference"))["G"]
    bn = g.bns[0]
    assert bn.epsilon == glo.REFERENCE_BN_EPSILON == 1e-3
    bn.gamma.assign(RNG.rand(*bn.gamma.shape) + 0.5)
    bn.beta.assign(RNG.randn(*bn.beta.shape))
    x = RNG.randn(5, 2, 2, bn.gamma.shape[0]).astype(np.float32)
    moving = bn.moving_mean.numpy().copy()
    got = glo.batch_norm(bn, tf.constant(x), training=False, bn_mode="batch").numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased, as nn.moments
    expect = (x - mean) / np.sqrt(var + 1e-3) * bn.gamma.numpy() + bn.beta.numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), moving)
    z = RNG.randn(6, 4).astype(np.float32)
    config = glo.make_config(8, 1, z_dim=4, arch="reference")
    whole = glo.generate({"G": g}, config, z, bn_mode="batch")
    halves = glo.generate({"G": g}, config, z, batch_size=3, bn_mode="batch")
    assert np.abs(whole - halves).max() > 1e-3  # an image depends on its batch ...
    np.testing.assert_allclose(glo.generate({"G": g}, config, z), glo.generate({"G": g}, config, z, batch_size=3),
                               atol=1e-6)  # ... but not with the moving statistics


def test_local_moment_loss_matches_numpy():
    a, b = RNG.rand(2, 8, 8, 3), RNG.rand(2, 8, 8, 3)

    def moments(x):  # 4x4 windows, stride 2, VALID: 3x3 positions
        win = np.stack([x[:, i:i + 4, j:j + 4, :] for i in (0, 2, 4) for j in (0, 2, 4)], 1)
        mean = win.mean(axis=(2, 3))
        return mean, (win ** 2).mean(axis=(2, 3)) - mean ** 2
    (ma, va), (mb, vb) = moments(a), moments(b)
    expect = np.abs(ma - mb).mean(axis=(1, 2)) + np.abs(va - vb).mean(axis=(1, 2))
    got = losses.local_moment_loss(tf.constant(a, tf.float32), tf.constant(b, tf.float32)).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-6)


def test_gaussian_fit_and_sampling():
    a = RNG.randn(4, 4)
    latents = RNG.randn(5000, 4) @ a + np.array([1.0, -2.0, 0.5, 0.0])
    mean, cov = glo_eval.fit_gaussian(latents)
    np.testing.assert_allclose(mean, latents.mean(0), atol=1e-10)
    np.testing.assert_allclose(cov, np.cov(latents.T, bias=True), atol=1e-10)
    samples = glo_eval.sample_gaussian(mean, cov, 200000, seed=3).astype(np.float64)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.05 * np.abs(cov).max())


def test_slerp_stays_on_the_sphere_at_constant_speed():
    a, b = glo.project_np(RNG.randn(3, 6).astype(np.float32), "sphere"), \
        glo.project_np(RNG.randn(3, 6).astype(np.float32), "sphere")
    path = glo_eval.slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-6)
    np.testing.assert_allclose(path[-1], b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, atol=1e-5)
    angles = [np.arccos(np.clip(np.sum(path[i] * path[i + 1], -1), -1, 1)) for i in range(4)]
    np.testing.assert_allclose(angles, np.repeat(angles[:1], 4, axis=0), atol=1e-4)


def test_reference_generator_widths():
    g = glo.build_networks(glo.make_config(32, 3, z_dim=35, arch="reference"))["G"]
    assert [c.filters for c in g.convs] == [384, 128, 64, 16, 3]
    assert g(tf.zeros([2, 35])).shape == (2, 32, 32, 3)
    g1 = glo.build_networks(glo.make_config(32, 1, z_dim=10, arch="reference"))["G"]
    assert [c.filters for c in g1.convs] == [100, 50, 25, 6, 1]
    d = glo.build_networks(glo.make_config(64, 3, z_dim=100, fmaps=64))["G"]
    assert d.width0 == 512 and d(tf.zeros([1, 100])).shape == (1, 64, 64, 3)


# --- the step --------------------------------------------------------------------------------------

def test_only_the_batch_latents_change_and_stay_on_the_sphere(digits8):
    trainer = make_trainer(digits8, init="gaussian")
    first = next(iter(trainer.dataset()))["index"].numpy()  # the pipeline the trainer reads (seeded)
    before = trainer.latents.numpy().copy()
    train(trainer, 1)
    after = trainer.latents.numpy()
    changed = np.flatnonzero(np.any(after != before, axis=1))
    assert set(changed) == set(first) and first.max() < trainer.num_latents  # held-out rows never seen
    np.testing.assert_allclose(np.linalg.norm(after[changed], axis=1), 1.0, atol=1e-5)


def test_reference_mode_adam_after_g_with_clipping(digits8):
    trainer = make_trainer(digits8, glo_optimizer="adam", z_update="after_g", alpha=5.0, loss="local_moment",
                           glo_arch="reference", init="uniform", latent_projection="ball")
    assert trainer.clip_norm == 20.0 and trainer.z_lr == 5.0 and trainer.g_lr == 1e-4
    before = trainer.latents.numpy().copy()
    stats = train(trainer, 3)
    assert all(np.isfinite(s["loss"]) for s in stats)
    changed = np.any(trainer.latents.numpy() != before, axis=1)
    assert changed.sum() == 3 * 32
    assert np.linalg.norm(trainer.latents.numpy()[changed], axis=1).max() <= 1.0 + 1e-5
    assert np.linalg.norm(before, axis=1).max() > 1.0  # raw U(-1, 1) codes until their first step


def test_first_step_starts_from_the_raw_code(digits8):
    """--init=uniform: z' = project(z0 - lr * grad L(z0)) with z0 the unnormalised U(-1, 1) code."""
    trainer = make_trainer(digits8, init="uniform", glo_arch="reference", loss="l2")
    batch = next(iter(trainer.dataset()))
    images, index = batch["image"], batch["index"].numpy()
    z0 = trainer.latents.numpy()[index]
    assert np.linalg.norm(z0, axis=1).max() > 1.0
    z = tf.constant(z0)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(glo.reconstruction_loss("l2")(images, trainer.G(z, training=True))) / trainer.batch
    expect = glo.project_np(z0 - trainer.z_lr * tape.gradient(loss, z).numpy(), "sphere")
    train(trainer, 1)
    np.testing.assert_allclose(trainer.latents.numpy()[index], expect, rtol=1e-4, atol=1e-5)


def test_reference_adam_is_tf1s_adam(digits8):
    """epsilon 1e-8 (TF1's AdamOptimizer), not Keras' 1e-7: one step with a tiny gradient, where it matters."""
    trainer = make_trainer(digits8, glo_optimizer="adam", glo_arch="reference")
    assert trainer.opt_g.epsilon == glo.TF1_ADAM_EPSILON == 1e-8
    opt = type(trainer.opt_g).from_config(trainer.opt_g.get_config())
    var, grad, lr = tf.Variable([1.0]), 1e-6, 1e-4
    opt.apply_gradients([(tf.constant([grad]), var)])
    m, v = 0.1 * grad, 0.001 * grad ** 2  # TF1: lr_t = lr sqrt(1 - b2) / (1 - b1); step lr_t m / (sqrt(v) + eps)
    expect = 1.0 - lr * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(var.numpy(), [expect], rtol=1e-7)


def test_reconstruction_error_falls(trained, digits8):
    trainer, stats, mse_before = trained
    first = np.mean([s["loss"] for s in stats[:10]])
    last = np.mean([s["loss"] for s in stats[-10:]])
    assert last < 0.7 * first
    images = glo.read_images(digits8, 8, 0, 64)
    mse_after = glo_eval.mse(images, glo.generate(trainer.networks(), trainer.config(), trainer.latents[:64]))
    assert mse_after.mean() < 0.5 * mse_before.mean()


def test_snapshot_heldout_fit_and_export(trained, tmp_path):
    trainer, _, _ = trained
    path = str(tmp_path / "glo.h5")
    snapshot.save(path, "glo", trainer.config(), trainer.networks(), trainer.snapshot_arrays())
    snap = glo_eval.load(path)
    np.testing.assert_array_equal(snap.arrays["latents"], trainer.latents.numpy())
    for a, b in zip(snap.networks["G"].weights, trainer.G.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert snap.latent_dim == 8

    rec = glo_eval.reconstruct_training(snap, count=16)
    assert rec["reconstructions"].shape == (16, 8, 8, 1)
    held = glo_eval.reconstruct_heldout(snap, count=32, steps=100)
    assert held["images"].shape == (32, 8, 8, 1)
    assert held["mean_mse"] < 0.7 * held["mse_random"].mean()

    samples = glo_eval.generate(snap, 6)
    rows, pairs = glo_eval.interpolate(snap, num_pairs=2, steps=5)
    assert samples.shape == (6, 8, 8, 1) and rows.shape == (2, 5, 8, 8, 1) and pairs.shape == (2, 2)

    files = glo_eval.save_reconstructions(snap, str(tmp_path / "rec"), count=8, heldout_count=8, steps=20)
    assert len(files["paths"]) == 2 and files["heldout_mse"] < files["random_mse"]
    glo_eval.save_samples(snap, str(tmp_path / "samples.png"), 2, 3)
    glo_eval.save_interpolations(snap, str(tmp_path / "interp.png"), num_pairs=2, steps=4)
    assert os.path.isfile(tmp_path / "samples.png") and os.path.isfile(tmp_path / "interp.png")

    out = glo_eval.export_hdf5(snap, str(tmp_path / "data.hdf5"), extra=(held["images"], held["latents"]))
    with h5py.File(out, "r") as f:
        n = trainer.num_latents
        assert len(f.keys()) == n + 32
        assert f["0"]["image"].dtype == np.uint8 and f["0"]["image"].shape == (8, 8, 1)
        assert f["0"]["code"].dtype == np.float64 and f["0"]["code"].shape == (8,)
        np.testing.assert_allclose(f[str(n - 1)]["code"][()], trainer.latents.numpy()[n - 1], rtol=1e-6)
    assert open(tmp_path / "id.txt").read().split()[:2] == ["0", "1"]


# --- through the shared loop -----------------------------------------------------------------------

def _run(digits8, run_dir, **kw):
    options = make_options("glo", dataset=digits8, run_dir=str(run_dir),
                           **dict(TINY, tick_kimg=0.32, snapshot_kimg=0.64, **kw))
    loop.train(options)


def test_run_writes_outputs_and_resumes_exactly(digits8, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _run(digits8, straight, total_kimg=0.96, deterministic=True)
    files = os.listdir(straight)
    assert {"network-final.h5", "log.txt", "reconstructions000000.png", "fakes000000.png"} <= set(files)
    assert glob.glob(str(straight / "events.out.tfevents.*"))
    ticks = [line for line in open(straight / "log.txt") if line.startswith("tick")]
    assert ticks and "loss" in ticks[-1] and "epoch" in ticks[-1] and "mse" in ticks[-1]

    _run(digits8, split, total_kimg=0.64, deterministic=True)
    _run(digits8, split, total_kimg=0.96, deterministic=True, resume=True)
    assert "Resumed from" in open(split / "log.txt").read()
    a = snapshot.load(str(straight / "network-final.h5"))
    b = snapshot.load(str(split / "network-final.h5"))
    np.testing.assert_array_equal(a.arrays["latents"], b.arrays["latents"])
    for wa, wb in zip(a.networks["G"].weights, b.networks["G"].weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)


def test_reference_generator_resizes_to_the_data_size():
    """The reference resizes G's 32 px output to MNIST's 28 px with TF1's resize (after tanh)."""
    config = glo.make_config(32, 1, z_dim=10, arch="reference", output_size=28)
    g = glo.build_networks(config)["G"]
    z = RNG.randn(3, 10).astype(np.float32)
    out = glo.generate({"G": g}, config, z)
    g.output_size = 32
    full = g(tf.constant(z)).numpy()
    assert out.shape == (3, 28, 28, 1) and glo.image_size(config) == 28
    np.testing.assert_allclose(out, glo.resize_bilinear_tf1(tf.constant(full), [28, 28]).numpy(), atol=1e-6)

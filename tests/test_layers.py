"""Shared layers, divergence weights and losses against independent numpy formulas."""
import math

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from vgrow_tf import divergences, layers, losses
from vgrow_tf.errors import UserError

RNG = np.random.RandomState(0)


def test_equalized_dense_scales_weights_at_run_time():
    x = RNG.randn(3, 2, 3).astype(np.float32)
    layer = layers.EqualizedDense(4, gain=2.0, lrmul=0.01)
    y = layer(x).numpy()
    w = layer.kernel.numpy()
    assert np.std(w) > 10  # stored weights are N(0, 1/lrmul) ...
    layer.bias.assign(np.arange(4, dtype=np.float32))
    expected = x.reshape(3, 6) @ (w * 2.0 / math.sqrt(6) * 0.01) + np.arange(4) * 0.01
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-5)
    assert y.shape == (3, 4)


def test_equalized_conv_matches_scipy_correlation():
    x = RNG.randn(1, 5, 5, 2).astype(np.float32)
    layer = layers.EqualizedConv2D(3, 3, gain=math.sqrt(2))
    y = layer(x).numpy()
    w = layer.kernel.numpy() * math.sqrt(2) / math.sqrt(3 * 3 * 2)
    for out in range(3):
        ref = sum(scipy.signal.correlate2d(x[0, :, :, c], w[:, :, c, out], mode="same") for c in range(2))
        np.testing.assert_allclose(y[0, :, :, out], ref, rtol=1e-4, atol=1e-5)
    wide = layers.EqualizedConv2D(3, 3, fan_in_channels=8)
    wide.build((None, 5, 5, 2))
    assert wide.scale == pytest.approx(math.sqrt(2) / math.sqrt(72))


def test_pixel_norm_and_instance_norm():
    x = RNG.randn(2, 3, 3, 4).astype(np.float32)
    np.testing.assert_allclose(layers.PixelNorm()(x).numpy(),
                               x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + 1e-8), rtol=1e-5)
    centred = x - x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(layers.instance_norm(tf.constant(x)).numpy(),
                               centred / np.sqrt(np.mean(centred ** 2, axis=(1, 2), keepdims=True) + 1e-8),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("group_size", [None, 2])
def test_minibatch_stddev(group_size):
    x = RNG.randn(4, 2, 2, 3).astype(np.float32)
    y = layers.MinibatchStddev(group_size=group_size, epsilon=1e-8)(x).numpy()
    g = 4 if group_size is None else group_size
    groups = x.reshape(g, 4 // g, 2, 2, 3)   # sample i belongs to group i % (n/g), as in ProGAN
    std = np.sqrt(groups.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))   # [n/g]
    expected = np.tile(std, g)
    np.testing.assert_allclose(y[..., :3], x)
    np.testing.assert_allclose(y[:, 0, 0, 3], expected, rtol=1e-5)
    assert np.all(y[..., 3] == y[:, :1, :1, 3])


def test_resampling():
    x = RNG.randn(2, 4, 4, 3).astype(np.float32)
    up = layers.upscale2d(tf.constant(x), 2).numpy()
    np.testing.assert_array_equal(up, x.repeat(2, axis=1).repeat(2, axis=2))
    np.testing.assert_allclose(layers.downscale2d(tf.constant(x), 2).numpy(),
                               x.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4)), rtol=1e-6)
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    blurred = layers.blur2d(tf.constant(x)).numpy()
    np.testing.assert_allclose(blurred[0, :, :, 1], scipy.signal.convolve2d(x[0, :, :, 1], k, mode="same"),
                               rtol=1e-5, atol=1e-6)


def test_noise_and_style_modulation():
    x = tf.ones([2, 4, 4, 3])
    noise_layer = layers.NoiseInput()
    np.testing.assert_array_equal(noise_layer(x).numpy(), x.numpy())  # zero-initialised weight
    noise_layer.weight.assign([1.0, 2.0, 0.0])
    noise = tf.fill([2, 4, 4, 1], 0.5)
    np.testing.assert_allclose(noise_layer(x, noise=noise).numpy()[0, 0, 0], [1.5, 2.0, 1.0])
    mod = layers.StyleModulation(3)
    w = RNG.randn(2, 5).astype(np.float32)
    y = mod(x, w).numpy()
    style = mod.affine(w).numpy()
    np.testing.assert_allclose(y[:, 0, 0], (style[:, :3] + 1) + style[:, 3:], rtol=1e-5)


def test_divergence_weights_formulas_and_guards():
    d = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    e = np.exp(np.clip(d, -700, 700))
    np.testing.assert_allclose(divergences.s_weight_np(d, "KL"), 1.0)
    np.testing.assert_allclose(divergences.s_weight_np(d, "JS"), e / (e + 1.0), atol=2e-6)
    np.testing.assert_allclose(divergences.s_weight_np(d, "Jeffreys"), np.clip(1 + e, 1, 100))
    np.testing.assert_allclose(divergences.s_weight_np(d, "LogD"), 1.0 / (1.0 + e), atol=1e-300)
    assert divergences.s_weight_np([-800.0], "JS")[0] == pytest.approx(1e-6 / (1 + 1e-6))  # the 1e-6 guard
    for name in divergences.DIVERGENCES:
        tf_values = divergences.s_weight(tf.constant(d, tf.float32), name).numpy()
        assert tf_values.dtype == np.float32 and np.all(np.isfinite(tf_values))
        np.testing.assert_allclose(tf_values, divergences.s_weight_np(d, name), rtol=1e-6)
    with pytest.raises(UserError, match="unknown divergence"):
        divergences.s_weight_np(d, "TV")


def test_gan_losses():
    real, fake = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    sp = lambda v: np.log1p(np.exp(v))
    np.testing.assert_allclose(losses.logistic_d(real, fake), sp(-real) + sp(fake), rtol=1e-6)
    np.testing.assert_allclose(losses.logistic_ns_g(fake), sp(-fake), rtol=1e-6)
    np.testing.assert_allclose(losses.hinge_d(real, fake), np.maximum(0, 1 - real) + np.maximum(0, 1 + fake))
    rd = np.maximum(0, 1 - (real - fake.mean())) + np.maximum(0, 1 + (fake - real.mean()))
    np.testing.assert_allclose(losses.relativistic_hinge_d(real, fake), rd)
    np.testing.assert_allclose(losses.wgan_d(real, fake), fake - real)
    with pytest.raises(UserError, match="unknown loss"):
        losses.get_gan_loss("lsgan")


def test_r1_flows_back_through_pooling_of_one_watched_tensor():
    """R1 on a multi-scale D whose lower scales are pooled from the watched top image."""
    weights = [tf.constant(RNG.randn(4, 4, 1).astype(np.float32)), tf.constant(RNG.randn(2, 2, 1).astype(np.float32))]

    def discriminator(top):
        scales = [layers.downscale2d(top, 2), top]
        return tf.reduce_sum(scales[1] * weights[0], [1, 2, 3]) + tf.reduce_sum(scales[0] * weights[1], [1, 2, 3])

    x = tf.constant(RNG.randn(3, 4, 4, 1).astype(np.float32))
    r1 = losses.r1_penalty(discriminator, x).numpy()
    # d/dx of the pooled term spreads each 2x2 weight as w/4 over its block.
    grad = weights[0].numpy() + np.repeat(np.repeat(weights[1].numpy(), 2, 0), 2, 1) / 4
    np.testing.assert_allclose(r1, np.full(3, np.sum(grad ** 2)), rtol=1e-5)


def test_gradient_penalty_of_a_linear_critic():
    w = tf.constant(RNG.randn(1, 2, 2, 1).astype(np.float32))
    critic = lambda x: tf.reduce_sum(x * w, [1, 2, 3])
    reals, fakes = tf.zeros([2, 2, 2, 1]), tf.ones([2, 2, 2, 1])
    gp = losses.gradient_penalty(critic, reals, fakes, tf.constant([0.3, 0.7]), target=1.0).numpy()
    np.testing.assert_allclose(gp, np.full(2, (np.linalg.norm(w.numpy()) - 1.0) ** 2), rtol=1e-5)


def test_laplacian_pyramid_reconstructs_and_lap1_weights_levels():
    x = tf.constant(RNG.randn(2, 16, 16, 3).astype(np.float32))
    assert [p.shape[1] for p in losses.laplacian_pyramid(x, 3)] == [16, 8, 4]
    assert float(tf.reduce_max(losses.lap1_loss(x, x))) == 0.0
    shifted = losses.lap1_loss(x, x + 1.0).numpy()  # a constant survives only in the coarsest level
    # 16px: 3 levels; the 4x4 residual (j = 2) differs by 1: 2^(2*2) * (4*4*3) / (16*16*3) = 1
    np.testing.assert_allclose(shifted, np.full(2, 1.0), rtol=1e-5)

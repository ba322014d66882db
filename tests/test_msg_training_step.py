"""One MSG training iteration against independent formulas (docs/msg_gan_iteration.md lists the items)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import layers
from vgrow_tf.models import msg_gan
from vgrow_tf.training.options import make_options
from vgrow_tf.training.steps import make_adam

TINY = dict(z_dim=8, fmap_base=64, fmap_max=16, mapping_fmaps=8, mapping_layers=2, batch_size=8)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trainer(digits8, model, **kw):
    options = make_options(model, dataset=digits8, **dict(TINY, **kw))
    return msg_gan.Trainer(options, tf.distribute.get_strategy(), msg_gan.Trainer.inspect_data(options))


def _values(weights):
    return [w.numpy().copy() for w in weights]


def _constant_mapping(g, value):
    """Zero mapping kernels and a last-layer bias giving w == value for every z (lrelu of a positive)."""
    for dense in g.mapping:
        dense.kernel.assign(tf.zeros_like(dense.kernel))
        dense.bias.assign(tf.zeros_like(dense.bias))
    g.mapping[-1].bias.assign(tf.fill(g.mapping[-1].bias.shape, value / g.mapping[-1].lrmul))


def test_one_stylegan_iteration_dlatent_avg_twice_and_gs_after_the_d_step(digits8):
    """dlatent_avg: the original's D and G loss graphs both run G_style's update, so it moves by beta^2
    per iteration. Gs <- lerp(G, Gs, beta) runs with the D step (G not yet stepped), beta from
    G_smoothing_kimg per minibatch; non-trainable weights are copied (beta 0), dlatent_avg before the
    D step's update of it, as the original runs it."""
    trainer = _trainer(digits8, "msg_stylegan", G_smoothing_kimg=0.1)
    beta = 0.5 ** (8 / (0.1 * 1000))  # StyleGAN: 0.5 ** (minibatch / (G_smoothing_kimg * 1000))
    assert trainer.ema_beta == pytest.approx(beta)
    avg_beta, w, start = trainer.options.dlatent_avg_beta, 0.5, -1.0
    _constant_mapping(trainer.G, w)
    trainer.G.dlatent_avg.assign(tf.fill(trainer.G.dlatent_avg.shape, start))
    for v in trainer.Gs.trainable_weights:
        v.assign(tf.zeros_like(v))
    g_before = _values(trainer.G.trainable_weights)
    assert not trainer.train_iteration(0)["nonfinite"]
    np.testing.assert_allclose(trainer.G.dlatent_avg.numpy(), w + avg_beta ** 2 * (start - w), rtol=1e-6)
    np.testing.assert_allclose(trainer.Gs.dlatent_avg.numpy(), start, rtol=1e-6)  # copied before the update
    for expected, gs in zip(g_before, trainer.Gs.trainable_weights):
        np.testing.assert_allclose(gs.numpy(), (1 - beta) * expected, rtol=1e-5, atol=1e-7, err_msg=gs.path)
    assert any(not np.array_equal(a, g.numpy()) for a, g in zip(g_before, trainer.G.trainable_weights))


def test_progan_ema_follows_the_g_step(digits8):
    """BMSG-GAN: shadow <- decay * shadow + (1 - decay) * G after the G step."""
    trainer = _trainer(digits8, "msg_progan", ema_decay=0.9)
    for v in trainer.Gs.trainable_weights:
        v.assign(tf.zeros_like(v))
    trainer.train_iteration(0)
    for gs, g in zip(trainer.Gs.trainable_weights, trainer.G.trainable_weights):
        np.testing.assert_allclose(gs.numpy(), 0.1 * g.numpy(), rtol=1e-5, atol=1e-8, err_msg=gs.path)


def _effective(dense):
    """A dense layer's run-time kernel and bias, measured through calls: f(I) - f(0) and f(0)."""
    fan_in = dense.kernel.shape[0]
    bias = dense(tf.zeros([1, fan_in])).numpy()[0]
    return dense(tf.eye(fan_in)).numpy() - bias, bias


@pytest.mark.parametrize("lrmul", [0.01, 1.0])
def test_lrmul_scales_the_adam_steps_of_weights_and_biases(lrmul):
    """Adam's first step (beta1 0) moves each stored value by ~lr; at run time that is lr * lrmul * he_std
    for the weights and lr * lrmul for the biases, as get_weight/apply_bias(lrmul) in the original (the
    trainer gives every G variable one optimizer and one lr; the mapping's layers carry lrmul 0.01)."""
    lr, fan_in = 0.003, 8
    tf.random.set_seed(0)
    dense = layers.EqualizedDense(4, lrmul=lrmul)
    dense.build((None, fan_in))
    dense.bias.assign(tf.random.normal([4]) / lrmul)
    x, r = tf.random.normal([16, fan_in]), tf.random.normal([16, 4])
    (k0, b0), opt = _effective(dense), make_adam(lr, 0.0, 0.99)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(dense(x) * r)
    opt.apply_gradients(zip(tape.gradient(loss, dense.trainable_variables), dense.trainable_variables))
    k1, b1 = _effective(dense)
    he_std = np.sqrt(2) / np.sqrt(fan_in)
    # float32 rounding of stored weights ~1/lrmul in size limits the kernel's precision.
    np.testing.assert_allclose(np.abs(k1 - k0), lr * lrmul * he_std, rtol=3e-2)
    np.testing.assert_allclose(np.abs(b1 - b0), lr * lrmul, rtol=3e-2)


def _adam_reference(grads, lr, b1, b2, eps, torch):
    """Adam by hand; `torch` adds eps to sqrt(v_hat) (PyTorch), else to sqrt(v) (TF1 / Keras)."""
    w, m, v = 0.0, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        if torch:
            w -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        else:
            w -= lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("torch_epsilon", [False, True])
def test_adam_epsilon_placement(torch_epsilon):
    grads = [3e-8, -1e-8, 2e-8]  # near epsilon, where the two placements differ
    var = tf.Variable([0.0])
    opt = make_adam(0.003, 0.0, 0.99, 1e-8, torch_epsilon=torch_epsilon)
    for g in grads:
        opt.apply_gradients([(tf.constant([g]), var)])
    ours = float(var.numpy()[0])
    assert ours == pytest.approx(_adam_reference(grads, 0.003, 0.0, 0.99, 1e-8, torch_epsilon), rel=1e-5)
    assert ours != pytest.approx(_adam_reference(grads, 0.003, 0.0, 0.99, 1e-8, not torch_epsilon), rel=1e-2)


def test_optimizers_are_the_originals(digits8):
    sg, pg = _trainer(digits8, "msg_stylegan"), _trainer(digits8, "msg_progan")
    for opt in (sg.opt_g, sg.opt_d, pg.opt_g, pg.opt_d):  # constant lr 0.003, no ramp; betas (0, 0.99)
        assert (float(opt.learning_rate), opt.beta_1, opt.beta_2, opt.epsilon) == \
            pytest.approx((0.003, 0.0, 0.99, 1e-8))
    assert type(sg.opt_g).__name__ == "Adam" and type(pg.opt_g).__name__ == "TorchAdam"


def test_restart_adam_on_resume(digits8):
    """The originals saved no optimizer state: --restart_adam_on_resume zeroes moments and step count."""
    trainer = _trainer(digits8, "msg_stylegan")
    for opt, net in ((trainer.opt_g, trainer.G), (trainer.opt_d, trainer.D)):
        opt.apply_gradients([(tf.ones_like(v), v) for v in net.trainable_variables])
    moments = _values(trainer.opt_g.variables)
    trainer.after_restore(8)  # default: continue exactly
    for a, v in zip(moments, trainer.opt_g.variables):
        np.testing.assert_array_equal(a, v.numpy())
    trainer.options.restart_adam_on_resume = True
    trainer.after_restore(8)
    for opt in (trainer.opt_g, trainer.opt_d):
        assert int(opt.iterations.numpy()) == 0 and float(opt.learning_rate) == pytest.approx(0.003)
        assert all(not np.any(v.numpy()) for v in opt.variables if v.path.endswith(("momentum", "velocity")))
    assert any(np.any(a) for a, v in zip(moments, trainer.opt_g.variables) if v.path.endswith("momentum"))


def _cfg(path):
    lines = open(os.path.join(REPO, "configs", path)).read().splitlines()
    return dict(line[2:].partition("=")[::2] for line in lines if line.startswith("--"))


@pytest.mark.parametrize("name,mirror", [("ffhq", "true"), ("celebahq", "true"), ("indian_celebs", "true"),
                                         ("lsun_church", None), ("oxford_flowers", None)])
def test_configs_mirror_as_the_original_train_py(name, mirror):
    assert _cfg(f"msg_stylegan/{name}.cfg").get("mirror_augment") == mirror

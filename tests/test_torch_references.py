"""MSG-ProGAN and DGflow against their original PyTorch code, through stored fixtures.

The fixtures were made by running BMSG-GAN's and DGflow's own code (tests/fixtures/msg_progan,
tests/fixtures/dgflow: README.md and make_fixture.py); PyTorch is needed only to remake them.
"""
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import interop
from vgrow_tf.interop import bmsg_gan
from vgrow_tf.models import msg_gan
from vgrow_tf.sampling import refine
from vgrow_tf.training.options import make_options

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _load(name):
    with np.load(os.path.join(FIXTURES, name, "expected.npz")) as f:
        return {k: f[k] for k in f.files}


def _group(arrays, prefix):
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def _reals(bmsg):
    """The fixture's reals as both sides feed them: bytes / 127.5 - 1 in float32, NHWC."""
    return tf.constant(_nhwc(bmsg["reals_uint8"].astype(np.float32) / np.float32(127.5) - np.float32(1.0)))


def max_relative(ours, theirs):
    """max |ours - theirs| / max |theirs|: one figure per array, robust to entries near zero."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


@pytest.fixture(scope="module")
def bmsg():
    return _load("msg_progan")


def _networks(bmsg):
    gen, dis = _group(bmsg, "G"), _group(bmsg, "D")
    config = bmsg_gan.config_for(gen, dis)
    nets = msg_gan.build_networks(config)
    bmsg_gan.load_state_dicts(nets, gen, dis)
    return config, nets


def _tolerance(bmsg, key):
    """1e-5, or twice the original's own float32 error where that is larger: the stored values are the
    original's code run in float64, and its float32 run misses them by `float32_error/<key>` (the Adam
    second moments of the 4-channel layers, up to 1.9e-5: v is a square, it doubles gradient rounding)."""
    return max(1e-5, 2 * float(bmsg[f"float32_error/{key}"]))


def test_bmsg_networks_compute_the_originals_outputs(bmsg):
    """The fixture itself is a bmsg_gan_npz file (G/ and D/ state_dicts): loaded as any original model."""
    path = os.path.join(FIXTURES, "msg_progan", "expected.npz")
    assert interop.detect(path) == "bmsg_gan_npz"
    imported = interop.load(path)
    config, nets = imported.config, imported.networks
    assert imported.kind == "msg_progan" and config["resolution"] == 64 and config["z_dim"] == 8
    fakes = nets["G"](tf.constant(bmsg["z"]))
    for a, b in zip(nets["G"].weights, nets["Gs"].weights):  # no Gs/ arrays: the shadow is G
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(fakes) == 5
    errors = {f"G_out/{i}": max_relative(f, _nhwc(bmsg[f"G_out/{i}"])) for i, f in enumerate(fakes)}
    errors["D_real"] = max_relative(nets["D"](msg_gan.real_pyramid(_reals(bmsg), 5)), bmsg["D_real"])
    errors["D_fake"] = max_relative(nets["D"]([tf.constant(_nhwc(bmsg[f"G_out/{i}"])) for i in range(5)]),
                                    bmsg["D_fake"])
    assert all(v <= 1e-5 for v in errors.values()), errors


class FedRandom:
    """Stands in for the trainer's tf.random.Generator: the stored latents, no flips, zero seeds."""

    def __init__(self, latents):
        self.latents = latents

    def normal(self, shape):
        return tf.constant(self.latents)

    def uniform(self, shape, *args, **kwargs):
        return tf.zeros(shape)  # flip < 0.5: the stored reals unflipped (the original flipped them, or not)

    def make_seeds(self, count):
        return tf.zeros([2, count], tf.int64)


def _fed_trainer(bmsg):
    info = types.SimpleNamespace(path="fed", resolution=64, levels=[4, 8, 16, 32, 64], channels=3, num_images=4)
    options = make_options("msg_progan", batch_size=4, z_dim=8, fmap_max=8, resolution=64)
    trainer = msg_gan.Trainer(options, tf.distribute.get_strategy(), info)
    assert trainer.arch == bmsg_gan.config_for(_group(bmsg, "G"), _group(bmsg, "D"))
    bmsg_gan.load_state_dicts(trainer.networks(), _group(bmsg, "G"), _group(bmsg, "D"))
    trainer.feed_inputs([{"image": _reals(bmsg)}], FedRandom(bmsg["z"]))
    return trainer


def _slot(optimizer, variable, name):
    return optimizer.variables[[v.path for v in optimizer.variables].index(
        f"{optimizer.name}/{variable.path.replace('/', '_')}_{name}")]


def test_one_bmsg_iteration_equals_the_originals(bmsg):
    """D step (RaHinge, fakes detached), G step on the same latents and reals, EMA 0.999 of the
    shadow; PyTorch's Adam(0.003, (0, 0.99), 1e-8): weights, shadow and both Adam slots after it."""
    trainer = _fed_trainer(bmsg)
    stats = trainer.train_iteration(0)
    assert stats["d_loss"] == pytest.approx(float(bmsg["d_loss"]), rel=1e-5)
    assert stats["g_loss"] == pytest.approx(float(bmsg["g_loss"]), rel=1e-5)
    depth = 5
    worst = {}
    for net, opt, pairs_of in (("G", trainer.opt_g, bmsg_gan.generator_pairs),
                               ("D", trainer.opt_d, bmsg_gan.discriminator_pairs)):
        assert int(opt.iterations.numpy()) == int(bmsg[f"{net}_steps"]) == 1
        for variable, name, to_ours in pairs_of(trainer.networks()[net], depth):
            checks = {"after": variable, "m": _slot(opt, variable, "momentum"),
                      "v": _slot(opt, variable, "velocity")}
            for what, ours in checks.items():
                worst[f"{net}_{what}/{name}"] = max_relative(ours.numpy(), to_ours(bmsg[f"{net}_{what}/{name}"]))
    for variable, name, to_ours in bmsg_gan.generator_pairs(trainer.Gs, depth):
        worst[f"Gs_after/{name}"] = max_relative(variable.numpy(), to_ours(bmsg[f"Gs_after/{name}"]))
    bad = {k: v for k, v in worst.items() if v > _tolerance(bmsg, k)}
    assert not bad, bad
    assert max(v for k, v in worst.items() if "_after/" in k) <= 1e-6  # weights; the slots carry the rounding


# --- DGflow -------------------------------------------------------------------------------------

@pytest.mark.parametrize("divergence", ["KL", "logD", "JS"])
def test_dgflow_steps_equal_the_originals(bmsg, divergence):
    """DGflow's _refine_batch on BMSG-GAN's G and D (minibatch-stddev over the batch), its noise fed in:
    the latents after every step. logD and JS tell where s enters: s_i times row i's gradient of the
    batch-summed logit, as the original (the gradient of sum_j s_j d_j was 1.6e-2 / 6.5e-3 off)."""
    flow = _load("dgflow")
    config, nets = _networks(bmsg)
    steps, latents = int(flow["steps"]), flow[f"{divergence}/latents"]
    saved, _ = refine.refine_latents(
        flow["z0"], lambda z: msg_gan.generator_tensor(nets, config, z),
        lambda x: msg_gan.discriminator_logit(nets, config, x), eta=float(flow["eta"]),
        gamma=float(flow["gamma"]), steps=steps, divergence=divergence, save_every=1, group_size=len(flow["z0"]),
        noise=np.transpose(flow[f"{divergence}/noise"], (1, 0, 2)))
    # The stored latents are the original run in float64 (its own float32 run is up to 2.2e-5 from
    # them); ours were <= 1.2e-7 from them at every step.
    errors = [max_relative(saved[k], latents[k]) for k in range(steps + 1)]
    assert max(errors) <= 1e-5, errors

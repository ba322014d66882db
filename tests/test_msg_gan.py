"""MSG-StyleGAN / MSG-ProGAN: scales, layers against numpy, R1 back-flow, truncation, tiny runs, resume."""
import glob
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import snapshot
from vgrow_tf.models import msg_gan
from vgrow_tf.training import loop
from vgrow_tf.training.options import make_options

ARCH = dict(z_dim=8, fmap_base=64, fmap_max=16, mapping_fmaps=8, mapping_layers=2)
TINY = dict(ARCH, batch_size=8, tick_kimg=0.016, snapshot_kimg=0.032, num_row=2, num_line=2)


def _config(model, resolution=16, **kw):
    return msg_gan.make_config(model, resolution, 1, **dict(ARCH, **kw))


@pytest.fixture(scope="module", params=msg_gan.KINDS)
def nets(request):
    keras.utils.set_random_seed(0)
    config = _config(request.param)
    return config, msg_gan.build_networks(config)


def test_every_scale_has_its_shape_and_d_takes_the_list(nets):
    config, n = nets
    out = n["G"](tf.random.normal([4, 8]))
    assert [tuple(o.shape) for o in out] == [(4, r, r, 1) for r in (4, 8, 16)]
    assert n["D"](out).shape == (4,)
    top = msg_gan.generate(n, config, np.random.randn(3, 8).astype(np.float32))
    every = msg_gan.generate(n, config, np.random.randn(3, 8).astype(np.float32), all_scales=True)
    assert top.shape == (3, 16, 16, 1) and [e.shape[1] for e in every] == [4, 8, 16]


def test_gs_starts_as_a_copy_of_g(nets):
    _, n = nets
    for a, b in zip(n["G"].weights, n["Gs"].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_real_pyramid_is_box_filtering():
    x = np.random.RandomState(0).randn(2, 16, 16, 3).astype(np.float32)
    pyr = msg_gan.real_pyramid(tf.constant(x), 3)
    assert [p.shape[1] for p in pyr] == [4, 8, 16]
    np.testing.assert_allclose(pyr[2], x)
    np.testing.assert_allclose(pyr[1], x.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4)), atol=1e-6)
    np.testing.assert_allclose(pyr[0], x.reshape(2, 4, 4, 4, 4, 3).mean(axis=(2, 4)), atol=1e-6)


def test_equalized_lr_scales_follow_the_spec():
    config = msg_gan.make_config("msg_stylegan", 8, 3, z_dim=16, mapping_fmaps=32, fmap_base=64, fmap_max=32)
    n = msg_gan.build_networks(config)
    g, d = n["G"], n["D"]
    m0 = g.mapping[0]
    assert math.isclose(m0.scale, math.sqrt(2) / math.sqrt(16) * 0.01)      # lrmul 0.01 on the mapping
    assert 50 < np.std(m0.kernel.numpy()) < 200                            # N(0, 1/lrmul) init
    assert math.isclose(g.to_rgb[0].scale, 1 / math.sqrt(32))              # toRGB: 1x1, gain 1
    assert math.isclose(g.epilogues[0].style.affine.scale, 1 / math.sqrt(32))  # style affine: gain 1
    assert math.isclose(d.out.scale, 1 / math.sqrt(32))                    # last dense: gain 1
    assert math.isclose(d.conv4.scale, math.sqrt(2) / math.sqrt(9 * 33))   # mbstd adds a map
    assert g.num_layers == 2 * 3 - 2 and len(g.noise_consts) == 4
    # Channel rule nf(s) = min(fmap_base / 2^s, fmap_max): 4x4 uses nf(1) = 32, 8x8 nf(2) = 16.
    assert g.const.shape == (1, 4, 4, 32) and g.convs[1][1].kernel.shape[-1] == 16
    pro = msg_gan.build_networks(msg_gan.make_config("msg_progan", 8, 3, z_dim=16, fmap_max=32))["G"]
    assert math.isclose(pro.project.scale, math.sqrt(2) / 4)               # deconv fan_in = latent size


@pytest.mark.parametrize("mode", msg_gan.COMBINES)
def test_combine_against_numpy(mode):
    rs = np.random.RandomState(1)
    image, x = rs.randn(2, 4, 4, 3).astype(np.float32), rs.randn(2, 4, 4, 6).astype(np.float32)
    layer = msg_gan.Combine(mode, 6, rgb_channels=5)
    out = layer(tf.constant(image), tf.constant(x)).numpy()
    if mode == "simple":
        expect = np.concatenate([image, x], -1)
    elif mode == "lin_cat":
        w = layer.conv.kernel.numpy()[0, 0] * layer.conv.scale
        expect = np.concatenate([image @ w + layer.conv.bias.numpy(), x], -1)
        assert math.isclose(layer.conv.scale, math.sqrt(2) / math.sqrt(3))
    else:
        w = layer.conv.kernel.numpy()[0, 0] * layer.conv.scale
        expect = np.concatenate([image, x], -1) @ w
        assert layer.conv.bias is None and math.isclose(layer.conv.scale, math.sqrt(2) / 3)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


def test_epilogue_against_numpy():
    rs = np.random.RandomState(2)
    x, w, noise = rs.randn(2, 4, 4, 3), rs.randn(2, 5), rs.randn(2, 4, 4, 1)
    x, w, noise = (a.astype(np.float32) for a in (x, w, noise))
    ep = msg_gan.Epilogue(3)
    ep(x, w, noise)
    ep.noise.weight.assign(rs.randn(3)), ep.bias.assign(rs.randn(3))
    y = x + noise * ep.noise.weight.numpy() + ep.bias.numpy()
    y = np.where(y > 0, y, 0.2 * y)
    y = y - y.mean(axis=(1, 2), keepdims=True)
    y = y / np.sqrt((y ** 2).mean(axis=(1, 2), keepdims=True) + 1e-8)
    aff = ep.style.affine
    style = w @ (aff.kernel.numpy() * aff.scale) + aff.bias.numpy()
    y = y * (1 + style[:, None, None, :3]) + style[:, None, None, 3:]
    np.testing.assert_allclose(ep(x, w, noise), y, rtol=1e-4, atol=1e-4)


def test_truncation_trick():
    config = _config("msg_stylegan")
    g = msg_gan.build_networks(config)["Gs"]
    g.dlatent_avg.assign(np.random.RandomState(3).randn(8).astype(np.float32))
    dl = g.broadcast(g.map(tf.random.normal([3, 8])))
    np.testing.assert_allclose(g.truncate(dl, 1.0, 8), dl, atol=1e-6)                 # psi = 1: identity
    t0 = g.truncate(dl, 0.0, 4).numpy()
    np.testing.assert_allclose(t0[:, :4], np.broadcast_to(g.dlatent_avg.numpy(), (3, 4, 8)), atol=1e-6)
    np.testing.assert_allclose(t0[:, 4:], dl[:, 4:], atol=1e-6)                        # beyond the cutoff
    avg = g.dlatent_avg.numpy()
    np.testing.assert_allclose(g.truncate(dl, 0.7, 8), avg + 0.7 * (dl.numpy() - avg), atol=1e-5)
    z = np.random.randn(2, 8).astype(np.float32)
    nets = {"Gs": g}
    a = msg_gan.generate(nets, config, z, truncation_psi=0.0, randomize_noise=False)
    b = msg_gan.generate(nets, config, -z, truncation_psi=0.0, randomize_noise=False)
    np.testing.assert_allclose(a, b, atol=1e-5)    # psi = 0 with cutoff 8 >= 6 layers: z is ignored


def test_noise_is_random_fixed_or_seeded(nets):
    config, n = nets
    z = np.random.randn(2, 8).astype(np.float32)
    fixed = [msg_gan.generate(n, config, z, randomize_noise=False) for _ in range(2)]
    np.testing.assert_array_equal(*fixed)
    seeded = [msg_gan.generate(n, config, z, noise_seed=5) for _ in range(2)]
    np.testing.assert_array_equal(*seeded)


def test_r1_includes_the_pooling_back_flow():
    """With back-flow each scale's gradient is its own plus the coarser ones' pushed back through
    the 2x2 average pooling (nearest upsampling / 4); without it the scales are independent leaves."""
    config = _config("msg_stylegan", 8)
    d = msg_gan.build_networks(config)["D"]
    x = tf.constant(np.random.RandomState(4).randn(4, 8, 8, 1).astype(np.float32))
    with_flow, logits = msg_gan.r1_per_sample(d, x, 2)
    without, _ = msg_gan.r1_per_sample(d, x, 2, backflow=False)
    leaves = [tf.Variable(s) for s in msg_gan.real_pyramid(x, 2)]
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(d([leaves[0], leaves[1]]))
    g4, g8 = [g.numpy() for g in tape.gradient(total, leaves)]
    g8_total = g8 + np.repeat(np.repeat(g4, 2, 1), 2, 2) / 4.0
    manual = ((g4 ** 2).sum(axis=(1, 2, 3)) + (g8_total ** 2).sum(axis=(1, 2, 3))) / 2
    manual_leaf = ((g4 ** 2).sum(axis=(1, 2, 3)) + (g8 ** 2).sum(axis=(1, 2, 3))) / 2
    np.testing.assert_allclose(with_flow, manual, rtol=1e-4)
    np.testing.assert_allclose(without, manual_leaf, rtol=1e-4)
    assert not np.allclose(with_flow, without, rtol=1e-3)
    np.testing.assert_allclose(logits, d(msg_gan.real_pyramid(x, 2)), rtol=1e-5)


# --- training ------------------------------------------------------------------------------

def _trainer(digits8, model, **kw):
    options = make_options(model, dataset=digits8, **dict(TINY, **kw))
    return msg_gan.Trainer(options, tf.distribute.get_strategy(), msg_gan.Trainer.inspect_data(options))


@pytest.mark.parametrize("model,kw", [
    ("msg_stylegan", {}),
    ("msg_stylegan", dict(combine="simple", style_mixing_prob=0.9)),
    ("msg_progan", {}),
    ("msg_progan", dict(loss_function="wgan-gp", combine="cat_lin")),
    ("msg_progan", dict(loss_function="hinge", use_eql=False)),
])
def test_steps_stay_finite_and_trace_once(digits8, model, kw):
    trainer = _trainer(digits8, model, **kw)
    g0 = [w.numpy() for w in trainer.G.trainable_weights]
    gs0 = [w.numpy() for w in trainer.Gs.trainable_weights]
    for _ in range(3):
        stats = trainer.train_iteration(0)
        assert not stats["nonfinite"] and all(np.isfinite(v) for v in stats.values()), stats
    assert trainer.trace_counts == 1
    assert stats["nimg"] == 8
    if kw.get("loss_function") == "wgan-gp":
        assert stats["gp"] > 0
    if model == "msg_stylegan":
        assert stats["r1"] > 0 and trainer.r1_gamma == 10.0
        assert np.abs(trainer.G.dlatent_avg.numpy()).sum() > 0
    moved = [not np.array_equal(a, w.numpy()) for a, w in zip(g0, trainer.G.trainable_weights)]
    assert any(moved)
    # Gs trails G: it moved, but less than G.
    dg = sum(np.abs(a - w.numpy()).sum() for a, w in zip(g0, trainer.G.trainable_weights))
    dgs = sum(np.abs(a - w.numpy()).sum() for a, w in zip(gs0, trainer.Gs.trainable_weights))
    assert 0 < dgs < dg


def test_ema_beta_and_defaults(digits8):
    sg = _trainer(digits8, "msg_stylegan", batch_size=16)
    assert math.isclose(sg.ema_beta, 0.5 ** (16 / 10000)) and not sg.ema_after_g
    assert sg.loss_name == "logistic" and sg.arch["combine"] == "cat_lin" and not sg.mirror
    assert sg.opt_g.learning_rate.numpy() == pytest.approx(0.003) and sg.opt_d.beta_1 == 0.0
    pg = _trainer(digits8, "msg_progan")
    assert pg.ema_beta == 0.999 and pg.ema_after_g and pg.loss_name == "relativistic-hinge"
    assert pg.arch["combine"] == "lin_cat" and pg.mirror and pg.r1_gamma == 0.0
    assert _trainer(digits8, "msg_progan", depth=2, resolution=None).resolution == 8


def test_nonfinite_step_is_skipped(digits8):
    trainer = _trainer(digits8, "msg_progan")
    d0 = [w.numpy() for w in trainer.D.trainable_weights]
    trainer.G.bias4.assign(np.full(trainer.G.bias4.shape, np.nan, np.float32))
    stats = trainer.train_iteration(0)
    assert stats["nonfinite"]
    for a, w in zip(d0, trainer.D.trainable_weights):
        np.testing.assert_array_equal(a, w.numpy())


def _run(digits8, run_dir, model="msg_stylegan", **kw):
    options = make_options(model, dataset=digits8, run_dir=str(run_dir), **dict(TINY, **kw))
    loop.train(options)
    return options


@pytest.mark.parametrize("model", msg_gan.KINDS)
def test_tiny_run_writes_grids_snapshots_and_resumes(digits8, tmp_path, model):
    run_dir = tmp_path / "run"
    _run(digits8, run_dir, model, total_kimg=0.032)
    files = os.listdir(run_dir)
    assert "network-final.h5" in files and "log.txt" in files and "fakes000000.png" in files
    for r in (4, 8):
        assert os.path.exists(run_dir / f"{r}x{r}" / "fakes000000.png")
    assert glob.glob(str(run_dir / "events.out.tfevents.*"))
    ticks = [line for line in open(run_dir / "log.txt") if line.startswith("tick")]
    assert ticks and "resolution 8" in ticks[-1] and "d_loss" in ticks[-1]

    _run(digits8, run_dir, model, total_kimg=0.048, resume=True)
    assert "Resumed from" in open(run_dir / "log.txt").read()
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-48")

    snap = snapshot.load(str(run_dir / "network-final.h5"))
    assert snap.kind == model
    z = np.random.RandomState(0).randn(5, 8).astype(np.float32)
    images = snap.generate(z, randomize_noise=False)
    scales = snap.generate(z, all_scales=True, randomize_noise=False)
    assert images.shape == (5, 8, 8, 1) and np.isfinite(images).all()
    np.testing.assert_array_equal(scales[-1], images)
    # Round trip: a second load gives identical outputs and identical logits.
    again = snapshot.load(str(run_dir / "network-final.h5"))
    np.testing.assert_array_equal(again.generate(z, randomize_noise=False), images)
    np.testing.assert_array_equal(again.discriminator_logit(images), snap.discriminator_logit(images))


def test_interrupted_and_resumed_run_ends_with_the_same_weights(digits8, tmp_path):
    """Exact resume: RNG, data position, optimizer moments, EMA and dlatent_avg all come back."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    _run(digits8, straight, total_kimg=0.064, deterministic=True, style_mixing_prob=0.5)
    _run(digits8, split, total_kimg=0.032, deterministic=True, style_mixing_prob=0.5)
    _run(digits8, split, total_kimg=0.064, deterministic=True, style_mixing_prob=0.5, resume=True)
    a = snapshot.load(str(straight / "network-final.h5")).networks
    b = snapshot.load(str(split / "network-final.h5")).networks
    for name in ("G", "D", "Gs"):
        for wa, wb in zip(a[name].weights, b[name].weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=f"{name}/{wa.path}")


MULTI = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from vgrow_tf.data import tool
    from vgrow_tf.models import msg_gan
    from vgrow_tf.training.options import make_options
    from vgrow_tf.training.strategy import make_strategy

    data = sys.argv[1]
    tool.create_digits(data, resolution=8)
    mirrored = make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    for model in msg_gan.KINDS:
        opts = make_options(model, dataset=data, batch_size=8, z_dim=8, fmap_base=32, fmap_max=8,
                            mapping_fmaps=8, mapping_layers=2)
        trainer = msg_gan.Trainer(opts, mirrored, msg_gan.Trainer.inspect_data(opts))
        for _ in range(2):
            stats = trainer.train_iteration(0)
            assert not stats["nonfinite"] and np.isfinite(stats["d_loss"]), stats
        for v in trainer.G.weights + trainer.D.weights + trainer.Gs.weights:
            values = [x.numpy() for x in v.value.values]
            assert np.array_equal(values[0], values[1]), v.path
    print("OK")
""")


def test_two_replicas_train_in_sync(tmp_path):
    result = subprocess.run([sys.executable, "-c", MULTI, str(tmp_path / "digits8")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def original_parameter_counts(resolution, mbstd=True, channels=3, fmap_base=8192, fmap_max=512, w=512):
    """Trainable parameters of msg-stylegan-tf's G_style and D_basic, from their layer plan."""
    nf = msg_gan.nf_rule(fmap_base, fmap_max)
    top = int(math.log2(resolution))
    ep = lambda c: c + c + w * 2 * c + 2 * c  # noqa: E731  noise weight, bias, StyleMod weight + bias
    g = 8 * (w * w + w) + 16 * nf(1) + 9 * nf(1) ** 2 + 2 * ep(nf(1)) + channels * nf(1) + channels
    for r in range(3, top + 1):
        cin, cout = nf(r - 2), nf(r - 1)
        g += 9 * cin * cout + 9 * cout * cout + 2 * ep(cout) + channels * cout + channels
    m = 1 if mbstd else 0  # minibatch-stddev appends one map before every block's first conv
    d = channels * nf(top - 1) + nf(top - 1)
    for r in range(top, 2, -1):
        c = nf(r - 1)
        d += (channels + c) * c if r < top else 0  # combine: 1x1 conv, no bias
        d += 9 * (c + m) * c + c + 9 * c * nf(r - 2) + nf(r - 2)
    c = nf(1)
    d += (channels + c) * c + 9 * (c + m) * c + c + 16 * c * nf(0) + nf(0) + nf(0) + 1
    return g, d


def _count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_parameter_counts_follow_the_original_architecture():
    """Trainable parameters at 32 px with the default widths, counted from the original's layer plan."""
    config = msg_gan.make_config("msg_stylegan", 32, 3)
    n = msg_gan.build_networks(config)
    assert (_count(n["G"]), _count(n["D"])) == original_parameter_counts(32)
    assert len(n["G"].non_trainable_weights) == 1 + 8     # dlatent_avg and one noise input per layer


# Trainable parameters of the original's G_style and D_basic (mbstd_group_size 4, and 0 or 1), as its
# tflib.Network reports them when built at these sizes with the default kwargs.
ORIGINAL_COUNTS = {256: (26_086_229, 24_198_273, 24_175_809), 1024: (26_219_627, 24_238_625, 24_215_729)}


@pytest.mark.parametrize("resolution", [256, 1024])
def test_parameter_counts_at_the_originals_sizes(resolution):
    """The published models' sizes (LSUN Churches / Flowers / Indian Celebs 256, CelebA-HQ / FFHQ 1024).

    The G count at 1024 px is StyleGAN's 26,219,627 (MSG-StyleGAN keeps its toRGB at every scale); D adds
    the combine convs and a minibatch-stddev map in every block. Built without a forward pass.
    """
    g_count, d_count, d_no_mbstd = ORIGINAL_COUNTS[resolution]
    assert original_parameter_counts(resolution) == (g_count, d_count)
    assert original_parameter_counts(resolution, mbstd=False)[1] == d_no_mbstd
    nf = msg_gan.nf_rule(8192, 512)
    g = msg_gan.StyleGenerator(resolution, 3, 512, nf, name="G")
    d = msg_gan.StyleDiscriminator(resolution, 3, nf, name="D")
    g.build((None, 512))
    d.build(None)
    assert (_count(g), _count(d)) == (g_count, d_count)
    d_off = msg_gan.StyleDiscriminator(resolution, 3, nf, mbstd_group_size=1, name="D")
    d_off.build(None)
    assert _count(d_off) == d_no_mbstd
    assert sum(int(np.prod(w.shape)) for w in g.non_trainable_weights) == \
        512 + 2 * sum(4 ** r for r in range(2, int(math.log2(resolution)) + 1))  # dlatent_avg + noise


@pytest.mark.parametrize("group", [0, 1])
def test_mbstd_group_0_or_1_removes_the_layer_as_the_original(group):
    config = msg_gan.make_config("msg_stylegan", 16, 3, mbstd_group_size=group, **ARCH)
    d = msg_gan.build_networks(config)["D"]
    assert d.mbstd is None
    full = original_parameter_counts(16, True, 3, ARCH["fmap_base"], ARCH["fmap_max"])[1]
    assert _count(d) == original_parameter_counts(16, False, 3, ARCH["fmap_base"], ARCH["fmap_max"])[1] < full
    scales = [tf.random.normal([6, s, s, 3], seed=s) for s in (4, 8, 16)]
    together = d(scales).numpy()
    alone = np.concatenate([d([x[i:i + 1] for x in scales]).numpy() for i in range(6)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)  # no batch statistics left
    with_group = msg_gan.build_networks(msg_gan.make_config("msg_stylegan", 16, 3, mbstd_group_size=2, **ARCH))["D"]
    assert with_group.mbstd is not None and with_group.conv4.kernel.shape[2] == d.conv4.kernel.shape[2] + 1


def test_stored_noise_inputs_are_standard_normal_as_the_original():
    g = msg_gan.build_networks(msg_gan.make_config("msg_stylegan", 32, 1, **ARCH))["G"]
    noise = np.concatenate([v.numpy().ravel() for v in g.noise_consts])  # 2720 values
    assert abs(noise.mean()) < 0.1 and 0.9 < noise.std() < 1.1

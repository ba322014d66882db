"""CoGAN / SCoGAN / the domain classifier: sharing, each regulariser by hand, tiny runs, snapshot, resume,
the pair data commands and the bad inputs."""
import gzip
import json
import os
import subprocess
import sys

import keras
import numpy as np
import PIL.Image
import pytest
import scipy.ndimage
import tensorflow as tf

from vgrow_tf import snapshot
from vgrow_tf.data import inspect_dataset, pairs, read_labels, reader
from vgrow_tf.errors import UserError
from vgrow_tf.models import coupled_gan as cg
from vgrow_tf.training import loop
from vgrow_tf.training.options import make_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(z_dim=8, fmaps=32, batch_size=8, tick_kimg=0.016, snapshot_kimg=0.032, num_row=2, num_line=4)


@pytest.fixture(scope="module")
def pair8(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("data") / "digits2edge")
    pairs.create_digits_edge(base, resolution=8)
    return base + "-a", base + "-b"


def options(model, pair, **kw):
    return make_options(model, dataset=pair[0], dataset_b=pair[1], **dict(TINY, **kw))


def make_trainer(model, pair, **kw):
    opts = options(model, pair, **kw)
    keras.utils.set_random_seed(0)
    return cg.Trainer(opts, tf.distribute.get_strategy(), cg.Trainer.inspect_data(opts))


# --- sharing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["digits", "faces"])
def test_cogan_shares_layers_as_one_variable_object_and_scogan_does_not(arch):
    ids = lambda vs: {id(v) for v in vs}  # noqa: E731
    nets = cg.build_networks(cg.make_config("cogan", 16, 1, z_dim=8, fmaps=32, arch=arch))
    g1, g2, d1, d2 = nets["G1"], nets["G2"], nets["D1"], nets["D2"]
    trunk = [v for block in g1.trunk for v in block.trainable_variables]
    assert all(a is b for a, b in zip(g1.trunk, g2.trunk))
    assert ids(trunk) <= ids(g2.trainable_variables)
    shared = ids(g1.trainable_variables) & ids(g2.trainable_variables)
    assert shared == ids(trunk)
    assert len(g1.tail) == (2 if arch == "faces" else 1)
    assert not ids(v for b in g1.tail for v in b.trainable_variables) & ids(g2.trainable_variables)
    heads = 2 if arch == "faces" else 1
    d_shared = ids(d1.trainable_variables) & ids(d2.trainable_variables)
    assert d_shared == ids(v for b in d1.blocks[heads:] for v in b.trainable_variables)
    assert not ids(v for b in d1.blocks[:heads] for v in b.trainable_variables) & ids(d2.trainable_variables)
    # one variable: a change through G1 is seen by G2
    trunk[0].assign_add(tf.ones_like(trunk[0]))
    assert any(v is trunk[0] for v in g2.trainable_variables)

    soft = cg.build_networks(cg.make_config("scogan", 16, 1, z_dim=8, fmaps=32, arch=arch))
    assert not ids(soft["G1"].weights) & ids(soft["G2"].weights)
    assert not ids(soft["D1"].weights) & ids(soft["D2"].weights)


def test_cogan_trainer_has_one_optimizer_per_side_over_unique_variables(pair8):
    t = make_trainer("cogan", pair8)
    g_vars = t.groups["G"][0]
    assert len({id(v) for v in g_vars}) == len(g_vars)
    assert len(g_vars) < len(t.nets["G1"].trainable_variables) + len(t.nets["G2"].trainable_variables)
    assert t.weight_decay == 5e-4 and make_trainer("scogan", pair8).weight_decay == 0.0


# --- parameter counts at the original's real size, built without training ----------------------

def _count(model, trainable=False):
    return sum(int(np.prod(v.shape)) for v in (model.trainable_weights if trainable else model.weights))


@pytest.mark.parametrize("prelu,trainable,total", [("element", 8_112_259, 8_116_099),
                                                   ("channel", 7_868_419, 7_872_259)])
def test_digits_generator_has_the_originals_parameter_count(prelu, trainable, total):
    """gan32_gen_multi at 32 px RGB, z 100, full width: dense 100->4*4*1024, deconvs 512/256/128 (3x3)
    and 3 (6x6), BN and PReLU after each but the last. Per-element PReLU (the original's) has one slope
    per unit: 4*4*1024 + 8*8*512 + 16*16*256 + 32*32*128 = 245,760 slopes instead of 1,920 per channel.
    `total` adds the BN moving statistics (3,840), which are not trained."""
    config = cg.make_config("scogan", 32, 3, z_dim=100, fmaps=1024, prelu=prelu)
    g = cg.Generator(*cg.generator_layers(config, "G1"))
    g(tf.zeros([1, 100]))
    dense = 100 * 16384 + 16384
    convs = (9 * 1024 * 512 + 512) + (9 * 512 * 256 + 256) + (9 * 256 * 128 + 128) + (36 * 128 * 3 + 3)
    bn_trained = 2 * (1024 + 512 + 256 + 128)
    slopes = 245_760 if prelu == "element" else 1_920
    assert _count(g, trainable=True) == dense + convs + bn_trained + slopes == trainable
    assert _count(g) == total == trainable + 3_840


def test_digits_discriminator_and_encoder_have_the_originals_parameter_counts():
    config = cg.make_config("scogan", 32, 3, z_dim=100, fmaps=1024, cycle=True)
    d = cg.Sequence(sum(cg.discriminator_layers(config, "D1"), []))
    e = cg.Sequence(cg.encoder_layers(config), squeeze=False)
    d(tf.zeros([1, 32, 32, 3]))
    e(tf.zeros([1, 32, 32, 3]))
    # gan32_disc: conv20 5x5, conv50 5x5 (each + 2x2 max-pool), dense 8*8*50 -> 500, PReLU per unit, dense 1
    assert _count(d) == (75 * 20 + 20) + (500 * 50 + 50) + (3200 * 500 + 500) + 500 + (500 + 1)
    # Nets.encoder: conv64, conv128 s2, conv128 s2, conv256 s2 (3x3), dense 4*4*256 -> 100
    assert _count(e) == (27 * 64 + 64) + (576 * 128 + 128) + (1152 * 128 + 128) + (1152 * 256 + 256) \
        + (4096 * 100 + 100)


# --- regularisers by hand -------------------------------------------------------------------------

def test_feature_and_weight_regularisers_by_hand():
    rs = np.random.RandomState(0)
    f1 = [rs.randn(2, 4, 4, 3).astype(np.float32) for _ in range(3)]
    f2 = [rs.randn(2, 4, 4, 3).astype(np.float32) for _ in range(3)]
    expect = sum(np.mean((a - b) ** 2) for a, b in zip(f1[:2], f2[:2]))
    np.testing.assert_allclose(cg.feature_regulariser(f1, f2, 2), expect, rtol=1e-5)


def test_weight_regulariser_covers_every_generator_variable_as_the_original():
    """Original: weight_regularizer(g1, g2, shared_layers) sums mean((W1-W2)^2) over ALL trainable
    variables (shared_layers unused), so a change in the output layer alone counts."""
    config = cg.make_config("scogan", 16, 1, z_dim=8, fmaps=32)
    nets = cg.build_networks(config)
    g1, g2 = nets["G1"], nets["G2"]
    w1 = [v.numpy() for v in g1.trainable_variables]
    w2 = [v.numpy() for v in g2.trainable_variables]
    # one term per trainable weight: kernel, bias, BN gamma/beta, PReLU alpha per stage + the output deconv
    assert len(w1) == 5 * len(g1.trunk) + 2
    np.testing.assert_allclose(cg.weight_regulariser(g1, g2),
                               sum(np.mean((a - b) ** 2) for a, b in zip(w1, w2)), rtol=1e-5)
    for a, b in zip(g1.trainable_variables, g2.trainable_variables):
        b.assign(a)
    delta = np.random.RandomState(3).randn(*g2.tail[-1].op.kernel.shape).astype(np.float32)
    g2.tail[-1].op.kernel.assign_add(delta)
    np.testing.assert_allclose(cg.weight_regulariser(g1, g2), np.mean(delta ** 2), rtol=1e-5)


def test_semantic_and_cycle_losses_by_hand():
    rs = np.random.RandomState(1)
    x1, x2 = rs.randn(3, 2, 2, 1).astype(np.float32), rs.randn(3, 2, 2, 1).astype(np.float32)
    w = rs.randn(4, 5).astype(np.float32)

    def softmax(a):
        e = np.exp(a - a.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    classify = lambda x: tf.nn.softmax(tf.reshape(x, [3, 4]) @ w)  # noqa: E731
    p1, p2 = softmax(x1.reshape(3, 4) @ w), softmax(x2.reshape(3, 4) @ w)
    np.testing.assert_allclose(cg.semantic_loss(classify, x1, x2), np.mean((p1 - p2) ** 2), rtol=1e-5)

    z = rs.randn(3, 4).astype(np.float32)
    encoder = lambda x, training=False, seed=None: tf.reshape(x, [3, 4]) * 2.0  # noqa: E731
    expect = np.mean(np.abs(2 * x1.reshape(3, 4) - z)) + np.mean(np.abs(2 * x2.reshape(3, 4) - z))
    np.testing.assert_allclose(cg.cycle_loss(encoder, x1, x2, z), expect, rtol=1e-5)


def test_style_and_content_losses_by_hand():
    rs = np.random.RandomState(2)
    fake = [rs.randn(2, 4, 4, 3).astype(np.float32), rs.randn(2, 2, 2, 5).astype(np.float32)]
    real = [rs.randn(2, 4, 4, 3).astype(np.float32), rs.randn(2, 2, 2, 5).astype(np.float32)]

    def gram(f, hwc):
        b, h, w, c = f.shape
        flat = f.reshape(b, h * w, c)
        return np.einsum("bnc,bnd->bcd", flat, flat) / (h * w * c if hwc else h * w)

    for norm in ("hwc", "hw"):
        expect = np.mean([np.mean((gram(f, norm == "hwc") - gram(r, norm == "hwc")) ** 2)
                          for f, r in zip(fake, real)])
        np.testing.assert_allclose(cg.style_loss(fake, real, norm), expect, rtol=1e-5)
    c1, c2 = fake[1], real[1]
    np.testing.assert_allclose(cg.content_loss(c1, c2, "hwc"), np.mean((c1 - c2) ** 2) / 20, rtol=1e-5)
    np.testing.assert_allclose(cg.content_loss(c1, c2, "hw"), np.mean((c1 - c2) ** 2), rtol=1e-5)


def tiny_vgg_standin(path, size=8):
    """A stand-in for VGG19: preprocessed RGB -> five 'style' maps and one 'content' map."""
    keras.utils.set_random_seed(3)
    x = inp = keras.Input((size, size, 3))
    outputs = []
    for k in range(5):
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        outputs.append(x)
    outputs.append(keras.layers.Conv2D(6, 3, padding="same")(x))
    keras.Model(inp, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def classifier_snapshot(pair8, tmp_path_factory):
    """The classifier model end to end: a tiny run on both digit domains, its snapshot file."""
    run_dir = str(tmp_path_factory.mktemp("runs") / "classifier")
    opts = make_options("classifier", dataset=pair8[0], dataset_b=pair8[1], run_dir=run_dir, batch_size=16,
                        classifier_fmaps=4, total_kimg=0.064, tick_kimg=0.032, snapshot_kimg=0.064)
    loop.train(opts)
    return os.path.join(run_dir, "network-final.h5")


def test_classifier_snapshot_is_what_classifier_path_takes(classifier_snapshot):
    snap = snapshot.load(classifier_snapshot, expect_kind="classifier")
    assert snap.config["output"] == "softmax" and snap.config["num_outputs"] == 10
    classify, config = cg.load_classifier(classifier_snapshot)
    probs = classify(tf.zeros([3, 16, 16, 3]))  # other size and channels are converted
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(UserError, match="has no generator"):
        snap.generate(np.zeros([1, 1]))


@pytest.fixture(scope="module")
def all_terms(pair8, classifier_snapshot, tmp_path_factory):
    vgg = tiny_vgg_standin(str(tmp_path_factory.mktemp("vgg") / "vgg.keras"))
    return make_trainer("scogan", pair8, feature_weight=1.0, weight_reg_weight=1.0, semantic_weight=1.0,
                        classifier_path=classifier_snapshot, cycle_weight=1.0, style_weight=1.0,
                        content_weight=1.0, vgg_weights=vgg, shared_layers=1)


def _outputs(t, z):
    return t.nets["G1"](z, training=True), t.nets["G2"](z, training=True)


def test_each_regulariser_zero_for_identical_generators_and_positive_otherwise(all_terms):
    t = all_terms
    z = tf.random.uniform([4, 8], -1, 1, seed=1)
    reals = tf.random.uniform([4, 8, 8, 1], -1, 1, seed=2)
    terms = {k: (float(a), float(b)) for k, (a, b) in t.regularisers(*_outputs(t, z), z, reals, reals).items()}
    assert set(terms) == {"feature", "weight", "semantic", "cycle", "style", "content"}
    for name in ("feature", "weight", "semantic", "content", "cycle", "style"):
        assert terms[name][0] > 0, name
    saved = [w.numpy() for w in t.nets["G2"].weights]
    for a, b in zip(t.nets["G1"].weights, t.nets["G2"].weights):
        b.assign(a)
    try:
        same = t.regularisers(*_outputs(t, z), z, reals, reals)
        for name in ("feature", "weight", "semantic", "content"):
            assert float(same[name][0]) == pytest.approx(0.0, abs=1e-7), name
        # the terms that do not compare G1 with G2 are the same for both generators when they are equal
        for name in ("cycle", "style"):
            np.testing.assert_allclose(float(same[name][0]), float(same[name][1]), rtol=1e-4)
    finally:
        for w, value in zip(t.nets["G2"].weights, saved):
            w.assign(value)


def test_regularisers_match_their_hand_formulas_inside_the_trainer(all_terms):
    t = all_terms
    z = tf.random.uniform([4, 8], -1, 1, seed=3)
    reals = tf.random.uniform([4, 8, 8, 1], -1, 1, seed=4)
    out1, out2 = _outputs(t, z)
    terms = t.regularisers(out1, out2, z, reals, reals)
    f1, f2 = [o.numpy() for o in out1], [o.numpy() for o in out2]
    np.testing.assert_allclose(terms["feature"][0], np.mean((f1[0] - f2[0]) ** 2), rtol=1e-4)
    v1, v2 = t.nets["G1"].trainable_variables, t.nets["G2"].trainable_variables
    np.testing.assert_allclose(terms["weight"][0], sum(np.mean((a.numpy() - b.numpy()) ** 2)
                                                       for a, b in zip(v1, v2)), rtol=1e-4)
    e = t.nets["E"]
    l1 = np.mean(np.abs(e(f1[-1], training=False).numpy() - z.numpy())) \
        + np.mean(np.abs(e(f2[-1], training=False).numpy() - z.numpy()))
    np.testing.assert_allclose(terms["cycle"][0], l1, rtol=1e-4)
    p1, p2 = t.classify(f1[-1]).numpy(), t.classify(f2[-1]).numpy()
    np.testing.assert_allclose(terms["semantic"][0], np.mean((p1 - p2) ** 2), rtol=1e-4)
    c1 = cg.vgg_features(t.vgg, f1[-1])[-1].numpy()
    c2 = cg.vgg_features(t.vgg, f2[-1])[-1].numpy()
    np.testing.assert_allclose(terms["content"][0], np.mean((c1 - c2) ** 2) / c1[0].size, rtol=1e-4)


def test_weight_zero_means_no_term_and_no_gradient_path(pair8):
    t = make_trainer("scogan", pair8)
    z = tf.random.uniform([4, 8], -1, 1, seed=5)
    reals = tf.zeros([4, 8, 8, 1])
    with tf.GradientTape(persistent=True) as tape:
        out1, out2 = _outputs(t, z)
        terms = t.regularisers(out1, out2, z, reals, reals)
        loss2 = tf.reduce_mean(t.nets["D2"](out2[-1]))
    assert terms == {} and "E" not in t.nets and t.classify is None and t.vgg is None
    assert all(g is None for g in tape.gradient(loss2, t.nets["G1"].trainable_variables))
    # and the G step computes no encoder gradients
    grads, _ = t._g_grads(z, reals, reals, tf.zeros([3, 2], tf.int64))
    assert set(grads) == {"G1", "G2"}


def test_cycle_term_runs_the_encoder_without_dropout_also_for_its_own_update(pair8):
    """Original: E is called without training= (inference: Dropout(0.4) off) for the generators' loss
    and for E's update. So the term and E's gradients do not depend on the dropout seeds and equal the
    L1 formula through E in inference mode."""
    t = make_trainer("scogan", pair8, cycle_weight=10.0)
    e = t.nets["E"]
    z = tf.random.uniform([8, 8], -1, 1, seed=7)
    reals = tf.zeros([8, 8, 8, 1])
    out1, out2 = _outputs(t, z)  # G in training mode (BN batch statistics): deterministic given z
    with tf.GradientTape() as tape:
        by_hand = (tf.reduce_mean(tf.abs(e(out1[-1], training=False) - z))
                   + tf.reduce_mean(tf.abs(e(out2[-1], training=False) - z)))
    expect_grads = tape.gradient(by_hand, e.trainable_variables)
    l1 = np.mean(np.abs(e(out1[-1], training=False).numpy() - z.numpy())) \
        + np.mean(np.abs(e(out2[-1], training=False).numpy() - z.numpy()))
    np.testing.assert_allclose(float(by_hand), l1, rtol=1e-5)
    for seeds in ([[1, 2], [3, 4], [5, 6]], [[9, 8], [7, 6], [5, 4]]):
        grads, stats = t._g_grads(z, reals, reals, tf.constant(seeds, tf.int64))
        np.testing.assert_allclose(float(stats["cycle"]), l1, rtol=1e-5)
        for g, want in zip(grads["E"], expect_grads):
            np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-4, atol=1e-7)


def test_cycle_term_trains_the_encoder(pair8):
    t = make_trainer("scogan", pair8, cycle_weight=10.0)
    before = [w.numpy().copy() for w in t.nets["E"].trainable_variables]
    z = tf.random.uniform([8, 8], -1, 1, seed=6)
    reals = tf.zeros([8, 8, 8, 1])
    grads, stats = t._g_grads(z, reals, reals, tf.zeros([3, 2], tf.int64))
    assert set(grads) == {"G1", "G2", "E"} and all(g is not None for g in grads["E"])
    loss0 = float(stats["cycle"])
    for _ in range(3):
        t.train_iteration(0)
    after = t.nets["E"].trainable_variables
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, after))
    for w, b in zip(after, before):
        w.assign(b)
    for _ in range(10):  # E's own updates on the same z lower the term (G fixed)
        grads, _ = t._g_grads(z, reals, reals, tf.zeros([3, 2], tf.int64))
        t.opts["E"].apply_gradients(zip(grads["E"], t.groups["E"][0]))
    _, stats = t._g_grads(z, reals, reals, tf.zeros([3, 2], tf.int64))
    assert float(stats["cycle"]) < loss0


# --- runs, snapshots, resume -------------------------------------------------------------------

def _run(model, pair, run_dir, **kw):
    loop.train(options(model, pair, run_dir=str(run_dir), **kw))


@pytest.mark.parametrize("model,extra", [("cogan", {}),
                                         ("scogan", dict(adv_loss="wgan-gp", feature_weight=10.0,
                                                         weight_reg_weight=10.0, cycle_weight=10.0,
                                                         shared_layers=1))])
def test_tiny_run_outputs_snapshot_round_trip_and_one_trace(model, extra, pair8, tmp_path):
    run_dir = tmp_path / model
    _run(model, pair8, run_dir, total_kimg=0.048, **extra)
    files = os.listdir(run_dir)
    assert {"network-final.h5", "log.txt", "fakes000000.png"} <= set(files)
    ticks = [line for line in open(run_dir / "log.txt") if line.startswith("tick")]
    assert ticks and "nan" not in " ".join(ticks).lower() and "d1" in ticks[-1] and "nonfinite 0" in ticks[-1]
    grid = np.asarray(PIL.Image.open(run_dir / "fakes000000.png"))
    gap = loop.GRID_GAP
    assert grid.shape[:2] == (2 * 8 + gap, 4 * 8 + 3 * gap)  # 2 x 4 cells (2 pairs per row), gaps between

    snap = snapshot.load(str(run_dir / "network-final.h5"))
    assert snap.kind == model and set(snap.networks) >= {"G1", "G2", "D1", "D2"}
    z = cg.sample_latents(snap.config, 5)
    a, b, both = (snap.generate(z, domain=d) for d in ("a", "b", "both"))
    assert a.shape == (5, 8, 8, 1) and both.shape == (5, 8, 16, 1) and np.isfinite(both).all()
    np.testing.assert_array_equal(both[:, :, :8], a)
    np.testing.assert_array_equal(both[:, :, 8:], b)
    # rebuilt from the file == the trainer's networks after its last step
    t = make_trainer(model, pair8, **extra)
    ckpt = tf.train.Checkpoint(**{k: loop.checkpointable(v) for k, v in t.checkpoint_items().items()})
    ckpt.restore(tf.train.latest_checkpoint(str(run_dir / "checkpoints"))).expect_partial()
    np.testing.assert_array_equal(cg.generate(t.networks(), t.config(), z, domain="both"), both)

    t.trace_count = 0
    for _ in range(3):
        stats = t.train_iteration(0)
        assert not stats["nonfinite"] and all(np.isfinite(v) for k, v in stats.items() if k != "nimg")
    assert t.trace_count == 1


@pytest.mark.parametrize("model,extra", [("cogan", {}),
                                         ("scogan", dict(adv_loss="wgan-gp", feature_weight=1.0,
                                                         cycle_weight=1.0, shared_layers=1))])
def test_resume_equals_uninterrupted(model, extra, pair8, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _run(model, pair8, straight, total_kimg=0.048, deterministic=True, **extra)
    _run(model, pair8, split, total_kimg=0.024, snapshot_kimg=0.024, deterministic=True, **extra)
    _run(model, pair8, split, total_kimg=0.048, deterministic=True, resume=True, **extra)
    a = snapshot.load(str(straight / "network-final.h5")).networks
    b = snapshot.load(str(split / "network-final.h5")).networks
    for name in a:
        for wa, wb in zip(a[name].weights, b[name].weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=f"{name}/{wa.path}")


def test_pair_agreement_is_a_fraction(all_terms):
    frac = cg.pair_agreement(all_terms.nets, all_terms.arch, all_terms.classify, count=20, batch_size=10)
    assert 0.0 <= frac <= 1.0


# --- bad inputs ----------------------------------------------------------------------------------

def test_bad_inputs_are_one_clear_user_error(pair8, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--dataset_b"):
        cg.Trainer.inspect_data(make_options("scogan", dataset=pair8[0]))
    with pytest.raises(UserError, match="does not exist"):
        make_trainer("scogan", pair8, semantic_weight=1.0, classifier_path=str(tmp_path / "missing.h5"))
    with pytest.raises(UserError, match="--classifier_path"):
        make_trainer("scogan", pair8, semantic_weight=1.0)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    with pytest.raises(UserError, match="--vgg_weights"):
        make_trainer("scogan", pair8, content_weight=1.0)
    with pytest.raises(UserError, match="--shared_layers"):
        make_trainer("scogan", pair8, feature_weight=1.0, shared_layers=5)


def test_missing_dataset_b_on_the_command_line_is_one_line(pair8, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--model=cogan",
                           f"--dataset={pair8[0]}", f"--path={tmp_path}"],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "--dataset_b" in errors[0]
    assert "Traceback" not in proc.stderr


# --- data commands ---------------------------------------------------------------------------------

def test_digits_edge_pair(pair8):
    a, b = inspect_dataset(pair8[0]), inspect_dataset(pair8[1])
    assert a.num_images == b.num_images == 898 and a.label_size == b.label_size == 10
    assert a.metadata["domain"] == "a" and b.metadata["partner"] == os.path.abspath(pair8[0])
    x = np.zeros([1, 1, 5, 5], np.uint8)
    x[0, 0, 2, 2] = 200
    e = pairs.edges(x)[0, 0]
    assert e[2, 2] == 0 and e[1, 1] == 200 and e[0, 0] == 0 and e[3, 2] == 200


def _write_idx(folder, images, labels):
    os.makedirs(folder, exist_ok=True)
    with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(b"\0" * 16 + images.tobytes())
    with gzip.open(os.path.join(folder, "train-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(b"\0" * 8 + labels.tobytes())


def test_create_mnist_edge_on_fake_idx_files(tmp_path):
    rs = np.random.RandomState(0)
    images = rs.randint(0, 256, [10, 28, 28]).astype(np.uint8)
    labels = rs.randint(0, 10, [10]).astype(np.uint8)
    _write_idx(str(tmp_path / "mnist"), images, labels)
    out = str(tmp_path / "m2e")
    assert pairs.create_mnist_edge(out, str(tmp_path / "mnist"), shuffle=False) == [5, 5]
    a = np.stack(list(reader.iterate_uint8(inspect_dataset(out + "-a"))))
    b = np.stack(list(reader.iterate_uint8(inspect_dataset(out + "-b"))))
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)])
    np.testing.assert_array_equal(a[:, 0], padded[:5])
    dil = scipy.ndimage.grey_dilation(padded[5:], size=(1, 3, 3)).astype(int)
    np.testing.assert_array_equal(b[:, 0], np.clip(dil - padded[5:], 0, 255))
    np.testing.assert_array_equal(read_labels(inspect_dataset(out + "-b")).argmax(1), labels[5:])


def test_create_celeba_attribute_pair_via_dataset_tool(tmp_path):
    celeba = tmp_path / "celeba"
    os.makedirs(celeba / "img_align_celeba")
    rs = np.random.RandomState(1)
    names = [f"{i:06d}.jpg" for i in range(1, 6)]
    blond = [1, -1, 1, -1, -1]
    for n in names:
        PIL.Image.fromarray(rs.randint(0, 256, [218, 178, 3]).astype(np.uint8)).save(celeba / "img_align_celeba" / n)
    with open(celeba / "list_attr_celeba.txt", "w") as f:
        f.write("5\nBlond_Hair Smiling\n")
        for n, v in zip(names, blond):
            f.write(f"{n} {v:2d} 1\n")
    out = str(tmp_path / "blond")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "dataset_tool.py"), "create_celeba", out,
                           str(celeba), "--attribute", "Blond_Hair", "--resolution", "16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    a, b = inspect_dataset(out + "-a"), inspect_dataset(out + "-b")
    assert (a.num_images, b.num_images, a.resolution) == (2, 3, 16)
    assert a.metadata["attribute"] == "Blond_Hair" and a.metadata["crop_fraction"] == 0.7
    np.testing.assert_array_equal(read_labels(a)[:, 0], [1, 1])
    np.testing.assert_array_equal(read_labels(b)[:, 0], [0, 0, 0])
    with pytest.raises(UserError, match="unknown CelebA attribute"):
        pairs.create_celeba_pairs(str(tmp_path / "x"), str(celeba), "Bald")


def test_create_cyclegan_resizes_and_records_it(tmp_path):
    src = tmp_path / "apple2orange"
    rs = np.random.RandomState(2)
    for sub, n in (("trainA", 3), ("trainB", 2)):
        os.makedirs(src / sub)
        for i in range(n):
            PIL.Image.fromarray(rs.randint(0, 256, [32, 32, 3]).astype(np.uint8)).save(src / sub / f"{i}.jpg")
    out = str(tmp_path / "a2o")
    assert pairs.create_cyclegan(out, str(src), resolution=16) == [3, 2]
    a = inspect_dataset(out + "-a")
    assert a.resolution == 16 and json.load(open(os.path.join(out + "-a", "dataset.json")))["resolution"] == 16
    with pytest.raises(UserError, match="trainA"):
        pairs.create_cyclegan(str(tmp_path / "y"), str(tmp_path), resolution=16)


def test_reals_png_shows_both_domains_like_the_fakes_as_typed(pair8):
    """reals.png alternates domain A and domain B images, as the fakes grids show G1(z) | G2(z)."""
    cwd = os.path.dirname(pair8[0])
    run = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--model=cogan",
                          "--dataset=digits2edge-a", "--dataset_b=digits2edge-b", "--fmaps=16", "--z_dim=8",
                          "--batch_size=8", "--total_kimg=0.008", "--num_row=2", "--num_line=4", "--d_fmaps=1024",
                          "--run_dir=results/reals"], cwd=cwd, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == 0, run.stderr[-2000:]
    grid = np.asarray(PIL.Image.open(os.path.join(cwd, "results", "reals", "reals.png")))
    gap = loop.GRID_GAP
    assert grid.shape[:2] == (2 * 8 + gap, 4 * 8 + 3 * gap)
    firsts = [next(iter(reader.load_dataset(p, 4, resolution=8, shuffle=False)))["image"].numpy() for p in pair8]
    cell = lambda i, j: grid[i * (8 + gap):i * (8 + gap) + 8, j * (8 + gap):j * (8 + gap) + 8]  # noqa: E731
    quantise = lambda x: np.clip(np.rint(x[..., 0] * 127.5 + 127.5), 0, 255)  # noqa: E731
    for k in range(4):  # row-major cells: A0 B0 A1 B1 / A2 B2 A3 B3
        i, j = divmod(2 * k, 4)
        np.testing.assert_array_equal(cell(i, j), quantise(firsts[0][k]))
        np.testing.assert_array_equal(cell(i, j + 1), quantise(firsts[1][k]))
    # --d_fmaps=1024: the reference discriminators (20-50-500 maps) beside a 16-map generator
    snap = snapshot.load(os.path.join(cwd, "results", "reals", "network-final.h5"))
    widths = [int(block.op.kernel.shape[-1]) for block in snap.networks["D2"].blocks]
    assert widths == [20, 50, 500, 1] and snap.config["d_fmaps"] == 1024 and snap.config["fmaps"] == 16


@pytest.mark.parametrize("config", ["configs/cogan/digits.cfg", "configs/scogan/digits.cfg"])
def test_digits_demos_use_reference_discriminators(config):
    """Narrow demo generators with the reference discriminators: at --fmaps=128 alone, D's first layer has
    4 maps and domain B (edges) never leaves noise."""
    with open(os.path.join(ROOT, config)) as f:
        flags = dict(line.strip().lstrip("-").split("=", 1) for line in f if line.startswith("--"))
    assert flags["d_fmaps"] == "1024" and int(flags["fmaps"]) <= 128


def test_digits_edge_pair_is_upsampled_smoothly():
    """Bicubic, not nearest: edges of nearest-upsampled 8x8 blocks are 1 px lattice lines ("mazes")."""
    images, labels = pairs.smooth_digits(16)
    assert images.shape == (1797, 1, 16, 16) and len(labels) == 1797
    blocks = images[:, 0].reshape(1797, 8, 2, 8, 2).astype(int)
    spread = blocks.max(axis=(2, 4)) - blocks.min(axis=(2, 4))
    assert (spread > 0).mean() > 0.3  # nearest upsampling gives constant 2x2 blocks (spread 0 everywhere)

"""VGrow-PG: networks, the particle step, the G fit, and a tiny end-to-end run with resume."""
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import divergences, snapshot
from vgrow_tf.models import vgrow_pg
from vgrow_tf.training import loop
from vgrow_tf.training.options import make_options

TINY = dict(fmaps=8, batch_size=8, dur_nimg=64, tick_kimg=0.064, snapshot_kimg=0.128, num_row=2, num_line=3)


@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(0)
    config = vgrow_pg.make_config(16, 1, z_dim=8, fmaps=8)
    return config, vgrow_pg.build_networks(config)


def test_generator_outputs_full_canvas_at_every_level(nets):
    config, n = nets
    z = tf.random.normal([3, 8])
    for level in (2, 3, 4):
        assert n["G"](z, level=level, alpha=0.3).shape == (3, 16, 16, 1)


def test_fade_endpoints_equal_neighbouring_levels(nets):
    """alpha = 1 is exactly the previous level (old path); alpha = 0 the new one."""
    _, n = nets
    z = tf.random.normal([4, 8])
    np.testing.assert_allclose(n["G"](z, level=4, alpha=1.0), n["G"](z, level=3, alpha=0.0), atol=1e-5)
    x = tf.random.normal([4, 16, 16, 1])
    np.testing.assert_allclose(n["D"](x, level=4, alpha=1.0), n["D"](x, level=3, alpha=0.0), atol=1e-4)
    assert not np.allclose(n["D"](x, level=4, alpha=0.0), n["D"](x, level=3, alpha=0.0), atol=1e-4)


def test_4x4_pixelnorm_bug_is_kept_by_default_and_switchable():
    fixed = vgrow_pg.build_networks(vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8, fix_4x4_pixelnorm=True))
    buggy = vgrow_pg.build_networks(vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8))
    for a, b in zip(fixed["G"].weights, buggy["G"].weights):
        b.assign(a)
    z = tf.random.normal([2, 8])
    assert buggy["G"].pn_axis == 1 and fixed["G"].pn_axis == -1
    assert not np.allclose(fixed["G"](z, level=2), buggy["G"](z, level=2))


@pytest.fixture(scope="module")
def trainer(digits8):
    options = make_options("vgrow_pg", dataset=digits8, **TINY)
    strategy = tf.distribute.get_strategy()
    info = vgrow_pg.Trainer.inspect_data(options)
    return vgrow_pg.Trainer(options, strategy, info)


def test_particle_step_moves_samples_up_the_logit(trainer):
    particles = trainer.G(tf.random.normal([8, 512]), level=3)
    before = trainer.D(particles, level=3)
    moved = trainer._move_particles(particles, 3, 0.0)
    after = trainer.D(moved, level=3)
    assert float(tf.reduce_sum(after)) > float(tf.reduce_sum(before))


def test_generator_fit_equals_ascent_on_d_for_kl(trainer):
    """With KL (s = 1) the first G step's gradient is -step_size * grad_theta sum d(G(z)) (spec §1.2)."""
    z = tf.random.normal([8, 512])
    particles = trainer.G(z, level=3)
    moved = trainer._move_particles(particles, 3, 0.0)
    grads, _ = trainer._g_grads(z, moved, 3, 0.0)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(trainer.D(trainer.G(z, level=3), level=3))
    ascent = tape.gradient(total, trainer.G.trainable_variables)
    for g, a in zip(grads, ascent):
        np.testing.assert_allclose(g, -trainer.options.step_size * a, rtol=1e-3, atol=1e-5)


def test_s_weight_is_used_from_divergences(trainer):
    d = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(divergences.s_weight(tf.constant(d, tf.float32), "JS"),
                               1 / (1 + 1 / (1e-6 + np.exp(d))), rtol=1e-5)


def _run(digits8, run_dir, **kw):
    options = make_options("vgrow_pg", dataset=digits8, run_dir=str(run_dir), **dict(TINY, **kw))
    loop.train(options)
    return options


def test_tiny_run_writes_outputs_and_resumes(digits8, tmp_path):
    run_dir = tmp_path / "run"
    _run(digits8, run_dir, total_kimg=0.256)
    files = os.listdir(run_dir)
    assert "network-final.h5" in files and "log.txt" in files and "flags.txt" in files
    assert "fakes000000.png" in files and glob.glob(str(run_dir / "events.out.tfevents.*"))
    assert glob.glob(str(run_dir / "network-snapshot-*.h5"))
    ticks = [l for l in open(run_dir / "log.txt") if l.startswith("tick")]
    assert ticks and "lod" in ticks[-1] and "sec/kimg" in ticks[-1]

    _run(digits8, run_dir, total_kimg=0.384, resume=True)
    log = open(run_dir / "log.txt").read()
    assert "Resumed from" in log and "kimg       0.4" in log
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-384")

    snap = snapshot.load(str(run_dir / "network-final.h5"))
    images = snap.generate(np.random.RandomState(0).randn(5, 512).astype(np.float32))
    assert images.shape == (5, 8, 8, 1) and np.isfinite(images).all()
    assert snap.config["lod"] == 0.0 or snap.config["lod"] > 0


def test_one_trace_per_level(trainer):
    trainer._steps.clear()
    trainer.trace_counts.clear()
    nimg = 0
    for _ in range(12):  # crosses 4x4 stable, the 8x8 fade and 8x8 stable (dur_nimg 64, batch 8)
        nimg += trainer.train_iteration(nimg)["nimg"]
    assert trainer.trace_counts == {2: 1, 3: 1}


def test_interrupted_and_resumed_run_ends_with_the_same_weights(digits8, tmp_path):
    """Exact resume: RNG, data position, optimizer moments, EMA and phase all come back."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    _run(digits8, straight, total_kimg=0.256, deterministic=True)
    _run(digits8, split, total_kimg=0.128, deterministic=True)   # crosses the 4->8 fade (dur 64)
    _run(digits8, split, total_kimg=0.256, deterministic=True, resume=True)
    a = snapshot.load(str(straight / "network-final.h5")).networks
    b = snapshot.load(str(split / "network-final.h5")).networks
    for name in ("G", "D", "Gs"):
        for wa, wb in zip(a[name].weights, b[name].weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=f"{name}/{wa.path}")


def test_several_iterations_per_call_keep_weights_ticks_and_checkpoints(digits8, tmp_path, monkeypatch):
    """Calls of 4 iterations cut at ticks (every 5 iterations here) and phase changes, so the tick lines'
    image counts and the checkpoints equal one iteration per call; the weights agree to float32 rounding
    (the unrolled graph is optimised differently: ~1e-6 relative after 32 iterations)."""
    calls = []
    original = vgrow_pg.Trainer.train_iterations
    monkeypatch.setattr(vgrow_pg.Trainer, "train_iterations",
                        lambda self, *a: calls.append(len(out := original(self, *a))) or out)
    runs = {}
    for per_call in (1, 4):
        run_dir = tmp_path / f"per_call{per_call}"
        _run(digits8, run_dir, total_kimg=0.256, tick_kimg=0.04, deterministic=True, iterations_per_call=per_call)
        ticks = [line.split()[3] for line in open(run_dir / "log.txt") if line.startswith("tick")]
        runs[per_call] = ticks, sorted(os.listdir(run_dir / "checkpoints")), \
            snapshot.load(str(run_dir / "network-final.h5")).networks
    assert set(calls[:32]) == {1} and 4 in calls[32:] and sum(calls[32:]) == 32  # 32 iterations each
    assert runs[1][0] == runs[4][0] and runs[1][1] == runs[4][1]
    for name in ("G", "D", "Gs"):
        for a, b in zip(runs[1][2][name].weights, runs[4][2][name].weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-7, err_msg=f"{name}/{a.path}")

"""--mixed_precision: which policy a machine gets, what stays float32, loss scaling, snapshots, and a
VGrow-PG iteration in mixed_bfloat16 (the CPU policy) that tracks float32."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import layers
from vgrow_tf.training import precision, steps


@pytest.fixture
def policy():
    """Sets a global policy for one test and restores float32 after it."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def bf16(x):
    return tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy()


# --- which policy ------------------------------------------------------------------------------

def test_policy_follows_the_machine():
    assert precision.choose_policy(False, False, cpu_bfloat16=True) == ("mixed_bfloat16", None)
    policy, note = precision.choose_policy(False, False, cpu_bfloat16=False)
    assert policy == "float32" and "no bfloat16 units" in note and "\n" not in note
    assert precision.choose_policy(True, False, False) == ("mixed_float16", None)
    # GLO cannot loss-scale its latent table: bfloat16 on Ampere+, else float32 with a note
    assert precision.choose_policy(True, True, False, float16_ok=False) == ("mixed_bfloat16", None)
    assert precision.choose_policy(True, False, True, float16_ok=False)[0] == "float32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx2\nbogomips\t: 1\n")
    assert precision.cpu_has_bfloat16(precision.cpu_flags(str(info)))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx2\n")
    assert not precision.cpu_has_bfloat16(precision.cpu_flags(str(info)))
    assert precision.cpu_flags(str(tmp_path / "absent")) == set()


def test_a_run_without_the_flag_is_float32_after_a_mixed_one(policy, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    assert precision.configure(True) == "mixed_bfloat16"
    assert precision.configure(False) == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    assert precision.configure(True) == "float32"
    assert "no bfloat16 units" in capsys.readouterr().out


# --- what stays float32 --------------------------------------------------------------------------

def test_equalized_lr_scale_is_applied_in_float32(policy):
    policy("mixed_bfloat16")
    dense = layers.EqualizedDense(1, gain=1.7, use_bias=False)
    dense.build((None, 1))  # fan_in 1: scale = gain
    k = np.float32(1.0 + 3 * 2 ** -9)  # not a bfloat16 value: rounding before scaling would differ
    dense.kernel.assign([[k]])
    assert dense.kernel.dtype == "float32"
    y = dense(tf.ones([1, 1])).numpy()
    assert y.dtype == tf.bfloat16.as_numpy_dtype
    expected = bf16(np.float32(k) * np.float32(1.7))        # one rounding, after the float32 product
    assert float(y[0, 0]) == float(expected)
    assert float(expected) != float(bf16(bf16(k) * bf16(1.7)))  # what scaling in bfloat16 gives


def test_norm_and_mbstd_statistics_are_float32():
    rng = np.random.RandomState(0)
    x32 = (rng.randn(4, 3, 3, 64) * 30).astype(np.float32)
    x = tf.cast(x32, tf.bfloat16)
    xr = bf16(x32)  # the bfloat16 input, exactly, in float32
    # pixel norm: the statistic from the bfloat16 values in float32, one rounding, then the multiply
    stat = bf16(1.0 / np.sqrt(np.mean(xr.astype(np.float64) ** 2, -1, keepdims=True) + 1e-8))
    got = layers.pixel_norm(x).numpy().astype(np.float32)
    np.testing.assert_allclose(got, bf16(xr * stat), rtol=1e-2)
    assert layers.pixel_norm(x).dtype == tf.bfloat16
    # instance norm: all in float32, rounded once at the end (<= half a bfloat16 ulp)
    centred = xr - xr.mean((1, 2), keepdims=True)
    expected = centred / np.sqrt(np.mean(centred ** 2, (1, 2), keepdims=True) + 1e-8)
    got = layers.instance_norm(x).numpy().astype(np.float32)
    np.testing.assert_allclose(got, expected, rtol=2 ** -8, atol=1e-6)
    # minibatch stddev of the whole batch, from the float32 statistic
    out = layers.MinibatchStddev(group_size=None, epsilon=1e-8)(x).numpy().astype(np.float32)
    std = np.sqrt(np.mean((xr - xr.mean(0)) ** 2, 0) + 1e-8).mean()
    np.testing.assert_allclose(out[..., -1], std, rtol=2 ** -8)


@pytest.mark.parametrize("model", ["vgrow_pg", "msg_stylegan", "msg_progan"])
def test_networks_keep_variables_outputs_and_last_layers_float32(policy, model):
    from vgrow_tf.models import msg_gan, vgrow_pg
    policy("mixed_bfloat16")
    if model == "vgrow_pg":
        nets = vgrow_pg.build_networks(vgrow_pg.make_config(8, 1, z_dim=16, fmaps=8))
        g, d = nets["G"], nets["D"]
        last = g.to_rgb + [d.logit]
        inner = g.blocks[0][0]
        images = g(tf.zeros([2, 16]))
        logits = d(images)
    else:
        nets = msg_gan.build_networks(msg_gan.make_config(model, 8, 1, 16, fmap_base=32, fmap_max=8,
                                                          mapping_fmaps=16, mapping_layers=2))
        g, d = nets["G"], nets["D"]
        last = g.to_rgb + [d.out]
        inner = g.convs[-1][0]
        images = g(tf.random.normal([2, 16]))
        logits = d(images)
        images = images[-1]
    assert inner.compute_dtype == "bfloat16"
    assert all(layer.compute_dtype == "float32" for layer in last)
    assert images.dtype == tf.float32 and logits.dtype == tf.float32
    assert {w.dtype for net in nets.values() for w in net.weights} == {"float32"}  # incl. Gs, dlatent_avg


# --- float16 on GPUs: loss scaling (runnable on CPU) ---------------------------------------------

def test_float16_policy_scales_the_loss_and_skips_non_finite_steps(policy):
    policy("mixed_float16")
    optimizer = steps.make_adam(0.1, beta_1=0.0, beta_2=0.99)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    reference = keras.optimizers.Adam(0.1, beta_1=0.0, beta_2=0.99)
    w, w_ref = tf.Variable([1.0, -2.0]), tf.Variable([1.0, -2.0])
    optimizer.build([w])
    scale = float(optimizer.dynamic_scale.numpy())
    assert scale > 1 and float(steps.scale_loss(optimizer, tf.constant(2.0))) == 2.0 * scale
    strategy = tf.distribute.get_strategy()
    g = tf.constant([0.5, -0.25])
    # gradients of the scaled loss are unscaled before Adam sees them
    assert bool(steps.apply_if_finite(strategy, optimizer, [g * scale], [w]))
    reference.apply_gradients([(g, w_ref)])
    np.testing.assert_allclose(w.numpy(), w_ref.numpy(), rtol=1e-6)
    # an overflow: no update, the scale halves
    before = w.numpy()
    assert not bool(steps.apply_if_finite(strategy, optimizer, [tf.constant([np.inf, 1.0])], [w]))
    np.testing.assert_array_equal(w.numpy(), before)
    assert float(optimizer.dynamic_scale.numpy()) == scale / 2


# --- a training run ------------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import sys
    import h5py
    import keras
    import numpy as np
    import tensorflow as tf
    from vgrow_tf.data import tool
    from vgrow_tf.models import vgrow_pg
    from vgrow_tf.training import loop
    from vgrow_tf.training.options import make_options

    data, run_dir = sys.argv[1], sys.argv[2]
    tool.create_digits(data, resolution=8)

    def first_iterations(policy):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        opts = make_options("vgrow_pg", dataset=data, fmaps=16, batch_size=16, dur_nimg=10**6, seed=1)
        trainer = vgrow_pg.Trainer(opts, tf.distribute.get_strategy(), vgrow_pg.Trainer.inspect_data(opts))
        stats = [trainer.train_iteration(16 * i) for i in range(3)]
        assert trainer.D(tf.zeros([2, 8, 8, 1]), level=2).dtype == tf.float32   # logits stay float32
        slots = [v for v in trainer.opt_d.variables if v.dtype != "int64"]  # Adam moments, not its step
        assert {v.dtype for v in slots + trainer.Gs.weights} == {"float32"}
        return stats, trainer.G.dense.kernel.dtype

    full, _ = first_iterations("float32")
    mixed, dtype = first_iterations("mixed_bfloat16")
    assert dtype == "float32"                       # variables stay float32; compute is bfloat16
    for f, m in zip(full, mixed):
        for key in ("d_real", "d_fake", "g_loss"):
            rel = abs(f[key] - m[key]) / max(abs(f[key]), 1e-3)
            assert rel < 0.05, (key, f[key], m[key])  # bfloat16 has ~3 significant digits
        assert not m["nonfinite"]

    # a whole run (4 px, a fade to 8 px, 8 px) under the CPU's mixed policy writes a float32 snapshot
    from vgrow_tf.training import precision
    precision.cpu_flags = lambda: {"avx512_bf16"}
    loop.train(make_options("vgrow_pg", dataset=data, run_dir=run_dir, fmaps=8, z_dim=16, batch_size=16,
                            dur_nimg=32, total_kimg=0.096, tick_kimg=0.032, mixed_precision=True))  # with a fade
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    with h5py.File(run_dir + "/network-final.h5") as f:
        dtypes = set()
        f.visititems(lambda name, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {np.dtype("float32")}, dtypes
    print("OK")
""")


def test_mixed_bfloat16_step_tracks_float32_and_snapshots_stay_float32(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "digits8"), str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout

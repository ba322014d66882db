"""VGrow-PG on two logical CPU devices (MirroredStrategy), in a subprocess so the split happens first."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from vgrow_tf.data import tool
    from vgrow_tf.models import vgrow_pg
    from vgrow_tf.training import loop
    from vgrow_tf.training.options import make_options
    from vgrow_tf.training.strategy import make_strategy

    data = sys.argv[1]
    tool.create_digits(data, resolution=8)
    opts = make_options("vgrow_pg", dataset=data, fmaps=8, batch_size=8, dur_nimg=64, seed=3)
    info = vgrow_pg.Trainer.inspect_data(opts)
    mirrored = make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    single = vgrow_pg.Trainer(opts, tf.distribute.get_strategy(), info)
    double = vgrow_pg.Trainer(opts, mirrored, info)
    for a, b in zip(double.G.weights + double.D.weights, single.G.weights + single.D.weights):
        a.assign(b.numpy())

    # The G fit is per-sample, so its summed gradient must match the 1-replica one exactly.
    z = tf.random.stateless_normal([8, 512], seed=[1, 2])
    particles = single.G(z, level=3) + 0.1
    g1, _ = single._g_grads(z, particles, 3, 0.0)

    @tf.function
    def two_replica_grads():
        parts = mirrored.run(lambda: vgrow_tf_slice(particles))
        grads, _ = mirrored.run(double._g_grads, args=(z, parts, 3, 0.0))
        return [mirrored.reduce("SUM", g, axis=None) for g in grads]

    from vgrow_tf.training.strategy import replica_slice as vgrow_tf_slice
    g2 = two_replica_grads()
    worst = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in zip(g1, g2))
    assert worst < 1e-4, worst

    # A few full iterations: replicas stay in sync and losses are finite.
    nimg = 0
    for _ in range(4):
        stats = double.train_iteration(nimg)
        nimg += stats["nimg"]
        assert not stats["nonfinite"] and np.isfinite(stats["d_real"])
    for v in double.G.weights + double.D.weights + double.Gs.weights:
        values = [x.numpy() for x in v.value.values]
        assert np.array_equal(values[0], values[1]), v.path
    print("OK", worst)
""")


def test_two_replicas_match_and_stay_in_sync(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "digits8")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout

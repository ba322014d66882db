"""--mixed_precision: a VGrow-PG iteration in mixed_bfloat16 (the CPU policy) tracks float32."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import keras
    import numpy as np
    import tensorflow as tf
    from vgrow_tf.data import tool
    from vgrow_tf.models import vgrow_pg
    from vgrow_tf.training.options import make_options

    data = sys.argv[1]
    tool.create_digits(data, resolution=8)

    def first_iterations(policy):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        opts = make_options("vgrow_pg", dataset=data, fmaps=16, batch_size=16, dur_nimg=10**6, seed=1)
        trainer = vgrow_pg.Trainer(opts, tf.distribute.get_strategy(), vgrow_pg.Trainer.inspect_data(opts))
        stats = [trainer.train_iteration(16 * i) for i in range(3)]
        assert trainer.D(tf.zeros([2, 8, 8, 1]), level=2).dtype == tf.float32   # logits stay float32
        assert trainer.Gs.weights[0].dtype == "float32"                           # EMA kept in float32
        return stats, trainer.G.dense.kernel.dtype

    full, _ = first_iterations("float32")
    mixed, dtype = first_iterations("mixed_bfloat16")
    assert dtype == "float32"                       # variables stay float32; compute is bfloat16
    for f, m in zip(full, mixed):
        for key in ("d_real", "d_fake", "g_loss"):
            rel = abs(f[key] - m[key]) / max(abs(f[key]), 1e-3)
            assert rel < 0.05, (key, f[key], m[key])  # bfloat16 has ~3 significant digits
        assert not m["nonfinite"]
    print("OK")
""")


def test_mixed_bfloat16_step_matches_float32(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "digits8")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout

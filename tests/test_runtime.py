"""Start-up and XLA choices that keep training fast and lean on CPUs."""
import subprocess
import sys

import tensorflow as tf

from vgrow_tf.training.options import make_options
from vgrow_tf.training.steps import xla_pays


def test_jit_compile_is_not_applied_on_cpu(capsys):
    assert not xla_pays(make_options("vgrow_pg", jit_compile=False))
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert xla_pays(make_options("vgrow_pg", jit_compile=True), "VGrow-PG") == on_gpu
    if not on_gpu:
        assert "--jit_compile: not applied to VGrow-PG on CPU" in capsys.readouterr().out


def test_keras_starts_without_scikit_learn_which_stays_importable():
    code = ("import sys, vgrow_tf, keras; assert 'sklearn' not in sys.modules, 'keras loaded sklearn'; "
            "import sklearn.datasets; print(sklearn.datasets.load_digits().data.shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(1797, 64)" in result.stdout

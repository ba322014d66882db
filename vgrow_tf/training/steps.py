"""Pieces every distributed train step uses: cross-replica sums, guarded updates, mixed precision."""
import keras
import tensorflow as tf


def reduce_sum(strategy, value):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)


def make_adam(learning_rate, beta_1, beta_2, epsilon=1e-8, **kwargs):
    """Adam; under the mixed_float16 policy wrapped in a dynamic LossScaleOptimizer."""
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def scale_loss(optimizer, loss):
    """The loss to differentiate: scaled when the optimizer does loss scaling (float16)."""
    return optimizer.scale_loss(loss) if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else loss


def apply_if_finite(strategy, optimizer, per_replica_grads, variables):
    """Sums gradients over replicas and applies them only if all are finite; returns that flag.

    Variables without a gradient (e.g. the levels a progressive network does not use yet) are left
    alone. A LossScaleOptimizer always sees the gradients: it unscales them, skips a non-finite
    step itself and lowers its scale.
    """
    pairs = [(reduce_sum(strategy, g), v) for g, v in zip(per_replica_grads, variables) if g is not None]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g, _ in pairs])
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer.apply_gradients(pairs)
        return finite

    def apply():
        optimizer.apply_gradients(pairs)
        return tf.constant(True)

    return tf.cond(finite, apply, lambda: tf.constant(False))


def host_stats(step_outputs):
    """A step's scalar outputs on the host: ({name: float}, finite), the 'finite' flag taken out."""
    stats = {name: float(value) for name, value in step_outputs.items()}
    return stats, bool(stats.pop("finite"))


def xla_pays(options, what="the training step"):
    """Whether to XLA-compile a convolutional training step: --jit_compile, on a GPU.

    On CPUs, XLA's convolution gradients ran 1.1-3x slower than TensorFlow's oneDNN kernels for
    VGrow-PG and MSG-StyleGAN, each compile cost seconds and the process ~300 MB more memory
    (benchmarks/README.md), so the flag is not applied there.
    """
    if not options.jit_compile:
        return False
    if tf.config.list_logical_devices("GPU"):
        return True
    print(f"--jit_compile: not applied to {what} on CPU, where XLA is slower than TensorFlow's own "
          "kernels for it (see benchmarks/README.md)", flush=True)
    return False

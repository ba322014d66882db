"""Pieces every distributed train step uses: cross-replica sums, guarded updates, mixed precision."""
import keras
import tensorflow as tf
from keras import ops


def reduce_sum(strategy, value):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)


class TorchAdam(keras.optimizers.Adam):
    """Adam with PyTorch's epsilon: w -= lr m_hat / (sqrt(v_hat) + eps), hats bias-corrected.

    Keras (like TF1) adds epsilon to the uncorrected sqrt(v), i.e. an effective epsilon
    eps * sqrt(1 - beta_2^t); the two agree except where |gradient| is near epsilon.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        m_hat = ops.divide(m, 1 - ops.power(ops.cast(self.beta_1, dtype), step))
        v_hat = ops.divide(v, 1 - ops.power(ops.cast(self.beta_2, dtype), step))
        lr = ops.cast(learning_rate, dtype)
        self.assign_sub(variable, ops.divide(ops.multiply(m_hat, lr), ops.add(ops.sqrt(v_hat), self.epsilon)))


def make_adam(learning_rate, beta_1, beta_2, epsilon=1e-8, torch_epsilon=False, **kwargs):
    """Adam (TorchAdam with torch_epsilon); under the mixed_float16 policy wrapped in a LossScaleOptimizer."""
    cls = TorchAdam if torch_epsilon else keras.optimizers.Adam
    optimizer = cls(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
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

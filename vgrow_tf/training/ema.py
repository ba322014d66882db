"""Generator moving averages and optimizer resets (shared by every model)."""
import tensorflow as tf


def ema_update(target_weights, source_weights, beta):
    """target <- source + beta * (target - source), for matching weight lists (beta may be a tensor)."""
    beta = tf.cast(beta, tf.float32)
    for t, s in zip(target_weights, source_weights):
        t.assign(s + tf.cast(beta, s.dtype) * (t - s))


def copy_weights(target_weights, source_weights):
    for t, s in zip(target_weights, source_weights):
        t.assign(s)


def beta_from_half_life(batch_size, half_life_kimg):
    """StyleGAN's G_smoothing: beta = 0.5 ** (batch / (half_life_kimg * 1000))."""
    if not half_life_kimg:
        return 0.0
    return 0.5 ** (batch_size / (half_life_kimg * 1000.0))


def reset_optimizer(optimizer):
    """Zeroes an optimizer's slots and step counter (VGrow resets Adam at every phase boundary).

    A LossScaleOptimizer keeps its loss scale; only the wrapped optimizer is reset.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    lr = getattr(optimizer, "_learning_rate", None)
    for v in optimizer.variables:
        if v is lr or v.path.endswith("learning_rate"):
            continue
        v.assign(tf.zeros_like(v))

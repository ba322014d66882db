"""Keras layers shared by every ProGAN/StyleGAN-style network (equalized learning rate et al.).

Under a mixed policy (bfloat16 or float16 compute, float32 variables) the numerics these methods hang on
stay float32: equalized-LR weights are scaled in float32 and cast once, and the statistics of pixel and
instance norm and of minibatch stddev are computed in float32 (only the per-element multiply runs in the
compute dtype). In float32 every cast here is a no-op, so float32 results are unchanged.
"""
import math

import keras
import numpy as np
import tensorflow as tf

SQRT2 = math.sqrt(2.0)
# Layers whose outputs leave a network (toRGB, the logit) compute in float32 under a mixed policy, as
# StyleGAN2-ADA keeps its last layers in float32: images and logits keep float32 precision for the cost
# of a 1x1 convolution or a dense layer to one unit. Pass as keyword arguments: `Layer(..., **OUTPUT)`.
OUTPUT = dict(dtype="float32")


def lrelu(x, alpha=0.2):
    return tf.nn.leaky_relu(x, alpha)


def upscale2d(x, factor=2):
    """Nearest-neighbour upsampling of NHWC tensors by an integer factor."""
    if factor == 1:
        return x
    shape = tf.shape(x)
    x = x[:, :, None, :, None, :]
    x = tf.tile(x, [1, 1, factor, 1, factor, 1])
    return tf.reshape(x, [shape[0], shape[1] * factor, shape[2] * factor, x.shape[-1]])


def downscale2d(x, factor=2):
    """Box (average) downsampling of NHWC tensors by an integer factor."""
    if factor == 1:
        return x
    return tf.nn.avg_pool2d(x, factor, factor, "VALID")


def _he_scaling(gain, fan_in, lrmul, use_wscale):
    """(run-time multiplier, initial std) of a StyleGAN `get_weight`: with use_wscale (equalized LR)
    the He constant is applied at run time, without it at initialisation; lrmul scales both ways."""
    he_std = gain / math.sqrt(fan_in)
    if use_wscale:
        return he_std * lrmul, 1.0 / lrmul
    return lrmul, he_std / lrmul


def _equalized_weights(layer, kernel_shape, units, init_std):
    """(kernel ~ N(0, init_std), zero bias or None), read in float32 even under a mixed policy (`scaled`)."""
    kernel = layer.add_weight(shape=kernel_shape, name="kernel", autocast=False,
                              initializer=keras.initializers.RandomNormal(0.0, init_std))
    bias = layer.add_weight(shape=(units,), name="bias", initializer="zeros", autocast=False) \
        if layer.use_bias else None
    return kernel, bias


def scaled(weight, scale, dtype):
    """weight * scale computed in the weight's float32, then cast to the compute dtype (one rounding)."""
    return tf.cast(weight * scale, dtype)


class EqualizedDense(keras.layers.Layer):
    """Dense layer with equalized learning rate: weights ~ N(0, 1/lrmul), scaled at run time
    (use_wscale=False: the StyleGAN spelling of a plain He-initialised layer, same weight names)."""

    def __init__(self, units, gain=SQRT2, lrmul=1.0, use_bias=True, use_wscale=True, **kwargs):
        super().__init__(**kwargs)
        self.units, self.gain, self.lrmul, self.use_bias = units, gain, lrmul, use_bias
        self.use_wscale = use_wscale

    def build(self, input_shape):
        fan_in = int(np.prod(input_shape[1:]))
        self.scale, init_std = _he_scaling(self.gain, fan_in, self.lrmul, self.use_wscale)
        self.kernel, self.bias = _equalized_weights(self, (fan_in, self.units), self.units, init_std)

    def call(self, x):
        x = tf.reshape(x, [tf.shape(x)[0], self.kernel.shape[0]])
        y = tf.matmul(x, scaled(self.kernel, self.scale, x.dtype))
        return y + scaled(self.bias, self.lrmul, y.dtype) if self.use_bias else y

    def get_config(self):
        return dict(super().get_config(), units=self.units, gain=self.gain, lrmul=self.lrmul,
                    use_bias=self.use_bias, use_wscale=self.use_wscale)


class EqualizedConv2D(keras.layers.Layer):
    """NHWC convolution with equalized learning rate (fan_in = k*k*in_channels, or fan_in_channels)."""

    def __init__(self, filters, kernel_size, gain=SQRT2, lrmul=1.0, use_bias=True, padding="same",
                 fan_in_channels=None, use_wscale=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.gain, self.lrmul = filters, kernel_size, gain, lrmul
        self.use_bias, self.padding, self.fan_in_channels = use_bias, padding, fan_in_channels
        self.use_wscale = use_wscale

    def build(self, input_shape):
        channels = int(input_shape[-1])
        k = self.kernel_size
        fan_in = k * k * (self.fan_in_channels or channels)
        self.scale, init_std = _he_scaling(self.gain, fan_in, self.lrmul, self.use_wscale)
        self.kernel, self.bias = _equalized_weights(self, (k, k, channels, self.filters), self.filters, init_std)

    def call(self, x):
        y = tf.nn.conv2d(x, scaled(self.kernel, self.scale, x.dtype), 1, self.padding.upper())
        return y + scaled(self.bias, self.lrmul, y.dtype) if self.use_bias else y

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, kernel_size=self.kernel_size,
                    gain=self.gain, lrmul=self.lrmul, use_bias=self.use_bias, padding=self.padding,
                    fan_in_channels=self.fan_in_channels, use_wscale=self.use_wscale)


class MinibatchStddev(keras.layers.Layer):
    """Appends the average per-feature standard deviation over a group (None: the whole batch)."""

    def __init__(self, group_size=None, num_new_features=1, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.group_size, self.num_new_features, self.epsilon = group_size, num_new_features, epsilon

    def call(self, x):
        shape = tf.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        g = n if self.group_size is None else tf.minimum(self.group_size, n)
        f = self.num_new_features
        y = tf.reshape(tf.cast(x, tf.float32), [g, -1, h, w, f, c // f])  # the statistic in float32
        y -= tf.reduce_mean(y, axis=0, keepdims=True)
        y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + self.epsilon)
        y = tf.reduce_mean(y, axis=[1, 2, 4])                    # [n/g, f]
        y = tf.tile(y[:, None, None, :], [g, h, w, 1])           # [n, h, w, f]
        return tf.concat([x, tf.cast(y, x.dtype)], axis=-1)

    def get_config(self):
        return dict(super().get_config(), group_size=self.group_size,
                    num_new_features=self.num_new_features, epsilon=self.epsilon)


def _rsqrt_mean_square(x, axis, epsilon):
    """1 / sqrt(mean(x^2) + epsilon) over `axis`, computed in float32, returned in x's dtype."""
    x32 = tf.cast(x, tf.float32)
    return tf.cast(tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=axis, keepdims=True) + epsilon), x.dtype)


def pixel_norm(x, axis=-1, epsilon=1e-8):
    """Normalises each feature vector to unit average square (ProGAN's pixelwise normalisation)."""
    return x * _rsqrt_mean_square(x, axis, epsilon)


class PixelNorm(keras.layers.Layer):
    """Layer form of `pixel_norm` over the channel axis."""

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        return pixel_norm(x, epsilon=self.epsilon)

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


def blur2d(x, taps=(1.0, 2.0, 1.0)):
    """Depthwise blur with the normalised outer product of `taps` (StyleGAN's [1,2,1] filter)."""
    k = np.outer(taps, taps).astype(np.float32)
    k /= k.sum()
    channels = x.shape[-1]
    kernel = tf.constant(np.tile(k[:, :, None, None], [1, 1, channels, 1]), dtype=x.dtype)
    return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")


def instance_norm(x, epsilon=1e-8):
    """Zero mean and unit average square per sample and channel over the spatial axes (in float32)."""
    x32 = tf.cast(x, tf.float32)
    x32 -= tf.reduce_mean(x32, axis=[1, 2], keepdims=True)
    return tf.cast(x32 * tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=[1, 2], keepdims=True) + epsilon),
                   x.dtype)


class NoiseInput(keras.layers.Layer):
    """Adds single-channel Gaussian noise scaled by a learned per-channel weight (zero at start)."""

    def build(self, input_shape):
        self.weight = self.add_weight(shape=(int(input_shape[-1]),), name="weight", initializer="zeros")

    def call(self, x, noise=None):
        if noise is None:
            shape = tf.shape(x)
            noise = tf.random.normal([shape[0], shape[1], shape[2], 1], dtype=x.dtype)
        return x + noise * tf.cast(self.weight, x.dtype)


class StyleModulation(keras.layers.Layer):
    """AdaIN's affine part: a per-sample scale (1 + s) and bias b from the dlatent, applied to x."""

    def __init__(self, channels, use_wscale=True, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.affine = EqualizedDense(2 * channels, gain=1.0, use_wscale=use_wscale, name="affine")

    def call(self, x, dlatent):
        style = tf.cast(self.affine(dlatent), x.dtype)
        scale, bias = style[:, None, None, :self.channels], style[:, None, None, self.channels:]
        return x * (scale + 1.0) + bias

    def get_config(self):
        return dict(super().get_config(), channels=self.channels)

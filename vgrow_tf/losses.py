"""GAN losses and penalties, and GLO's reconstruction losses.

Conventions: logits are per-sample [B] or [B, 1] tensors; every loss returns a per-sample vector
so that the caller divides by the *global* batch (tf.distribute) with one reduce_sum. Discriminator
inputs may be a single image batch or a list of scales (MSG models); penalties take a callable
`discriminator(images) -> logits` and differentiate through it.
"""
import tensorflow as tf

from vgrow_tf.errors import UserError


def _flat(logits):
    return tf.reshape(tf.cast(logits, tf.float32), [-1])


# -- adversarial losses: (real_logits, fake_logits) -> per-sample D loss; fake_logits -> G loss -----

def logistic_d(real_logits, fake_logits):
    """softplus(-D(x)) + softplus(D(G(z)))."""
    return tf.nn.softplus(-_flat(real_logits)) + tf.nn.softplus(_flat(fake_logits))


def logistic_ns_g(fake_logits, real_logits=None):
    """Non-saturating generator loss softplus(-D(G(z)))."""
    return tf.nn.softplus(-_flat(fake_logits))


def wgan_d(real_logits, fake_logits):
    return _flat(fake_logits) - _flat(real_logits)


def wgan_g(fake_logits, real_logits=None):
    return -_flat(fake_logits)


def hinge_d(real_logits, fake_logits):
    return tf.nn.relu(1.0 - _flat(real_logits)) + tf.nn.relu(1.0 + _flat(fake_logits))


def hinge_g(fake_logits, real_logits=None):
    return -_flat(fake_logits)


def relativistic_hinge_d(real_logits, fake_logits):
    """RaHinge: reals should beat the mean fake by a margin and vice versa."""
    real, fake = _flat(real_logits), _flat(fake_logits)
    return (tf.nn.relu(1.0 - (real - tf.reduce_mean(fake)))
            + tf.nn.relu(1.0 + (fake - tf.reduce_mean(real))))


def relativistic_hinge_g(fake_logits, real_logits):
    real, fake = _flat(real_logits), _flat(fake_logits)
    return (tf.nn.relu(1.0 + (real - tf.reduce_mean(fake)))
            + tf.nn.relu(1.0 - (fake - tf.reduce_mean(real))))


def cross_entropy_d(real_logits, fake_logits):
    """Sigmoid cross-entropy as CoGAN writes it; numerically identical to logistic_d."""
    return logistic_d(real_logits, fake_logits)


GAN_LOSSES = {
    # name: (D loss, G loss, whether the D loss gets WGAN-GP's gradient penalty by default)
    "logistic": (logistic_d, logistic_ns_g, False),
    "ce": (cross_entropy_d, logistic_ns_g, False),
    "wgan-gp": (wgan_d, wgan_g, True),
    "hinge": (hinge_d, hinge_g, False),
    "relativistic-hinge": (relativistic_hinge_d, relativistic_hinge_g, False),
}


def get_gan_loss(name):
    """(d_loss, g_loss, uses_gradient_penalty) for a loss name, or a UserError listing the names."""
    try:
        return GAN_LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}; choose one of {', '.join(GAN_LOSSES)}") from None


# -- penalties ---------------------------------------------------------------------------------

def _sum_sq_per_sample(grads):
    grads = grads if isinstance(grads, (list, tuple)) else [grads]
    return tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32)), axis=list(range(1, g.shape.rank)))
                     for g in grads])


def r1_penalty(discriminator, reals):
    """Per-sample ||grad_x D(x)||^2 at the reals (multiply by gamma/2).

    `reals` may be a list of scales; the gradient is then taken with respect to every scale.
    """
    with tf.GradientTape() as tape:
        tape.watch(reals)
        logits = tf.reduce_sum(_flat(discriminator(reals)))
    return _sum_sq_per_sample(tape.gradient(logits, reals))


def gradient_penalty(discriminator, reals, fakes, uniform, target=1.0):
    """WGAN-GP's per-sample (||grad D(mix)|| - target)^2 at random mixes of reals and fakes.

    `uniform` is [B] in [0, 1) (drawn by the caller, so runs stay reproducible); lists of scales are
    mixed scale by scale with the same coefficient.
    """
    def mix(real, fake):
        u = tf.reshape(tf.cast(uniform, real.dtype), [-1] + [1] * (real.shape.rank - 1))
        return real + u * (fake - real)

    mixed = [mix(r, f) for r, f in zip(reals, fakes)] if isinstance(reals, (list, tuple)) \
        else mix(reals, fakes)
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        logits = tf.reduce_sum(_flat(discriminator(mixed)))
    norm = tf.sqrt(_sum_sq_per_sample(tape.gradient(logits, mixed)) + 1e-12)
    return tf.square(norm - target)


# -- reconstruction losses (GLO) ------------------------------------------------------------------

def l2_loss(target, output):
    """Per-sample mean squared error."""
    return tf.reduce_mean(tf.square(output - target), axis=[1, 2, 3])


def _gauss_kernel(channels, dtype):
    k = tf.constant([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    k2 = k[:, None] * k[None, :]
    return tf.cast(tf.tile(k2[:, :, None, None], [1, 1, channels, 1]), dtype)


def laplacian_pyramid(images, levels):
    """Laplacian pyramid (finest first): band j = G_j - blur(up(G_{j+1})), G_{j+1} = blur(G_j)[::2, ::2],
    and the last level the low-pass residual.

    The GLO paper defines Lap1 on "the Laplacian pyramid" without naming a filter; this is Burt and
    Adelson's (1983): the separable 5-tap generating kernel with a = 3/8, i.e. [1, 4, 6, 4, 1] / 16,
    with reflect padding so that a constant image has zero bands at the borders too. The widely
    copied third-party laploss uses a Gaussian with sigma 2 and zero padding instead (about 16 %
    different on images; the 2^(2j) weighting is the same)."""
    kernel = _gauss_kernel(images.shape[-1], images.dtype)

    def blur(x):
        x = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
        return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")

    pyramid, current = [], images
    for _ in range(levels - 1):
        low = blur(current)
        down = low[:, ::2, ::2, :]
        up = tf.image.resize(down, tf.shape(current)[1:3], method="nearest")
        pyramid.append(current - blur(up))
        current = down
    pyramid.append(current)
    return pyramid


def lap1_loss(target, output, levels=None):
    """GLO's Laplacian-pyramid L1 (Bojanowski et al. 2018, sec. 3):
    Lap1(x, x') = sum_j 2^(2j) |L^j(x) - L^j(x')|_1, L^j the j-th level of `laplacian_pyramid`.

    j = 0 is the finest level; level j holds 4^-j as many values, so the 2^(2j) weight gives every
    level the same per-pixel weight. The sum is divided by the number of values of the image
    (H*W*C), which makes it the sum over levels of the per-level mean absolute difference. `levels`
    (bands plus the low-pass residual) defaults to as many as fit down to 4x4, at most 5.
    """
    size = int(target.shape[1])
    levels = levels or max(1, min(5, size.bit_length() - 2))
    count = float(target.shape[1] * target.shape[2] * target.shape[3])
    total = 0.0
    for j, (a, b) in enumerate(zip(laplacian_pyramid(target, levels), laplacian_pyramid(output, levels))):
        total += 2.0 ** (2 * j) * tf.reduce_sum(tf.abs(a - b), axis=[1, 2, 3]) / count
    return total


def local_moments(images, window=4, stride=2):
    """Per-channel mean and variance E[x^2] - mean^2 over window x window boxes (VALID, stride 2)."""
    pool = lambda x: tf.nn.avg_pool2d(x, window, stride, "VALID")  # noqa: E731
    mean = pool(images)
    return mean, pool(tf.square(images)) - tf.square(mean)


def local_moment_loss(target, output, window=4, stride=2):
    """The GLO TF reference's loss: mean |delta local mean| + mean |delta local variance|, per sample."""
    mean_t, var_t = local_moments(tf.cast(target, tf.float32), window, stride)
    mean_o, var_o = local_moments(tf.cast(output, tf.float32), window, stride)
    return (tf.reduce_mean(tf.abs(mean_t - mean_o), axis=[1, 2, 3])
            + tf.reduce_mean(tf.abs(var_t - var_o), axis=[1, 2, 3]))

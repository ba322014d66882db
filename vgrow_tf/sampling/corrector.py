"""DGflow's density-ratio corrector: `train.py --model=dgflow_corrector --generator_snapshot G.h5
[--discriminator_snapshot D.h5] --dataset DIR`.

For a generator without a usable discriminator (GLO, a VAE decoder, an MMD-GAN with a vector critic)
DGflow needs an estimate of log(p_data / p_G) for *that* generator. The recipe (DGflow, §3.3 of the
spec): take a discriminator D trained on the same data against another generator, freeze it, and train
a small network C with the logistic (BCE) discriminator loss, reals against this generator's samples,
on the logit D(x) + C(x). Without --discriminator_snapshot, C alone is the logit. C's last layer
starts at zero, so training starts from D's estimate. The snapshot (kind `dgflow_corrector`, network
`C`) records both snapshot paths; `generate_samples.py --refine=dgflow --corrector=C.h5` then refines
with the logit D + C. Training runs on one device with Adam (2e-4, beta1 0.5, beta2 0.999, epsilon 1e-8); DGflow
releases only the trained correctors, not their training code, so this recipe is ours.
"""
import os

import keras
import tensorflow as tf

from vgrow_tf.errors import UserError
from vgrow_tf.training.options import Option
from vgrow_tf.training.steps import host_stats

KIND = "dgflow_corrector"
KINDS = (KIND,)

OPTIONS = [
    Option("generator_snapshot", None, "dgflow_corrector: snapshot of the generator whose density ratio "
           "the corrector learns."),
    Option("discriminator_snapshot", None, "dgflow_corrector: snapshot whose (frozen) D is the base of the "
           "logit D + C (any snapshot with a discriminator; default: none, C alone)."),
    Option("corrector_fmaps", 32, "dgflow_corrector: feature maps of C's first convolution.", "integer"),
    Option("learning_rate", None, "Adam learning rate (VGrow-PG 1e-3, MSG 3e-3, ...).", "float"),
]


def make_config(resolution, channels, fmaps=32, generator_snapshot=None, discriminator_snapshot=None):
    return dict(resolution=int(resolution), channels=int(channels), fmaps=int(fmaps),
                generator_snapshot=generator_snapshot, discriminator_snapshot=discriminator_snapshot)


def build_networks(config):
    """C: strided 3x3 convolutions (LReLU 0.2) down to 4x4, then a dense logit initialised to zero."""
    fm, res = config["fmaps"], config["resolution"]
    layers = [keras.layers.Conv2D(fm, 3, padding="same"), keras.layers.LeakyReLU(0.2)]
    size, width = res, fm
    while size > 4:
        width = min(width * 2, 8 * fm)
        layers += [keras.layers.Conv2D(width, 3, strides=2, padding="same"), keras.layers.LeakyReLU(0.2)]
        size //= 2
    layers += [keras.layers.Flatten(), keras.layers.Dense(1, kernel_initializer="zeros", name="logit")]
    return {"C": keras.Sequential([keras.Input((res, res, config["channels"]))] + layers, name="C")}


def latent_dim(config):
    return 0


def generate(networks, config, latents, **unused):
    raise UserError("a dgflow_corrector snapshot has no generator; pass it to generate_samples.py --corrector")


def fit_images(images, resolution, channels):
    """NHWC [-1, 1] images resized (bilinear) and converted to a network's input size and channels."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[1] != resolution:
        images = tf.image.resize(images, [resolution, resolution], method="bilinear")
    if channels == 3 and images.shape[-1] == 1:
        images = tf.tile(images, [1, 1, 1, 3])
    elif channels == 1 and images.shape[-1] == 3:
        images = tf.reduce_mean(images, axis=-1, keepdims=True)
    return images


def corrector_logit(networks, config, images):
    return tf.reshape(tf.cast(networks["C"](fit_images(images, config["resolution"], config["channels"]),
                                            training=False), tf.float32), [-1])


def load_base(path):
    """The snapshot whose D is the frozen base of the logit (None without one)."""
    if not path:
        return None
    from vgrow_tf import snapshot as snapshot_lib
    if not os.path.isfile(path):
        raise UserError(f"discriminator snapshot {path} does not exist")
    base = snapshot_lib.load(path)
    if not base.has_discriminator():
        raise UserError(f"{path} is a {base.kind} snapshot without a discriminator; give one with a D "
                        "(vgrow_pg, msg_stylegan, msg_progan) or none")
    return base


def _base_logit(base):
    res, ch = base.config["resolution"], base.config["channels"]
    return lambda x: tf.reshape(tf.cast(base.discriminator_logit(fit_images(x, res, ch)), tf.float32), [-1])


def logit_function(corrector, discriminator=None):
    """x -> D(x) + C(x) [N] for a loaded corrector snapshot (D from `discriminator`, a loaded snapshot, or
    the one recorded in the corrector's config; C alone when there is none)."""
    base = discriminator if discriminator is not None else load_base(corrector.config.get("discriminator_snapshot"))
    c = lambda x: corrector_logit(corrector.networks, corrector.config, x)  # noqa: E731
    if base is None:
        return c
    d = _base_logit(base)
    return lambda x: d(x) + c(x)


def bce_loss(real_logits, fake_logits):
    """The logistic discriminator loss, mean over each half: softplus(-d(real)) + softplus(d(fake))."""
    return tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))


class Trainer:
    DEFAULTS = dict(total_nimg=100_000, tick_kimg=5, snapshot_kimg=50)

    @staticmethod
    def inspect_data(options):
        from vgrow_tf import data as data_lib
        if not options.dataset:
            raise UserError("--dataset is required: the real images the generator was trained on")
        if not options.generator_snapshot:
            raise UserError("--model=dgflow_corrector needs --generator_snapshot (the generator to correct)")
        return data_lib.inspect_dataset(data_lib.resolve_dataset(options.dataset, options.data_root))

    @staticmethod
    def run_name_suffix(options):
        return KIND

    @staticmethod
    def identity(options):
        return {k: getattr(options, k) for k in ("generator_snapshot", "discriminator_snapshot", "corrector_fmaps")}

    def __init__(self, options, strategy, info):
        from vgrow_tf import snapshot as snapshot_lib
        from vgrow_tf.sampling.latents import LatentSampler
        if strategy.num_replicas_in_sync > 1:
            raise UserError("the DGflow corrector trains on one device; use --strategy=one_device")
        self.options, self.strategy, self.info = options, strategy, info
        self.dataset_path = info.path
        self.gen = snapshot_lib.load(options.generator_snapshot)
        self.sampler = LatentSampler(self.gen)
        self.base = load_base(options.discriminator_snapshot)
        res = int(self.gen.config["resolution"])
        if res not in getattr(info, "levels", [res]) and res != info.resolution:
            raise UserError(f"{info.path} has no {res}x{res} level for the {res}x{res} generator")
        self.resolution = res
        self.arch = make_config(res, info.channels, options.corrector_fmaps,
                                os.path.abspath(options.generator_snapshot),
                                os.path.abspath(options.discriminator_snapshot) if options.discriminator_snapshot
                                else None)
        self.batch = options.batch_size or 64
        with strategy.scope():
            self.net = build_networks(self.arch)["C"]
            # DGflow's release has no corrector training code (only its checkpoints), so no original
            # optimizer exists: this is our recipe, with the epsilon of PyTorch's Adam (1e-8, the authors'
            # framework) rather than Keras' 1e-7.
            self.opt = keras.optimizers.Adam(options.learning_rate or 2e-4, beta_1=0.5, beta_2=0.999, epsilon=1e-8)
            self.opt.build(self.net.trainable_variables)
            self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
        self._iterator = None
        self._base_logit = _base_logit(self.base) if self.base is not None else None
        self._step = tf.function(self._train_step)

    def checkpoint_items(self):
        return dict(C=self.net, opt_c=self.opt, batches=self.batches)

    def after_restore(self, cur_nimg):
        self._iterator = None

    def config(self):
        return dict(self.arch)

    def networks(self):
        return {"C": self.net}

    def progress_scalars(self, cur_nimg):
        return {}

    def grids(self, count):
        return {}

    def _train_step(self, reals, fakes):
        base_r = self._base_logit(reals) if self._base_logit else 0.0
        base_f = self._base_logit(fakes) if self._base_logit else 0.0
        with tf.GradientTape() as tape:
            fit = lambda x: fit_images(x, self.resolution, self.arch["channels"])  # noqa: E731
            c = lambda x: tf.reshape(tf.cast(self.net(fit(x), training=True), tf.float32), [-1])  # noqa: E731
            d_real = tf.stop_gradient(base_r) + c(reals)
            d_fake = tf.stop_gradient(base_f) + c(fakes)
            loss = bce_loss(d_real, d_fake)
        grads = tape.gradient(loss, self.net.trainable_variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        if finite:
            self.opt.apply_gradients(zip(grads, self.net.trainable_variables))
        accuracy = 0.5 * (tf.reduce_mean(tf.cast(d_real > 0, tf.float32)) +
                          tf.reduce_mean(tf.cast(d_fake < 0, tf.float32)))
        return {"loss": loss, "accuracy": accuracy, "d_real": tf.reduce_mean(d_real),
                "d_fake": tf.reduce_mean(d_fake), "finite": finite}

    def train_iteration(self, cur_nimg):
        if self._iterator is None:
            from vgrow_tf import data as data_lib
            ds = data_lib.load_dataset(self.info.path, batch_size=self.batch, resolution=self.resolution,
                                       shuffle=True, repeat=True, seed=self.options.seed)
            self._iterator = iter(ds.skip(int(self.batches.numpy())))
        reals = next(self._iterator)["image"]
        step = int(self.batches.numpy())
        z = self.sampler.draw(self.batch, (int(self.options.seed) * 1_000_003 + step) % (2 ** 32))
        fakes = tf.constant(self.gen.generate(z), tf.float32)
        stats = self._step(reals, fakes)
        self.batches.assign_add(1)
        stats, finite = host_stats(stats)
        return dict(stats, nimg=self.batch, nonfinite=not finite)

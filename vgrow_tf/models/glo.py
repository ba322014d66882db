"""GLO: Generative Latent Optimization (Bojanowski, Joulin, Lopez-Paz, Szlam; ICML 2018).

No encoder and no discriminator: every training image x_i owns a free latent z_i, and the generator
and the latents are fitted jointly, min over theta and {z_i} of (1/N) sum_i loss(G(z_i), x_i), with
every z_i projected back onto the unit sphere after each step. Here the latents are one
`tf.Variable` table [N, z_dim] indexed by the dataset's record number (`load_dataset(with_index=True)`);
each step gathers the batch's rows, and their gradient is an `IndexedSlices`, so plain SGD touches
only those rows. Defaults follow the paper (spec §1.1); flags reproduce the TF reference (spec §1.2)
without its bugs:
- `--glo_optimizer=adam --learning_rate=1e-4 --clip_norm=20 [--lr_weight_decay]` for the generator,
  `--z_update=after_g --alpha=A` for the reference's latent step (z <- z - A * grad at the updated G),
  `--loss=local_moment`, `--glo_arch=reference`, `--init=uniform|gaussian --latent_projection=...`;
- these compute what the original computes: its generator (TF1's legacy bilinear resize, BatchNorm
  epsilon 1e-3), TF1's Adam (epsilon 1e-8), and uniform/gaussian codes left unnormalised until their
  first step (as the reference's download.py stores them);
- BN at generation: moving statistics by default (`bn_mode="moving"`); the reference normalises with
  the statistics of each generated batch even at test time, available as `bn_mode="batch"`;
- not reproduced: latents updated only on their first visit, codes leaking between runs, and the
  wrong-axis "Gaussian" sampling (see vgrow_tf/sampling/glo_eval.py).
Models trained by the reference code load through vgrow_tf/interop/glo_checkpoint.py.
"""
import math
import os

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import data as data_lib
from vgrow_tf import layers
from vgrow_tf import losses
from vgrow_tf.errors import UserError
from vgrow_tf.sampling.images import interleave
from vgrow_tf.training.options import Option
from vgrow_tf.training.steps import host_stats, make_adam, reduce_sum

KIND = "glo"
KINDS = (KIND,)
PAPER_BATCH = 128
PAPER_EPOCHS = 25
# The reference's generator widths (MNIST / SVHN, CIFAR-10 at 32 px), widest first; the first entry
# of each list is our addition for 64 px (one more block).
REFERENCE_WIDTHS = {1: [200, 100, 50, 25, 6], 3: [512, 384, 128, 64, 16]}
# tf.contrib.layers.batch_norm's default epsilon (the reference's BN); Keras' default is 1e-3 too, the
# DCGAN generator keeps the 1e-5 of the paper's DCGAN code.
REFERENCE_BN_EPSILON = 1e-3
DCGAN_BN_EPSILON = 1e-5
# TF1's AdamOptimizer epsilon (Keras 3 defaults to 1e-7).
TF1_ADAM_EPSILON = 1e-8
BN_MODES = ("moving", "batch")

OPTIONS = [
    Option("z_dim", None, "Latent size (default 512; GLO 100, CoGAN 100).", "integer"),
    Option("fmaps", None, "Feature maps per layer (default 256 up to 128 px, 128 above).", "integer"),
    Option("learning_rate", None, "Adam learning rate (VGrow-PG 1e-3, MSG 3e-3, ...).", "float"),
    Option("g_lr", None, "Generator learning rate (overrides --learning_rate).", "float"),
    Option("z_lr", None, "GLO latent learning rate (default 10 with --z_update=joint, the paper; "
           "--alpha otherwise).", "float"),
    Option("alpha", None, "GLO reference's latent step size, z <- z - alpha * grad (default 1); "
           "same as --z_lr.", "float"),
    Option("glo_optimizer", "sgd", "GLO generator optimizer: sgd (paper, lr 1) or adam (reference, "
           "lr 1e-4, TF1's defaults: betas 0.9/0.999, epsilon 1e-8).", "enum", ["sgd", "adam"]),
    Option("clip_norm", None, "GLO: clip the generator's gradient to this global norm "
           "(default 20 with --glo_optimizer=adam as the reference, none with sgd).", "float"),
    Option("lr_weight_decay", False, "GLO reference: halve the generator learning rate every 10k steps.",
           "bool"),
    Option("z_update", "joint", "GLO latent update: joint (paper: one gradient step on G and z together) "
           "or after_g (reference: G first, then z at the updated G).", "enum", ["joint", "after_g"]),
    Option("latent_projection", "sphere", "GLO: project the latents after every step onto the unit "
           "sphere (paper), the unit ball, or not at all.", "enum", ["sphere", "ball", "none"]),
    Option("loss", "lap1", "GLO reconstruction loss: lap1 (paper), l2, or local_moment (reference).",
           "enum", ["lap1", "l2", "local_moment"]),
    Option("init", "pca", "GLO latent initialisation: pca (paper, normalised rows), gaussian or uniform "
           "(raw N(0,1) / U(-1,1) codes, projected after their first step, as the reference).",
           "enum", ["pca", "gaussian", "uniform"]),
    Option("glo_arch", "dcgan", "GLO generator: dcgan (paper) or reference (the TF reference's "
           "upsample+conv+ReLU+BN blocks).", "enum", ["dcgan", "reference"]),
    Option("holdout", 0, "GLO: the last N records of the dataset are not trained on (held out for "
           "reconstruction tests).", "integer"),
]


# --- latent geometry ---------------------------------------------------------------------------

def project(z, mode):
    """Projection of latents (rows) onto the unit sphere, the unit ball, or nothing."""
    if mode == "none":
        return z
    norm = tf.sqrt(tf.reduce_sum(tf.square(z), axis=-1, keepdims=True))
    if mode == "sphere":
        return z / tf.maximum(norm, 1e-12)
    if mode == "ball":
        return z / tf.maximum(norm, 1.0)
    raise UserError(f"unknown latent projection {mode!r}; choose sphere, ball or none")


def project_np(z, mode):
    return np.asarray(project(tf.constant(z, tf.float32), mode))


def pca_codes(images, z_dim, seed=0):
    """The reference's PCA init: top-z_dim PCA coefficients of the flattened pixels, rows to unit norm.

    Scaling the pixels (x/255 in the reference, [-1, 1] here) changes nothing after the normalisation.
    Larger-than-memory-friendly sets use IncrementalPCA.
    """
    from sklearn.decomposition import PCA, IncrementalPCA
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    if z_dim > min(flat.shape):
        raise UserError(f"--init=pca needs --z_dim <= min(images, pixels) = {min(flat.shape)}; got {z_dim}")
    if flat.size <= (1 << 28):
        codes = PCA(z_dim, random_state=seed).fit_transform(flat)
    else:
        pca = IncrementalPCA(z_dim, batch_size=max(4096, 2 * z_dim)).fit(flat)
        codes = np.concatenate([pca.transform(flat[i:i + 8192]) for i in range(0, len(flat), 8192)])
    return (codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def initial_latents(init, count, z_dim, projection, seed=0, images=None):
    """[count, z_dim] float32 initial codes.

    pca rows are unit-norm (as the reference's download.py writes them); gaussian and uniform codes are
    returned unnormalised, as the reference stores them: the first step of each latent starts from the
    raw code and projects only its result.
    """
    rng = np.random.RandomState(seed)
    if init == "pca":
        codes = pca_codes(images, z_dim, seed)
    elif init == "gaussian":
        codes = rng.randn(count, z_dim)
    elif init == "uniform":
        codes = rng.uniform(-1.0, 1.0, size=(count, z_dim))
    else:
        raise UserError(f"unknown --init {init!r}; choose pca, gaussian or uniform")
    return np.asarray(codes, np.float32)


def read_images(path, resolution=None, start=0, stop=None):
    """Records [start, stop) of one level as NHWC float32 in [-1, 1] (record order = latent index).

    `path` is one of our dataset directories, or the GLO reference's data.hdf5 (records in id.txt order,
    images at their stored size; `resolution` is then ignored)."""
    if os.path.isfile(path):
        from vgrow_tf.data.glo_hdf5 import read_images as read_reference_images
        return read_reference_images(path, start, stop)
    from vgrow_tf.data.reader import iterate_uint8
    info = data_lib.inspect_dataset(path)
    out = []
    for i, chw in enumerate(iterate_uint8(info, resolution or info.resolution)):
        if stop is not None and i >= stop:
            break
        if i >= start:
            out.append(chw)
    if not out:
        raise UserError(f"dataset {path} has no records in [{start}, {stop})")
    return np.stack(out).transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1.0


def fit_gaussian(latents):
    """Mean and full covariance (maximum likelihood) of the learned latents."""
    latents = np.asarray(latents, np.float64)
    mean = latents.mean(axis=0)
    centred = latents - mean
    return mean, centred.T @ centred / len(latents)


def gaussian_factor(cov):
    """Lower Cholesky factor of cov (with a tiny ridge, as the covariance of few latents may be singular)."""
    cov = np.asarray(cov, np.float64)
    return np.linalg.cholesky(cov + 1e-8 * np.eye(len(cov)) * max(np.trace(cov) / len(cov), 1e-12))


def sample_gaussian(mean, cov, count, seed=0):
    """`count` draws from N(mean, cov) (the paper's sampler; no projection), float32."""
    return draw_gaussian(mean, gaussian_factor(cov), count, seed)


def draw_gaussian(mean, factor, count, seed=0):
    """mean + RandomState(seed).randn(count, dim) @ factor^T, float32 (the exports do the same in the graph)."""
    return (mean + np.random.RandomState(seed).randn(count, len(mean)) @ factor.T).astype(np.float32)


def sampling_rows(arrays):
    """The latent-table rows that were learned: all of them for our snapshots, the examples the
    original trained on for an imported reference model (`arrays["learned"]`)."""
    latents = np.asarray(arrays["latents"], np.float32)
    learned = arrays.get("learned")
    if learned is not None and np.any(learned):
        return latents[np.asarray(learned, bool)]
    return latents


def gaussian_prior(config, arrays):
    """(mean, cholesky factor) of the full-covariance Gaussian fitted to the learned latents (the
    exports compute mean + noise @ factor^T in the graph, as latent_sampler does in numpy)."""
    if "latents" not in arrays:
        raise UserError("this GLO snapshot holds no latent table (arrays/latents); it cannot be sampled")
    mean, cov = fit_gaussian(sampling_rows(arrays))
    return mean, gaussian_factor(cov)


def latent_sampler(config, arrays):
    """draw(count, seed): the paper's sampler, a full-covariance Gaussian fitted to the learned latents."""
    mean, factor = gaussian_prior(config, arrays)
    return lambda count, seed: draw_gaussian(mean, factor, count, seed)


# --- losses ------------------------------------------------------------------------------------

def reconstruction_loss(name):
    """Per-sample loss function (target, output) -> [B]."""
    table = {"lap1": losses.lap1_loss, "l2": losses.l2_loss, "local_moment": losses.local_moment_loss}
    if name not in table:
        raise UserError(f"unknown --loss {name!r}; choose lap1, l2 or local_moment")
    return table[name]


# --- networks ----------------------------------------------------------------------------------

def resize_bilinear_tf1(images, size):
    """TF1's `resize_bilinear` (align_corners=False, half_pixel_centers=False): output pixel i samples
    the input at i * in / out (top-left aligned, the last row/column clamped), unlike TF2's
    `tf.image.resize`, which samples at (i + 0.5) * in / out - 0.5."""
    return tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=False, half_pixel_centers=False)


def batch_norm(layer, x, training, bn_mode):
    """A BatchNormalization layer in training mode, with its moving statistics (bn_mode="moving"), or
    with the batch's own statistics without touching the moving ones (bn_mode="batch": the reference's
    evaluation, tf.contrib.layers.batch_norm with is_training=True: nn.moments over N, H, W and
    nn.batch_normalization)."""
    if training or bn_mode == "moving":
        return layer(x, training=training)
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
    return tf.nn.batch_normalization(x, mean, variance, layer.beta, layer.gamma, layer.epsilon)


def reference_widths(resolution, channels, widths=None):
    """Conv widths of the reference generator's blocks, 1x1 -> resolution (the last is `channels`)."""
    if widths:
        return [int(w) for w in widths]
    log2 = int(round(math.log2(resolution)))
    return REFERENCE_WIDTHS[1 if channels == 1 else 3][-(log2 - 1):] + [channels]


class Generator(keras.Model):
    """z [B, z_dim] -> NHWC images in [-1, 1].

    dcgan: Dense to 4x4, then stride-2 4x4 transposed convolutions with BN + ReLU, halving the width
    down to `fmaps`, and a tanh output layer (Radford et al.; the paper's generator).
    reference: z as a 1x1 map through log2(R) blocks of TF1 bilinear x2 upsampling, 4x4 stride-1 conv,
    ReLU then BN (tanh, no BN, on the last), widths as in the TF reference (or `widths`), then a TF1
    bilinear resize to `output_size` when it differs from R (the reference's 32 -> 28 for MNIST).
    """

    def __init__(self, resolution, channels, z_dim, fmaps=64, arch="dcgan", widths=None, output_size=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.channels, self.z_dim, self.arch = resolution, channels, z_dim, arch
        self.output_size = int(output_size or resolution)
        log2 = int(round(math.log2(resolution)))
        init = keras.initializers.RandomNormal(0.0, 0.02)

        def bn(name, epsilon):
            return keras.layers.BatchNormalization(momentum=0.9, epsilon=epsilon, name=name,
                                                   gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02))
        if arch == "dcgan":
            n = log2 - 2
            self.width0 = fmaps * 2 ** (n - 1)
            self.dense = keras.layers.Dense(16 * self.width0, use_bias=False, kernel_initializer=init,
                                            name="dense4")
            self.bn0 = bn("bn4", DCGAN_BN_EPSILON)
            self.ups = [keras.layers.Conv2DTranspose(fmaps * 2 ** (n - 2 - i), 4, 2, "same", use_bias=False,
                                                     kernel_initializer=init, name=f"convt{8 * 2 ** i}")
                        for i in range(n - 1)]
            self.bns = [bn(f"bn{8 * 2 ** i}", DCGAN_BN_EPSILON) for i in range(n - 1)]
            self.out = keras.layers.Conv2DTranspose(channels, 4, 2, "same", kernel_initializer=init,
                                                    name=f"to_rgb{resolution}", **layers.OUTPUT)
        elif arch == "reference":
            widths = reference_widths(resolution, channels, widths)
            if len(widths) != log2 or widths[-1] != channels:
                raise UserError(f"reference generator widths {widths} do not make {channels}-channel "
                                f"{resolution} px images (need {log2} blocks ending in {channels})")
            trunc = keras.initializers.TruncatedNormal(0.0, 0.02)
            self.convs = [keras.layers.Conv2D(w, 4, 1, "same", kernel_initializer=trunc, name=f"conv{2 ** (i + 1)}")
                          for i, w in enumerate(widths)]
            self.bns = [bn(f"bn{2 ** (i + 1)}", REFERENCE_BN_EPSILON) for i in range(len(widths) - 1)]
        else:
            raise UserError(f"unknown --glo_arch {arch!r}; choose dcgan or reference")

    def call(self, z, training=False, bn_mode="moving"):
        if bn_mode not in BN_MODES:
            raise UserError(f"unknown bn_mode {bn_mode!r}; choose moving or batch")
        if self.arch == "dcgan":
            x = tf.reshape(self.dense(z), [-1, 4, 4, self.width0])
            x = tf.nn.relu(batch_norm(self.bn0, x, training, bn_mode))
            for up, norm in zip(self.ups, self.bns):
                x = tf.nn.relu(batch_norm(norm, up(x), training, bn_mode))
            x = tf.tanh(self.out(x))
        else:
            x = tf.reshape(z, [-1, 1, 1, self.z_dim])
            for i, conv in enumerate(self.convs):
                size = 2 ** (i + 1)
                x = conv(resize_bilinear_tf1(x, [size, size]))
                if i < len(self.bns):
                    x = batch_norm(self.bns[i], tf.nn.relu(x), training, bn_mode)
            x = tf.tanh(x)
            if self.output_size != self.resolution:
                x = resize_bilinear_tf1(x, [self.output_size, self.output_size])
        return tf.cast(x, tf.float32)


# --- snapshot interface ------------------------------------------------------------------------

def make_config(resolution, channels, z_dim=100, fmaps=64, arch="dcgan", num_latents=0, holdout=0,
                latent_projection="sphere", loss="lap1", dataset=None, widths=None, output_size=None):
    """The architecture and the latent table's layout. `widths` / `output_size` (reference arch only)
    are set by the import of a reference checkpoint: the block widths read from it and the size its
    generator resizes to (the data size, e.g. 28 for MNIST)."""
    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"GLO needs a power-of-two resolution >= 8; got {resolution}")
    config = dict(resolution=int(resolution), channels=int(channels), z_dim=int(z_dim), fmaps=int(fmaps),
                  arch=str(arch), num_latents=int(num_latents), holdout=int(holdout),
                  latent_projection=str(latent_projection), loss=str(loss), dataset=dataset)
    if widths is not None:
        config["widths"] = [int(w) for w in widths]
    if output_size is not None and int(output_size) != int(resolution):
        config["output_size"] = int(output_size)
    return config


def image_size(config):
    """The side of the images the generator outputs (and the training images have)."""
    return int(config.get("output_size") or config["resolution"])


def build_networks(config):
    g = Generator(config["resolution"], config["channels"], config["z_dim"], config["fmaps"], config["arch"],
                  widths=config.get("widths"), output_size=config.get("output_size"), name="G")
    g(tf.zeros([2, config["z_dim"]]))
    return {"G": g}


def latent_dim(config):
    return config["z_dim"]


def generate(networks, config, latents, batch_size=256, bn_mode="moving", **unused):
    """Decodes latents with the generator in inference mode.

    bn_mode="moving" (default) normalises with BN's moving statistics, so every image depends on its
    own latent only. bn_mode="batch" is the reference code's evaluation: each chunk of `batch_size`
    latents is normalised with its own batch statistics, so an image depends on the other latents of
    its chunk (to reproduce the reference, pass the latents it decoded together as one chunk).
    """
    if bn_mode not in BN_MODES:
        raise UserError(f"unknown bn_mode {bn_mode!r}; choose moving or batch")
    g = networks["G"]
    latents = np.asarray(latents, np.float32)
    out = [g(tf.constant(latents[i:i + batch_size]), training=False, bn_mode=bn_mode).numpy()
           for i in range(0, len(latents), batch_size)]
    size = image_size(config)
    return np.concatenate(out) if out else np.zeros([0, size, size, config["channels"]], np.float32)


def generator_tensor(networks, config, z, bn_mode="moving", **unused):
    """Differentiable G(z) (a tensor), for DGflow refinement."""
    return networks["G"](z, training=False, bn_mode=bn_mode)


# --- training ----------------------------------------------------------------------------------

class Trainer:
    """Joint SGD on the generator and the latent table, with projection after every step."""

    DEFAULTS = dict(total_nimg=PAPER_EPOCHS * 60000, tick_kimg=10, snapshot_kimg=100)

    inspect_data = staticmethod(data_lib.dataset_from_options)
    FLOAT16 = False  # --mixed_precision on a GPU: bfloat16 where it has it, else float32 (precision.py)

    @staticmethod
    def run_name_suffix(options):
        return f"glo-{options.init}{options.z_dim or 100}-{options.loss}"

    @staticmethod
    def identity(options):
        return {k: getattr(options, k) for k in ("z_dim", "fmaps", "glo_arch", "init", "holdout",
                                                  "latent_projection", "loss")}

    def __init__(self, options, strategy, info):
        self.options, self.strategy, self.info = options, strategy, info
        self.dataset_path = info.path
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            raise UserError("GLO does not support float16 mixed precision (no loss scaling for the "
                            "latent table); train in float32")
        resolution = options.resolution or info.resolution
        if resolution not in info.levels:
            raise UserError(f"dataset {info.path} has resolutions {min(info.levels)}..{max(info.levels)}; "
                            f"--resolution {resolution} is not available")
        holdout = int(options.holdout or 0)
        self.num_latents = info.num_images - holdout
        if holdout < 0 or self.num_latents < 2:
            raise UserError(f"--holdout={holdout} leaves {self.num_latents} of {info.num_images} images "
                            "to train on; need at least 2")
        self.replicas = strategy.num_replicas_in_sync
        self.batch = options.batch_size or min(PAPER_BATCH, self.num_latents)
        if self.batch % self.replicas:
            raise UserError(f"batch size {self.batch} is not divisible by the {self.replicas} replicas")
        if self.batch > self.num_latents:
            raise UserError(f"--batch_size={self.batch} exceeds the {self.num_latents} training images")
        epoch_kimg = self.num_latents / 1000  # ticks every epoch, snapshots every 5, 25 epochs (paper)
        self.DEFAULTS = dict(total_nimg=PAPER_EPOCHS * self.num_latents, tick_kimg=epoch_kimg,
                             snapshot_kimg=5 * epoch_kimg)
        self.loss_fn = reconstruction_loss(options.loss)
        project(tf.zeros([1, 1]), options.latent_projection)  # validates the name early
        self.arch = make_config(resolution, info.channels, options.z_dim or 100, options.fmaps or 64,
                                options.glo_arch, self.num_latents, holdout, options.latent_projection,
                                options.loss, dataset=info.path)
        self.resolution = resolution
        self.grid_images = read_images(info.path, resolution, 0, min(self.num_latents, 256))
        train_images = self.grid_images if options.init != "pca" else \
            read_images(info.path, resolution, 0, self.num_latents)
        codes = initial_latents(options.init, self.num_latents, self.arch["z_dim"], options.latent_projection,
                                options.seed, train_images)
        del train_images
        with strategy.scope():
            self.G = build_networks(self.arch)["G"]
            self.latents = tf.Variable(codes, name="latents")
            self.opt_g = self._make_g_optimizer()
            self.opt_z = keras.optimizers.SGD(self.z_lr)
            self.opt_g.build(self.G.trainable_variables)
            self.opt_z.build([self.latents])
            self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
        self.fake_seed = 4321
        self._step, self._iterator = None, None
        self.trace_count = 0

    # -- settings ----------------------------------------------------------------------------------
    def _make_g_optimizer(self):
        opts = self.options
        if opts.glo_optimizer == "adam":
            lr = opts.g_lr or opts.learning_rate or 1e-4
        else:
            lr = opts.g_lr or opts.learning_rate or 1.0
        self.g_lr = lr
        if opts.lr_weight_decay:
            lr = keras.optimizers.schedules.ExponentialDecay(lr, 10000, 0.5, staircase=True)
        if opts.glo_optimizer == "adam":  # the reference: TF1's AdamOptimizer defaults
            return make_adam(lr, beta_1=0.9, beta_2=0.999, epsilon=TF1_ADAM_EPSILON)
        return keras.optimizers.SGD(lr)

    @property
    def z_lr(self):
        opts = self.options
        if opts.z_lr is not None:
            return opts.z_lr
        if opts.alpha is not None:
            return opts.alpha
        return 10.0 if opts.z_update == "joint" else 1.0

    @property
    def clip_norm(self):
        if self.options.clip_norm is not None:
            return self.options.clip_norm if self.options.clip_norm > 0 else None
        return 20.0 if self.options.glo_optimizer == "adam" else None

    # -- loop interface ----------------------------------------------------------------------------
    def checkpoint_items(self):
        return dict(G=self.G, latents=self.latents, opt_g=self.opt_g, opt_z=self.opt_z, batches=self.batches)

    def after_restore(self, cur_nimg):
        self._iterator = None  # rebuilt lazily, skipping the batches already consumed

    def config(self):
        return dict(self.arch)

    def networks(self):
        return {"G": self.G}

    def snapshot_arrays(self):
        return {"latents": self.latents.numpy()}

    def progress_scalars(self, cur_nimg):
        return {"epoch": round(cur_nimg / self.num_latents, 2)}

    def grids(self, count):
        """Reals and their reconstructions side by side (pairs along each row), and samples from the
        full-covariance Gaussian fitted to the current latents."""
        half = max(1, min(count // 2, len(self.grid_images)))
        recon = generate(self.networks(), self.config(), self.latents[:half].numpy())
        pairs = interleave(self.grid_images[:half], recon)
        draw = latent_sampler(self.config(), self.snapshot_arrays())
        fakes = generate(self.networks(), self.config(), draw(count, self.fake_seed))
        return {"reconstructions": pairs, "fakes": fakes}

    # -- data --------------------------------------------------------------------------------------
    def dataset(self):
        ds = data_lib.load_dataset(self.dataset_path, batch_size=self.batch, resolution=self.resolution,
                                   with_index=True, shuffle=True, repeat=True, seed=self.options.seed)
        if self.arch["holdout"]:
            n = self.num_latents
            ds = ds.unbatch().filter(lambda e: e["index"] < n).batch(self.batch, drop_remainder=True)
        return ds

    def _get_iterator(self):
        if self._iterator is None:
            ds = self.dataset().skip(int(self.batches.numpy()))
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            self._iterator = iter(self.strategy.experimental_distribute_dataset(ds.with_options(options)))
        return self._iterator

    # -- the step ----------------------------------------------------------------------------------
    def _losses(self, images, z, training=True):
        out = self.G(z, training=training)
        per = self.loss_fn(images, out)
        mse = tf.reduce_mean(tf.square(out - images), axis=[1, 2, 3])
        return per, mse

    def _replica_joint(self, images, index):
        """Per replica: the batch's loss and its gradients for G and for the gathered latent rows."""
        with tf.GradientTape() as tape:
            z = tf.gather(self.latents, index)
            per, mse = self._losses(images, z)
            loss = tf.reduce_sum(per) / self.batch
        g_grads, z_grad = tape.gradient(loss, [self.G.trainable_variables, z])
        return g_grads, z_grad, tf.reduce_sum(per), tf.reduce_sum(mse)

    def _replica_g(self, images, index):
        with tf.GradientTape() as tape:
            per, mse = self._losses(images, tf.gather(self.latents, index))
            loss = tf.reduce_sum(per) / self.batch
        return tape.gradient(loss, self.G.trainable_variables), tf.reduce_sum(per), tf.reduce_sum(mse)

    def _replica_z(self, images, index):
        with tf.GradientTape() as tape:
            z = tf.gather(self.latents, index)
            per, _ = self._losses(images, z)
            loss = tf.reduce_sum(per) / self.batch
        return tape.gradient(loss, z)

    def _replica_loss(self, images, index):
        per, _ = self._losses(images, tf.gather(self.latents, index))
        return tf.reduce_sum(per)

    def _gather(self, per_replica):
        return self.strategy.gather(per_replica, axis=0)

    def _apply_g(self, g_grads):
        grads = [reduce_sum(self.strategy, g) for g in g_grads]
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        return grads, finite

    def _apply_z(self, z_grad, index):
        """z <- project(z - lr * grad) on the batch's rows only (duplicate rows add their gradients)."""
        slices = tf.IndexedSlices(z_grad, index, tf.shape(self.latents, out_type=tf.int64))
        self.opt_z.apply_gradients([(slices, self.latents)])
        rows = tf.gather(self.latents, index)
        self.latents.scatter_update(tf.IndexedSlices(project(rows, self.options.latent_projection), index))

    def _make_step(self):
        strategy = self.strategy
        g_vars = self.G.trainable_variables

        def step(iterator):
            self.trace_count += 1  # runs only while tracing
            batch = next(iterator)
            images, index = batch["image"], batch["index"]
            all_index = self._gather(index)
            if self.options.z_update == "joint":
                g_grads, z_grad, loss, mse = strategy.run(self._replica_joint, args=(images, index))
                grads, finite = self._apply_g(g_grads)
                z_grad = self._gather(z_grad)
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(z_grad)))

                def apply():
                    self.opt_g.apply_gradients(zip(grads, g_vars))
                    self._apply_z(z_grad, all_index)
                    return tf.constant(True)
                finite = tf.cond(finite, apply, lambda: tf.constant(False))
            else:  # the reference: a G step, then a plain gradient step on z at the updated G
                g_grads, loss, mse = strategy.run(self._replica_g, args=(images, index))
                grads, finite = self._apply_g(g_grads)

                def apply_g():
                    self.opt_g.apply_gradients(zip(grads, g_vars))
                    return tf.constant(True)
                finite = tf.cond(finite, apply_g, lambda: tf.constant(False))
                z_grad = self._gather(strategy.run(self._replica_z, args=(images, index)))

                def apply_z():
                    self._apply_z(z_grad, all_index)
                    return tf.constant(True)
                z_finite = tf.reduce_all(tf.math.is_finite(z_grad))
                finite = tf.logical_and(finite, tf.cond(z_finite, apply_z, lambda: tf.constant(False)))
                # The reference then evaluates the loss at the updated codes (its "Z update" figure);
                # BatchNorm in training mode moves its moving statistics in that run too: three
                # updates per step, as there.
                loss_z = reduce_sum(strategy, strategy.run(self._replica_loss, args=(images, index)))
            self.batches.assign_add(1)
            stats = {"loss": reduce_sum(strategy, loss) / self.batch,
                     "mse": reduce_sum(strategy, mse) / self.batch, "finite": finite}
            if self.options.z_update != "joint":
                stats["loss_z_update"] = loss_z / self.batch
            return stats

        return tf.function(step)

    def train_iteration(self, cur_nimg):
        if self._step is None:
            self._step = self._make_step()
        stats, finite = host_stats(self._step(self._get_iterator()))
        return dict(stats, nimg=self.batch, nonfinite=not finite)

"""VGrow-PG: variational gradient flow with progressive growing (Gao et al., ICML 2019).

A discriminator estimates the log density ratio d(x) = log p_data/q; generated particles move along
s(d)·∇d (s from the chosen f-divergence, `vgrow_tf.divergences`), and the generator is fitted to the
moved particles by least squares. Networks follow the original `networks.py` (ProGAN-style, constant
width, full-resolution canvas). Faithfulness decisions (see README, "VGrow-PG: choices"):
- particles, the gradient penalty and the G loss live on the full-resolution canvas, as in the original;
- the original's 4x4 pixel norm over the height axis is kept (`--fix_4x4_pixelnorm` normalises channels);
- the self-attention block at 32x32 (R >= 64) is omitted: it is zero-initialised and provably stays an
  exact identity in the original;
- Gs starts from independent random weights as in the original (`--gs_init=copy` copies G).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import data as data_lib
from vgrow_tf import divergences, layers
from vgrow_tf.errors import UserError
from vgrow_tf.training import ema as ema_lib
from vgrow_tf.training import memory
from vgrow_tf.training import schedule
from vgrow_tf.training.options import Option
from vgrow_tf.training.steps import apply_if_finite, host_stats, make_adam, reduce_sum, scale_loss, xla_pays
from vgrow_tf.training.strategy import replica_slice

KIND = "vgrow_pg"
KINDS = (KIND,)
SQRT2 = math.sqrt(2.0)
# Global batch by working resolution (train.py of the original).
BATCH_BY_RESOLUTION = {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4}

OPTIONS = [
    Option("divergence", "KL", "f-divergence of the particle flow: KL, JS, Jef or LogD.", "enum",
           ["KL", "JS", "Jef", "LogD"]),
    Option("init_resolution", 4, "Resolution training starts at.", "integer"),
    Option("z_dim", None, "Latent size (default 512; GLO 100, CoGAN 100).", "integer"),
    Option("dur_nimg", 600000, "Images per stabilise and per fade stage.", "integer"),
    Option("pool_size", 1, "Particle pool size, in batches.", "integer"),
    Option("T", 1, "Particle moves per outer iteration.", "integer"),
    Option("U", 1, "Discriminator steps per particle move.", "integer"),
    Option("L", 1, "Generator steps per outer iteration.", "integer"),
    Option("step_size", 1.0, "Particle step size.", "float"),
    Option("use_gp", True, "Gradient penalty on the discriminator.", "bool"),
    Option("coef_gp", 1.0, "Gradient-penalty coefficient (the loss uses 0.5 * coef_gp).", "float"),
    Option("target_gp", 1.0, "Gradient-penalty target norm.", "float"),
    Option("coef_smoothing", 0.99, "EMA coefficient of the smoothed generator Gs.", "float"),
    Option("resume_training", False, "Original VGrow resume flag: same as --resume.", "bool"),
    Option("resume_num", None, "With --resume_training: resume from the checkpoint at this image count "
           "(as the original), or at this kimg (the number in snapshot names).", "integer"),
    Option("fmaps", None, "Feature maps per layer (default 256 up to 128 px, 128 above).", "integer"),
    Option("learning_rate", None, "Adam learning rate (VGrow-PG 1e-3, MSG 3e-3, ...).", "float"),
    Option("fix_4x4_pixelnorm", False, "Pixel-normalise the 4x4 block over channels (the original "
           "normalises over height, a bug kept by default).", "bool"),
    Option("gs_init", "independent", "Initial Gs weights: independent draws (original) or a copy of G.",
           "enum", ["independent", "copy"]),
    Option("shuffle_data", False, "Reshuffle the data each epoch (the original reads sequentially).",
           "bool"),
]


def lerp(a, b, t):
    return a + (b - a) * t


def _nearest_to(x, size):
    factor = size // x.shape[1]
    return layers.upscale2d(x, factor) if factor > 1 else x


class Generator(keras.Model):
    """z -> images on the full-resolution canvas, for a working level and fade weight."""

    def __init__(self, resolution, channels, z_dim, fmaps, fix_4x4_pixelnorm=False, **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.log2_res = resolution, int(round(math.log2(resolution)))
        self.z_dim, self.fmaps = z_dim, fmaps
        self.pn_axis = -1 if fix_4x4_pixelnorm else 1
        self.dense = layers.EqualizedDense(16 * fmaps, gain=SQRT2, use_bias=False, name="dense4")
        self.bias4 = self.add_weight(shape=(fmaps,), initializer="zeros", name="bias4")
        self.conv4 = layers.EqualizedConv2D(fmaps, 3, name="conv4")
        self.blocks = [[layers.EqualizedConv2D(fmaps, 3, name=f"conv{2 ** r}_{i}") for i in range(2)]
                       for r in range(3, self.log2_res + 1)]
        self.to_rgb = [layers.EqualizedConv2D(channels, 1, gain=1.0, name=f"to_rgb{2 ** r}",
                                              **layers.OUTPUT)
                       for r in range(2, self.log2_res + 1)]

    def build(self, input_shape):  # weights are created per level on first call (build_networks)
        self.built = True

    @staticmethod
    def _norm(x, axis=-1):
        return layers.pixel_norm(x, axis=axis, epsilon=1e-6)

    def call(self, z, level=None, alpha=0.0):
        level = self.log2_res if level is None else level
        x = self._norm(z)
        x = tf.reshape(self.dense(x), [-1, 4, 4, self.fmaps]) + self.bias4
        x = self._norm(layers.lrelu(x), axis=self.pn_axis)
        x = self._norm(layers.lrelu(self.conv4(x)))
        previous = x
        for r in range(3, level + 1):
            previous = x
            x = layers.upscale2d(x, 2)
            for conv in self.blocks[r - 3]:
                x = self._norm(layers.lrelu(conv(x)))
        images = self.to_rgb[level - 2](x)
        if level > 2:
            old = layers.upscale2d(self.to_rgb[level - 3](previous), 2)
            images = lerp(images, old, tf.cast(alpha, images.dtype))  # toRGB is float32, alpha not
        return tf.cast(_nearest_to(images, self.resolution), tf.float32)


class Discriminator(keras.Model):
    """Full-resolution canvas -> logit d(x), average-pooled to the working level inside."""

    def __init__(self, resolution, channels, fmaps, **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.log2_res = resolution, int(round(math.log2(resolution)))
        self.from_rgb = [layers.EqualizedConv2D(fmaps, 1, name=f"from_rgb{2 ** r}")
                         for r in range(2, self.log2_res + 1)]
        self.blocks = [[layers.EqualizedConv2D(fmaps, 3, name=f"conv{2 ** r}_{i}") for i in range(2)]
                       for r in range(3, self.log2_res + 1)]
        self.mbstd = layers.MinibatchStddev(group_size=None, epsilon=1e-6)
        self.conv4 = layers.EqualizedConv2D(fmaps, 3, fan_in_channels=fmaps, name="conv4")
        self.dense4 = layers.EqualizedDense(fmaps, gain=SQRT2, name="dense4")
        self.logit = layers.EqualizedDense(1, gain=1.0, name="logit", **layers.OUTPUT)

    def build(self, input_shape):  # weights are created per level on first call (build_networks)
        self.built = True

    def _block(self, r, x):
        for conv in self.blocks[r - 3]:
            x = layers.lrelu(conv(x))
        return layers.downscale2d(x, 2)

    def call(self, images, level=None, alpha=0.0):
        level = self.log2_res if level is None else level
        images = layers.downscale2d(images, 2 ** (self.log2_res - level)) if level < self.log2_res \
            else images
        x = layers.lrelu(self.from_rgb[level - 2](images))
        if level > 2:
            x = self._block(level, x)
            old = layers.lrelu(self.from_rgb[level - 3](layers.downscale2d(images, 2)))
            x = lerp(x, old, tf.cast(alpha, x.dtype))
        for r in range(level - 1, 2, -1):
            x = self._block(r, x)
        x = self.mbstd(x)
        x = layers.lrelu(self.conv4(x))
        x = layers.lrelu(self.dense4(tf.reshape(x, [tf.shape(x)[0], -1])))
        return tf.cast(self.logit(x)[:, 0], tf.float32)  # logits stay float32 under mixed precision


# --- snapshot interface ----------------------------------------------------------------------

def make_config(resolution, channels, z_dim=512, fmaps=None, fix_4x4_pixelnorm=False, lod=0.0):
    fmaps = fmaps or (256 if resolution <= 128 else 128)
    return dict(resolution=int(resolution), channels=int(channels), z_dim=int(z_dim), fmaps=int(fmaps),
                fix_4x4_pixelnorm=bool(fix_4x4_pixelnorm), lod=float(lod))


def build_networks(config):
    """G, D and Gs, built (every level's weights created) and ready to load weights into."""
    res, ch = config["resolution"], config["channels"]
    nets = {"G": Generator(res, ch, config["z_dim"], config["fmaps"], config["fix_4x4_pixelnorm"], name="G"),
            "D": Discriminator(res, ch, config["fmaps"], name="D"),
            "Gs": Generator(res, ch, config["z_dim"], config["fmaps"], config["fix_4x4_pixelnorm"], name="Gs")}
    z = tf.zeros([2, config["z_dim"]])
    for level in range(2, int(round(math.log2(res))) + 1):  # touch every level so all weights exist
        for g in (nets["G"], nets["Gs"]):
            images = g(z, level=level, alpha=0.5)
        nets["D"](images, level=level, alpha=0.5)
    return nets


def latent_dim(config):
    return config["z_dim"]


def _level(config, lod):
    lod = config.get("lod", 0.0) if lod is None else lod
    return schedule.working_level(lod, config["resolution"])


def generate(networks, config, latents, lod=None, batch_size=64, network="Gs", **unused):
    level, alpha = _level(config, lod)
    g = networks[network]
    out = [g(tf.convert_to_tensor(latents[i:i + batch_size], tf.float32), level=level, alpha=alpha).numpy()
           for i in range(0, len(latents), batch_size)]
    return np.concatenate(out)


def generator_tensor(networks, config, z, lod=None, **unused):
    """Differentiable Gs(z) (a tensor) at the snapshot's lod, for DGflow refinement."""
    level, alpha = _level(config, lod)
    return networks["Gs"](z, level=level, alpha=alpha)


def discriminator_logit(networks, config, images, lod=None, **unused):
    level, alpha = _level(config, lod)
    return networks["D"](images, level=level, alpha=alpha)


# --- training --------------------------------------------------------------------------------

class Trainer:
    """VGrow-PG's outer iteration (spec §1.2): T x (U D steps, particle move), then L G steps."""

    DEFAULTS = dict(total_nimg=18_000_000, tick_kimg=150, snapshot_kimg=600)

    inspect_data = staticmethod(data_lib.dataset_from_options)

    @staticmethod
    def run_name_suffix(options):
        return options.divergence

    @staticmethod
    def identity(options):
        return {k: getattr(options, k) for k in ("divergence", "z_dim", "fmaps", "fix_4x4_pixelnorm",
                                                  "init_resolution")}

    def __init__(self, options, strategy, info):
        self.options, self.strategy, self.info = options, strategy, info
        self.dataset_path = info.path
        resolution = options.resolution or info.resolution
        if resolution not in info.levels:
            raise UserError(f"dataset {info.path} has resolutions {min(info.levels)}..{max(info.levels)}; "
                            f"--resolution {resolution} is not available")
        if options.init_resolution not in info.levels:
            raise UserError(f"--init_resolution {options.init_resolution} is not a level of {info.path}")
        divergences.s_weight_np(np.zeros(1), options.divergence)  # validates the name early
        self.arch = make_config(resolution, info.channels, options.z_dim or 512, options.fmaps,
                                options.fix_4x4_pixelnorm)
        self.resolution = resolution
        self.replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            nets = build_networks(self.arch)
            self.G, self.D, self.Gs = nets["G"], nets["D"], nets["Gs"]
            if options.gs_init == "copy":
                ema_lib.copy_weights(self.Gs.weights, self.G.weights)
            lr = options.learning_rate or 1e-3
            self.opt_g = make_adam(lr, beta_1=0.0, beta_2=0.99, epsilon=1e-8)
            self.opt_d = make_adam(lr, beta_1=0.0, beta_2=0.99, epsilon=1e-8)
            self.opt_g.build(self.G.trainable_variables)
            self.opt_d.build(self.D.trainable_variables)
            self.phase = tf.Variable(list(schedule.phase_key(self._lod(0))), dtype=tf.int64,
                                     trainable=False, name="phase")
            self.level_batches = tf.Variable(tf.zeros([16], tf.int64), trainable=False, name="level_batches")
        self.rng = tf.random.Generator.from_seed(options.seed)
        self.grid_latents = np.random.RandomState(1234).randn(10000, self.arch["z_dim"]).astype(np.float32)
        self._steps, self._iterators = {}, {}
        self.trace_counts = {}
        self.cur_lod = self._lod(0)
        self._phase_key = None  # Python copy of `phase`, read from it once (after a restore)
        self._ema_beta = tf.constant(options.coef_smoothing, tf.float32)
        self.jit_compile = xla_pays(options, "VGrow-PG")

    # -- bookkeeping ---------------------------------------------------------------------------
    def _lod(self, nimg):
        return schedule.lod_at(nimg, self.resolution, self.options.init_resolution, self.options.dur_nimg)

    def batch_size(self, level):
        batch = self.options.batch_size or BATCH_BY_RESOLUTION[2 ** level]
        if batch % self.replicas:
            raise UserError(f"batch size {batch} is not divisible by the {self.replicas} replicas")
        return batch

    def checkpoint_items(self):
        return dict(G=self.G, D=self.D, Gs=self.Gs, opt_g=self.opt_g, opt_d=self.opt_d, rng=self.rng,
                    phase=self.phase, level_batches=self.level_batches)

    def after_restore(self, cur_nimg):
        self._iterators.clear()  # rebuilt lazily, skipping the batches already consumed
        self.cur_lod = self._lod(cur_nimg)
        self._phase_key = None

    @staticmethod
    def start_from_reads(source_format):
        return source_format == "pgvgrow_ckpt"

    def start_from(self, path):
        """--resume_from: PGVGrow's checkpoint at `path` (weights, Adam moments and steps, image count), as
        its train.py resumes it (no optimizer reset unless the phase changes); returns the image count."""
        from vgrow_tf.interop import pgvgrow_checkpoint as original
        prefix, arch, num_img = original.architecture_of(path)
        describe = "{resolution} px, {channels} channel(s), z_dim {z_dim}, fmaps {fmaps}".format
        if describe(**arch) != describe(**self.arch):
            raise UserError(f"--resume_from {prefix} holds {describe(**arch)}; this run builds "
                            f"{describe(**self.arch)}: set --resolution, --z_dim and --fmaps to match")
        original.load_networks(prefix, self.networks())
        original.load_optimizer_state(prefix, self.networks(), {"G": self.opt_g, "D": self.opt_d})
        num_img = num_img or 0
        self.phase.assign(list(schedule.phase_key(self._lod(num_img))))
        self.after_restore(num_img)
        return num_img

    def schedule_segments(self, total_nimg):
        """The levels still to grow through, for the ETA (see training/eta.py)."""
        return schedule.level_segments(total_nimg, self.resolution, self.options.init_resolution,
                                       self.options.dur_nimg)

    def config(self):
        return dict(self.arch, lod=float(self.cur_lod))

    def networks(self):
        return {"G": self.G, "D": self.D, "Gs": self.Gs}

    def progress_scalars(self, cur_nimg):
        level, _ = schedule.working_level(self._lod(cur_nimg), self.resolution)
        return {"lod": round(self._lod(cur_nimg), 4), "resolution": 2 ** level}

    def grids(self, count):
        images = generate(self.networks(), self.config(), self.grid_latents[:count])
        return {"fakes": images}

    # -- data ------------------------------------------------------------------------------------
    def _iterator(self, level):
        if level not in self._iterators:
            dataset = data_lib.load_dataset(
                self.dataset_path, batch_size=self.batch_size(level), resolution=2 ** level,
                shuffle=self.options.shuffle_data, repeat=True, seed=self.options.seed)
            dataset = dataset.skip(int(self.level_batches[level].numpy()))
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
            self._iterators[level] = iter(self.strategy.experimental_distribute_dataset(dataset))
        return self._iterators[level]

    # -- per-replica pieces ------------------------------------------------------------------------
    def _canvas_reals(self, images, level, alpha):
        """Original preprocessing: fade blend with the lower level, then nearest-upsample to R."""
        images = tf.ensure_shape(images, [None, 2 ** level, 2 ** level, self.arch["channels"]])
        if level > 2:
            images = lerp(images, layers.upscale2d(layers.downscale2d(images, 2), 2), alpha)
        return _nearest_to(images, self.resolution)

    def _d_grads(self, reals, particles, pool_keys, gp_u, level, alpha, global_batch):
        opts = self.options
        local_batch = global_batch // self.replicas
        pick = tf.argsort(replica_slice(pool_keys))[:local_batch]
        fakes = tf.gather(particles, pick)
        reals = self._canvas_reals(reals, level, alpha)
        with tf.GradientTape() as tape:
            d_real = self.D(reals, level=level, alpha=alpha)
            d_fake = self.D(fakes, level=level, alpha=alpha)
            loss_real = tf.reduce_sum(tf.nn.softplus(-d_real)) / global_batch
            loss_fake = tf.reduce_sum(tf.nn.softplus(d_fake)) / global_batch
            loss = loss_real + loss_fake
            gp = tf.constant(0.0)
            if opts.use_gp:
                u = replica_slice(gp_u)
                mixed = reals + u * (fakes - reals)
                with tf.GradientTape() as gp_tape:
                    gp_tape.watch(mixed)
                    d_mixed = tf.reduce_sum(self.D(mixed, level=level, alpha=alpha))
                grad = gp_tape.gradient(d_mixed, mixed)
                norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]))
                gp = tf.reduce_sum(tf.square(norm - opts.target_gp)) / global_batch
                loss += 0.5 * opts.coef_gp * gp
        grads = tape.gradient(scale_loss(self.opt_d, loss), self.D.trainable_variables)
        return grads, {"d_real": loss_real, "d_fake": loss_fake, "gp": gp}

    def _move_particles(self, particles, level, alpha):
        with tf.GradientTape() as tape:
            tape.watch(particles)
            logits = self.D(particles, level=level, alpha=alpha)
            total = tf.reduce_sum(logits)
        grad = tape.gradient(total, particles)
        s = tf.reshape(divergences.s_weight(tf.stop_gradient(logits), self.options.divergence), [-1, 1, 1, 1])
        return particles + self.options.step_size * s * grad

    def _g_grads(self, z, particles, level, alpha):
        with tf.GradientTape() as tape:
            out = self.G(replica_slice(z), level=level, alpha=alpha)
            loss = 0.5 * tf.reduce_sum(tf.square(out - tf.stop_gradient(particles)))
        return tape.gradient(scale_loss(self.opt_g, loss), self.G.trainable_variables), loss

    # -- the outer iteration -------------------------------------------------------------------
    STAT_NAMES = ("d_real", "d_fake", "gp", "g_loss", "finite")

    def _make_step(self, level):
        """One compiled outer iteration for `level`; alpha is a tensor, so fades never retrace.

        The data iterator and the RNG stay in a plain tf.function; everything else (the D and G
        steps, the optimizer updates, the EMA, the bookkeeping) is one body, returning one stats
        vector (one host sync per iteration). With XLA (`xla_pays`) and one replica that body is
        one XLA program (one compile per level); with several replicas XLA compiles only the
        per-replica maths, as cross-replica sums cannot live inside an XLA program everywhere.
        """
        opts, strategy = self.options, self.strategy
        batch = self.batch_size(level)
        pool = batch * opts.pool_size
        d_steps = opts.T * opts.U
        fused = self.jit_compile and self.replicas == 1
        jit = (lambda f: tf.function(f, jit_compile=True, autograph=False)) if self.jit_compile and not fused \
            else (lambda f: f)
        d_grads, move, g_grads = jit(self._d_grads), jit(self._move_particles), jit(self._g_grads)
        make_particles = jit(lambda z, alpha: self.G(replica_slice(z), level=level, alpha=alpha))

        def update(reals, z, pool_keys, gp_u, alpha, ema_beta):
            particles = strategy.run(make_particles, args=(z, alpha))
            totals = {"d_real": 0.0, "d_fake": 0.0, "gp": 0.0}
            all_finite = tf.constant(True)
            for t in range(opts.T):
                for u in range(opts.U):
                    k = t * opts.U + u
                    grads, stats = strategy.run(d_grads, args=(
                        reals[k], particles, pool_keys[k], gp_u[k], level, alpha, batch))
                    finite = apply_if_finite(strategy, self.opt_d, grads, self.D.trainable_variables)
                    all_finite = tf.logical_and(all_finite, finite)
                    for key in totals:
                        totals[key] += reduce_sum(strategy, stats[key]) / d_steps
                particles = strategy.run(move, args=(particles, level, alpha))
            # Gs <- G + beta (Gs - G) after every D step; G is unchanged by D steps, so d_steps
            # updates collapse into one with beta ** d_steps, applied before the G steps as originally.
            ema_lib.ema_update(self.Gs.weights, self.G.weights, ema_beta ** d_steps)
            g_loss = tf.constant(0.0)
            for _ in range(opts.L):
                grads, loss = strategy.run(g_grads, args=(z, particles, level, alpha))
                finite = apply_if_finite(strategy, self.opt_g, grads, self.G.trainable_variables)
                all_finite = tf.logical_and(all_finite, finite)
                g_loss = reduce_sum(strategy, loss) / pool
            self.level_batches.assign_add(tf.one_hot(level, 16, dtype=tf.int64) * d_steps)
            values = dict(totals, g_loss=g_loss, finite=tf.cast(all_finite, tf.float32))
            return tf.stack([tf.cast(values[name], tf.float32) for name in self.STAT_NAMES])

        body = tf.function(update, jit_compile=True, autograph=False) if fused else update

        def iteration(iterator, alpha, ema_beta, inputs=None):
            self.trace_counts[level] = self.trace_counts.get(level, 0) + 1  # runs only while tracing
            if inputs is not None:  # fed by a test (train_iteration's `inputs`)
                return body(tf.unstack(inputs["reals"]), inputs["z"], inputs["pool_keys"], inputs["gp_u"],
                            alpha, ema_beta)
            z = self.rng.normal([pool, self.arch["z_dim"]])
            pool_keys = self.rng.uniform([d_steps, pool])
            gp_u = self.rng.uniform([d_steps, batch, 1, 1, 1])
            reals = [next(iterator)["image"] for _ in range(d_steps)]
            return body(reals, z, pool_keys, gp_u, alpha, ema_beta)

        return tf.function(iteration, autograph=False)  # plain Python control flow: nothing to convert

    def _enter_phase(self, lod):
        """Resets both optimizers at every fade start and stabilise start (spec §7.8)."""
        key = schedule.phase_key(lod)
        if self._phase_key is None:
            self._phase_key = tuple(int(k) for k in self.phase.numpy())
        if self._phase_key != key:
            ema_lib.reset_optimizer(self.opt_g)
            ema_lib.reset_optimizer(self.opt_d)
            self.phase.assign(list(key))
            self._phase_key = key

    def train_iteration(self, cur_nimg, inputs=None):
        """One outer iteration. `inputs` (for tests that replay another implementation's draws) replaces
        the data and the random draws: dict(reals=[T*U, batch, r, r, C] in [-1, 1] at the working
        resolution, z=[pool, z_dim], pool_keys=[T*U, pool] (each D step takes the particles with the
        `batch` smallest keys, in key order), gp_u=[T*U, batch, 1, 1, 1]); single replica only."""
        lod = self._lod(cur_nimg)
        self._enter_phase(lod)
        self.cur_lod = lod
        level, alpha = schedule.working_level(lod, self.resolution)
        new_level = level not in self._steps
        if new_level:  # the working level only grows: the lower levels' steps and data are done with
            self._steps = {level: self._make_step(level)}
            self._iterators = {k: v for k, v in self._iterators.items() if k == level}
        iterator = self._iterator(level) if inputs is None else None
        values = self._steps[level](iterator, tf.constant(alpha, tf.float32), self._ema_beta,
                                    inputs).numpy()  # the one host sync per iteration
        if new_level:
            memory.return_freed_memory()  # what tracing and the dropped levels left behind
        stats, finite = host_stats(dict(zip(self.STAT_NAMES, values)))
        return dict(stats, nimg=self.options.T * self.options.U * self.batch_size(level),
                    nonfinite=not finite)

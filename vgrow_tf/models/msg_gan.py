"""MSG-StyleGAN and MSG-ProGAN: multi-scale-gradient GANs (Karnewar & Wang, CVPR 2020).

The generator returns one image per scale, lowest (4x4) first; the discriminator reads the top scale
through fromRGB and takes every lower scale in through a `combine` step at the start of the block of
that resolution, so gradients flow to every scale of G at once. No progressive growing.

- `msg_stylegan` follows msg-stylegan-tf: StyleGAN's mapping (8 x 512, lrmul 0.01), constant input,
  per-layer noise, AdaIN, blur, a linear 1x1 toRGB at every resolution; D_basic with minibatch-stddev
  in every block and the `cat_lin` combine; logistic NS + R1 (gamma 10) with the real pyramid built
  inside the tape (R1 includes the avg-pool back-flow); Adam 0.003, betas (0, 0.99); Gs EMA with a
  10 kimg half-life after each D step.
- `msg_progan` follows BMSG-GAN (ProGAN-style blocks, `lin_cat` combine, minibatch-stddev in the last
  block only, relativistic hinge by default, EMA decay 0.999 after each G step).

Choices (see README, "MSG-GAN: choices"): up/down-sampling convolutions are never fused. The
original's fused down-sampling conv (D, inputs >= 128 px) is the same function as conv + 2x2 mean; its
fused up-sampling conv (G, outputs >= 128 px, a stride-2 transposed conv of the 3x3 kernel summed over
four shifts) equals nearest-upsample + conv only with the 3x3 kernel rotated 180 degrees, which is how
`vgrow_tf.interop.msg_stylegan_pickle` maps it. `--combine` selects simple|lin_cat|cat_lin for either
model; style mixing is off as in MSG (`--style_mixing_prob` turns it on); every loss works with lists of
scales, and wgan-gp has its gradient penalty (+ drift); `--r1_gamma` adds R1 to any loss; labels are
not used. `--mbstd_group_size` 0 or 1 removes the minibatch-stddev layer, as in the original.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import data as data_lib
from vgrow_tf import layers, losses
from vgrow_tf.errors import UserError
from vgrow_tf.sampling.images import side_by_side
from vgrow_tf.training import ema as ema_lib
from vgrow_tf.training.options import Option
from vgrow_tf.training.steps import apply_if_finite, host_stats, make_adam, reduce_sum, scale_loss
from vgrow_tf.training.strategy import replica_slice

KIND = "msg_stylegan"
KINDS = ("msg_stylegan", "msg_progan")
SQRT2 = math.sqrt(2.0)
COMBINES = ("simple", "lin_cat", "cat_lin")
LOSSES = ("logistic", "standard-gan", "wgan-gp", "hinge", "relativistic-hinge")
# msg-stylegan-tf train.py: total minibatch by GPU count (per GPU = total / GPUs).
STYLEGAN_BATCH_BY_REPLICAS = {1: 4, 2: 32, 4: 16, 8: 32}

OPTIONS = [
    Option("combine", "auto", "MSG combine step in D: cat_lin (MSG-StyleGAN), lin_cat (MSG-ProGAN) or "
           "simple; auto picks the model's own.", "enum", ("auto",) + COMBINES),
    Option("loss_function", "auto", "MSG loss: logistic (NS G, MSG-StyleGAN), relativistic-hinge "
           "(MSG-ProGAN), hinge, wgan-gp, standard-gan (= logistic).", "enum", ("auto",) + LOSSES),
    Option("r1_gamma", None, "R1 weight (default 10 with the logistic loss, else 0).", "float"),
    Option("wgan_lambda", 10.0, "WGAN-GP gradient-penalty weight.", "float"),
    Option("wgan_epsilon", 0.001, "WGAN-GP drift weight on D(real)^2.", "float"),
    Option("learning_rate", None, "Adam learning rate (VGrow-PG 1e-3, MSG 3e-3, ...).", "float"),
    Option("g_lr", None, "Generator learning rate (overrides --learning_rate).", "float"),
    Option("d_lr", None, "Discriminator learning rate (overrides --learning_rate).", "float"),
    Option("adam_beta1", 0.0, "Adam beta1.", "float"),
    Option("adam_beta2", 0.99, "Adam beta2.", "float"),
    Option("G_smoothing_kimg", None, "Gs EMA half-life in kimg (MSG-StyleGAN default 10; given with "
           "msg_progan it replaces --ema_decay).", "float"),
    Option("use_ema", True, "Keep an EMA generator Gs (off: Gs is a copy of G).", "bool"),
    Option("ema_decay", None, "MSG-ProGAN EMA decay per G step (default 0.999).", "float"),
    Option("mirror_augment", None, "Random horizontal flips of the reals (default: off for "
           "msg_stylegan, on for msg_progan).", "bool"),
    Option("flip_augment", None, "BMSG-GAN's name for --mirror_augment.", "bool"),
    Option("depth", None, "BMSG-GAN depth: trains at 2^(depth+1) px (alternative to --resolution).",
           "integer"),
    Option("use_eql", True, "Equalized learning rate (the originals' use_wscale; off: plain He-initialised "
           "layers).", "bool"),
    Option("z_dim", None, "Latent size (default 512; GLO 100, CoGAN 100).", "integer"),
    Option("fmap_base", None, "Feature-map rule nf(s) = min(fmap_base / 2^s, fmap_max); default 8192 "
           "(msg_progan: 16 * fmap_max).", "integer"),
    Option("fmap_max", None, "Most feature maps per layer (default 512).", "integer"),
    Option("mapping_layers", 8, "MSG-StyleGAN mapping-network depth.", "integer"),
    Option("mapping_fmaps", None, "Mapping-network width (default 512; also the dlatent size unless "
           "--dlatent_size).", "integer"),
    Option("dlatent_size", None, "MSG-StyleGAN dlatent (W) size: the last mapping layer's width (default "
           "--mapping_fmaps).", "integer"),
    Option("mapping_lrmul", 0.01, "Learning-rate multiplier of the mapping network.", "float"),
    Option("mapping_nonlinearity", "lrelu", "MSG-StyleGAN mapping-network activation.", "enum", ("lrelu", "relu")),
    Option("normalize_latents", True, "MSG-StyleGAN: pixel-normalise z before the mapping network.", "bool"),
    Option("fmap_decay", 1.0, "MSG-StyleGAN: nf(s) = min(fmap_base / 2^(s * fmap_decay), fmap_max).", "float"),
    Option("d_fmap_base", None, "MSG-StyleGAN D's fmap_base (default --fmap_base).", "integer"),
    Option("d_fmap_max", None, "MSG-StyleGAN D's fmap_max (default --fmap_max).", "integer"),
    Option("d_fmap_decay", None, "MSG-StyleGAN D's fmap_decay (default --fmap_decay).", "float"),
    Option("mbstd_group_size", 4, "MSG-StyleGAN minibatch-stddev group size (0 or 1: no minibatch-stddev "
           "layer, as in the original).", "integer"),
    Option("mbstd_num_features", 1, "MSG-StyleGAN minibatch-stddev features (channel groups).", "integer"),
    Option("use_noise", True, "MSG-StyleGAN per-layer noise inputs.", "bool"),
    Option("use_styles", True, "MSG-StyleGAN style modulation (off: no AdaIN styles, one dlatent).", "bool"),
    Option("const_input_layer", True, "MSG-StyleGAN learned 4x4 constant (off: a dense layer of the dlatent).",
           "bool"),
    Option("use_pixel_norm", False, "MSG-StyleGAN pixel norm in every G layer.", "bool"),
    Option("use_instance_norm", True, "MSG-StyleGAN instance norm in every G layer.", "bool"),
    Option("nonlinearity", "lrelu", "MSG-StyleGAN G activation.", "enum", ("lrelu", "relu")),
    Option("d_nonlinearity", None, "MSG-StyleGAN D activation, lrelu or relu (default --nonlinearity).",
           "string"),
    Option("d_use_eql", None, "MSG-StyleGAN D equalized learning rate (default --use_eql).", "bool"),
    Option("blur_filter", "1,2,1", "MSG-StyleGAN G resampling blur taps, or none.", "string"),
    Option("d_blur_filter", None, "MSG-StyleGAN D blur taps, or none (default --blur_filter).", "string"),
    Option("fused_scale", "auto", "MSG-StyleGAN G fused up-sampling conv (the same function; decides the "
           "kernel layout of an original's pickle): auto (>= 128 px), true, false.", "enum",
           ("auto", "true", "false")),
    Option("d_fused_scale", None, "MSG-StyleGAN D fused down-sampling conv: auto, true, false (default "
           "--fused_scale).", "string"),
    Option("truncation_psi", None, "MSG-StyleGAN truncation psi recorded in the model (written into an "
           "original's pickle; our samplers truncate only when asked).", "float"),
    Option("truncation_cutoff", None, "MSG-StyleGAN truncation cutoff: the style layers truncated when "
           "sampling with a psi (default 8).", "integer"),
    Option("style_mixing_prob", 0.0, "Style-mixing regularisation probability (MSG removed it: 0).",
           "float"),
    Option("restart_adam_on_resume", False, "On --resume, start Adam's moments from zero as the originals "
           "did (they saved no optimizer state); off: continue them exactly.", "bool"),
    Option("dlatent_avg_beta", 0.995, "Decay of the tracked average dlatent (truncation centre).",
           "float"),
]


# msg-stylegan-tf's network keywords beyond the widths, with the original's defaults. Config keys carry the
# original's names, except use_eql (use_wscale); D's own copy of a setting G and D both have is d_<name>
# (None: as G's). docs/original_models.md lists every keyword.
STYLE_DEFAULTS = dict(
    dlatent_size=None, mapping_fmaps=None, mapping_nonlinearity="lrelu", normalize_latents=True, fmap_decay=1.0,
    use_noise=True, use_styles=True, const_input_layer=True, use_pixel_norm=False, use_instance_norm=True,
    use_eql=True, nonlinearity="lrelu", blur_filter=[1, 2, 1], fused_scale="auto", truncation_psi=None,
    truncation_cutoff=None, dlatent_avg_beta=0.995, mbstd_num_features=1, d_fmap_base=None, d_fmap_max=None,
    d_fmap_decay=None, d_nonlinearity=None, d_use_eql=None, d_blur_filter=None, d_fused_scale=None)
# The keywords make_config takes as **style (the others are its named arguments).
STYLE_KEYWORDS = tuple(k for k in STYLE_DEFAULTS if k not in ("mapping_fmaps", "use_eql"))
D_OWN = ("fmap_base", "fmap_max", "fmap_decay", "nonlinearity", "use_eql", "blur_filter", "fused_scale")
NONLINEARITIES = ("lrelu", "relu")
FUSED_SCALES = ("auto", True, False)


def activation(name):
    """The originals' activations (both with gain sqrt(2) in the following layer)."""
    if name not in NONLINEARITIES:
        raise UserError(f"unknown nonlinearity {name!r}; choose one of {', '.join(NONLINEARITIES)}")
    return layers.lrelu if name == "lrelu" else tf.nn.relu


def nf_rule(fmap_base, fmap_max, fmap_decay=1.0):
    if fmap_decay == 1.0:
        return lambda stage: int(min(fmap_base // (2 ** stage), fmap_max))
    return lambda stage: int(min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max))


def parse_blur_filter(value, flag="--blur_filter"):
    """'1,2,1' | [1, 2, 1] -> [1, 2, 1]; 'none' | '' | None | [] -> [] (no blur)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")) or \
            (isinstance(value, (list, tuple)) and not value):
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        taps = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise UserError(f"{flag} {value!r} is not a list of numbers like 1,2,1 (or none)") from None
    if not taps or sum(taps) == 0:
        raise UserError(f"{flag} {value!r} must have taps with a non-zero sum")
    return [int(t) if t == int(t) else t for t in taps]


def style_settings(config):
    """The msg_stylegan keywords of `config` with defaults filled in (older snapshots lack them) and D's
    copies resolved: everything StyleGenerator / StyleDiscriminator read."""
    s = dict(STYLE_DEFAULTS)
    s.update({k: config[k] for k in STYLE_DEFAULTS if k in config and config[k] is not None})
    s["truncation_psi"], s["truncation_cutoff"] = config.get("truncation_psi"), config.get("truncation_cutoff")
    s["mapping_fmaps"] = int(config.get("mapping_fmaps") or 512)
    s["dlatent_size"] = int(s["dlatent_size"] or s["mapping_fmaps"])
    for key in D_OWN:
        own = config.get(f"d_{key}")
        s[f"d_{key}"] = own if own is not None else config.get(key, s.get(key))
    return s


def _resolutions(resolution):
    return [2 ** r for r in range(2, int(round(math.log2(resolution))) + 1)]


def real_pyramid(images, num_scales):
    """Lowest-first list of 2x2 box-pooled copies of `images` (the top scale itself last)."""
    scales = [images]
    for _ in range(num_scales - 1):
        scales.append(layers.downscale2d(scales[-1], 2))
    return scales[::-1]


def upsample_scales(scales, size):
    """Every scale nearest-upsampled to size x size (numpy)."""
    out = []
    for s in scales:
        s = np.asarray(s)
        f = size // s.shape[1]
        out.append(np.repeat(np.repeat(s, f, axis=1), f, axis=2) if f > 1 else s)
    return out


# --- layers ------------------------------------------------------------------------------------

def _conv(filters, kernel, gain=SQRT2, use_bias=True, use_eql=True, padding="same", name=None, **dtype):
    if use_eql:
        return layers.EqualizedConv2D(filters, kernel, gain=gain, use_bias=use_bias, padding=padding,
                                      name=name, **dtype)
    init = keras.initializers.VarianceScaling(gain ** 2, "fan_in", "untruncated_normal")
    return keras.layers.Conv2D(filters, kernel, padding=padding, use_bias=use_bias, kernel_initializer=init,
                               name=name, **dtype)


def _dense(units, gain=SQRT2, use_bias=True, use_eql=True, name=None):
    if use_eql:
        return layers.EqualizedDense(units, gain=gain, use_bias=use_bias, name=name)
    init = keras.initializers.VarianceScaling(gain ** 2, "fan_in", "untruncated_normal")
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=init, name=name)


class Combine(keras.layers.Layer):
    """MSG's combine step of image o (the scale's RGB) with the activations a (paper Eqs. 11-13).

    simple: [o; a]; lin_cat: [r'(o); a] with r' a 1x1 conv with bias to `rgb_channels`;
    cat_lin: r'([o; a]) with r' a 1x1 conv to `channels`, gain sqrt(2), no bias, no activation.
    """

    def __init__(self, mode, channels, rgb_channels=None, use_eql=True, **kwargs):
        super().__init__(**kwargs)
        if mode not in COMBINES:
            raise UserError(f"unknown --combine {mode!r}; choose one of {', '.join(COMBINES)}")
        self.mode, self.channels, self.rgb_channels = mode, channels, rgb_channels
        self.conv = None
        if mode == "cat_lin":
            self.conv = _conv(channels, 1, use_bias=False, use_eql=use_eql, name="combine")
        elif mode == "lin_cat":
            self.conv = _conv(rgb_channels or channels // 2, 1, use_eql=use_eql, name="from_rgb")

    def build_for(self, size, image_channels, x_channels):
        """Builds the weights for [N, size, size, *] inputs; returns the output channel count."""
        if self.mode == "simple":
            return image_channels + x_channels
        if self.mode == "lin_cat":
            self.conv.build((None, size, size, image_channels))
            return self.conv.filters + x_channels
        self.conv.build((None, size, size, image_channels + x_channels))
        return self.conv.filters

    def call(self, image, x):
        image = tf.cast(image, x.dtype)
        if self.mode == "simple":
            return tf.concat([image, x], axis=-1)
        if self.mode == "lin_cat":
            return tf.concat([self.conv(image), x], axis=-1)
        return self.conv(tf.concat([image, x], axis=-1))


class Epilogue(keras.layers.Layer):
    """StyleGAN's layer epilogue: + noise, + bias, activation, pixel norm, instance norm, style
    modulation (each optional step as the original's G_synthesis switches it)."""

    def __init__(self, channels, settings=None, **kwargs):
        super().__init__(**kwargs)
        s = settings or STYLE_DEFAULTS
        self.channels = channels
        self.noise = layers.NoiseInput(name="noise") if s["use_noise"] else None
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")
        self.style = layers.StyleModulation(channels, use_wscale=s["use_eql"], name="style") \
            if s["use_styles"] else None
        self.act = activation(s["nonlinearity"])
        self.use_pixel_norm, self.use_instance_norm = s["use_pixel_norm"], s["use_instance_norm"]

    def call(self, x, dlatent, noise):
        if self.noise is not None:
            x = self.noise(x, noise=noise)
        x = self.act(x + tf.cast(self.bias, x.dtype))
        if self.use_pixel_norm:
            x = layers.pixel_norm(x)
        if self.use_instance_norm:
            x = layers.instance_norm(x)
        return self.style(x, dlatent) if self.style is not None else x


# --- MSG-StyleGAN --------------------------------------------------------------------------------

class StyleGenerator(keras.Model):
    """z -> [4x4, 8x8, ..., RxR] images (NHWC, float32), StyleGAN's mapping + synthesis.

    `settings` holds the original's G_style keywords (`style_settings`); w_dim is the dlatent size.
    """

    def __init__(self, resolution, channels, z_dim, nf, w_dim=512, mapping_layers=8, mapping_lrmul=0.01,
                 settings=None, **kwargs):
        super().__init__(**kwargs)
        s = dict(STYLE_DEFAULTS, **(settings or {}))
        self.settings = s
        self.resolution, self.channels, self.z_dim, self.w_dim = resolution, channels, z_dim, w_dim
        self.resolutions = _resolutions(resolution)
        self.num_layers = 2 * len(self.resolutions)
        # Without styles the synthesis reads one dlatent (its input Dense, if any), as G_synthesis.
        self.num_styles = self.num_layers if s["use_styles"] else 1
        eql = dict(use_wscale=s["use_eql"])
        widths = [s["mapping_fmaps"] or w_dim] * (mapping_layers - 1) + [w_dim] if mapping_layers else []
        self.mapping = [layers.EqualizedDense(width, lrmul=mapping_lrmul, name=f"mapping{i}", **eql)
                        for i, width in enumerate(widths)]
        self.mapping_act = activation(s["mapping_nonlinearity"])
        self.width4 = nf(1)
        self.const, self.input_dense = None, None
        if s["const_input_layer"]:
            self.const = self.add_weight(shape=(1, 4, 4, nf(1)), initializer="ones", name="const")
        else:  # G_synthesis's 4x4/Dense: gain sqrt(2)/4 "to match Progressive GAN", bias in the epilogue
            self.input_dense = layers.EqualizedDense(16 * nf(1), gain=SQRT2 / 4, use_bias=False,
                                                     name="input_dense", **eql)
        self.dlatent_avg = self.add_weight(shape=(w_dim,), initializer="zeros", trainable=False,
                                           name="dlatent_avg")
        self.noise_consts = [self.add_weight(shape=(1, 2 ** (2 + i // 2), 2 ** (2 + i // 2), 1),
                                             initializer=keras.initializers.RandomNormal(0.0, 1.0),
                                             trainable=False, name=f"noise{i}")  # N(0, 1) as the original
                             for i in range(self.num_layers if s["use_noise"] else 0)]
        self.blur_taps = s["blur_filter"]
        self.epilogues, self.convs, self.to_rgb = [], [], []
        for k, res in enumerate(self.resolutions):
            stage = int(math.log2(res)) - 1
            self.convs.append([layers.EqualizedConv2D(nf(stage), 3, use_bias=False, name=f"conv{res}_{i}", **eql)
                               for i in ([1] if res == 4 else [0, 1])])
            self.epilogues += [Epilogue(nf(stage), s, name=f"epilogue{2 * k + i}") for i in range(2)]
            self.to_rgb.append(layers.EqualizedConv2D(channels, 1, gain=1.0, name=f"to_rgb{res}",
                                                      **eql, **layers.OUTPUT))

    def build(self, input_shape):
        """Creates every weight from the layer plan (no forward pass: a 1024 px G builds in a second)."""
        fan_in = self.z_dim
        for dense in self.mapping:
            dense.build((None, fan_in))
            fan_in = dense.units
        if self.input_dense is not None:
            self.input_dense.build((None, self.w_dim))
        x_channels = self.width4
        self._build_epilogue(self.epilogues[0], 4, x_channels)  # the constant's
        for k, res in enumerate(self.resolutions):
            for i, conv in enumerate(self.convs[k]):  # 4x4: one conv (epilogue 1); then two per block
                conv.build((None, res, res, x_channels))
                x_channels = conv.filters
                self._build_epilogue(self.epilogues[2 * k + i + (res == 4)], res, x_channels)
            self.to_rgb[k].build((None, res, res, x_channels))
        self.built = True

    def _build_epilogue(self, epilogue, res, channels):
        if epilogue.noise is not None:
            epilogue.noise.build((None, res, res, channels))
        if epilogue.style is not None:
            epilogue.style.affine.build((None, self.w_dim))

    def map(self, z):
        """z -> dlatent w [N, w_dim]."""
        w = tf.cast(z, self.compute_dtype)
        if self.settings["normalize_latents"]:
            w = layers.pixel_norm(w)
        for dense in self.mapping:
            w = self.mapping_act(dense(w))
        return w

    def broadcast(self, w):
        return tf.tile(w[:, None, :], [1, self.num_styles, 1])

    def truncate(self, dlatents, psi, cutoff=8):
        """w_i <- avg + psi (w_i - avg) for layers i < cutoff (the truncation trick)."""
        avg = tf.cast(self.dlatent_avg, dlatents.dtype)
        layer = tf.range(self.num_styles)[None, :, None]
        return tf.where(layer < cutoff, avg + psi * (dlatents - avg), dlatents)

    def _noise(self, i, batch, noise_seed, randomize_noise, dtype):
        if not self.noise_consts:
            return None
        if not randomize_noise:
            return tf.cast(tf.tile(self.noise_consts[i], [batch, 1, 1, 1]), dtype)
        size = self.noise_consts[i].shape[1]
        if noise_seed is None:
            return tf.random.normal([batch, size, size, 1], dtype=dtype)
        seed = tf.cast(noise_seed, tf.int64) + tf.constant([0, 1], tf.int64) * i
        return tf.cast(tf.random.stateless_normal([batch, size, size, 1], seed), dtype)

    def _blur(self, x):
        return layers.blur2d(x, self.blur_taps) if self.blur_taps else x

    def synthesis(self, dlatents, noise_seed=None, randomize_noise=True):
        batch = tf.shape(dlatents)[0]
        dtype = self.compute_dtype
        dlatents = tf.cast(dlatents, dtype)

        def epilogue(i, x):
            style = dlatents[:, i] if self.num_styles > 1 else dlatents[:, 0]
            return self.epilogues[i](x, style, self._noise(i, batch, noise_seed, randomize_noise, dtype))

        outputs = []
        for k, res in enumerate(self.resolutions):
            if res == 4:
                if self.const is not None:
                    x = tf.tile(tf.cast(self.const, dtype), [batch, 1, 1, 1])
                else:
                    x = tf.reshape(self.input_dense(dlatents[:, 0]), [-1, 4, 4, self.width4])
                x = epilogue(0, x)
                x = epilogue(1, self.convs[0][0](x))
            else:
                x = self._blur(self.convs[k][0](layers.upscale2d(x, 2)))
                x = epilogue(2 * k, x)
                x = epilogue(2 * k + 1, self.convs[k][1](x))
            outputs.append(tf.cast(self.to_rgb[k](x), tf.float32))
        return outputs

    def call(self, z, truncation_psi=None, truncation_cutoff=8, noise_seed=None, randomize_noise=True,
             mix_z=None, mix_cutoff=None, return_dlatents=False):
        w = self.map(z)
        dlatents = self.broadcast(w)
        if mix_z is not None:  # style mixing: layers >= mix_cutoff take the second latent's style
            layer = tf.range(self.num_styles)[None, :, None]
            dlatents = tf.where(layer < mix_cutoff, dlatents, self.broadcast(self.map(mix_z)))
        if truncation_psi is not None:
            dlatents = self.truncate(dlatents, truncation_psi, truncation_cutoff)
        images = self.synthesis(dlatents, noise_seed, randomize_noise)
        return (images, w) if return_dlatents else images


class StyleDiscriminator(keras.Model):
    """[4x4 ... RxR] -> logit: StyleGAN's D_basic with MSG's combine and mbstd in every block.

    `settings` holds D_basic's keywords under our names (`style_settings`: d_nonlinearity, d_use_eql,
    d_blur_filter, mbstd_num_features)."""

    def __init__(self, resolution, channels, nf, combine="cat_lin", mbstd_group_size=4, settings=None,
                 **kwargs):
        super().__init__(**kwargs)
        s = dict(STYLE_DEFAULTS, **(settings or {}))
        eql = dict(use_wscale=s["d_use_eql"] if s["d_use_eql"] is not None else s["use_eql"])
        self.act = activation(s["d_nonlinearity"] or s["nonlinearity"])
        self.blur_taps = s["d_blur_filter"] if s["d_blur_filter"] is not None else s["blur_filter"]
        self.resolution, self.resolutions, self.channels = resolution, _resolutions(resolution), channels
        top = int(math.log2(resolution))
        self.from_rgb = layers.EqualizedConv2D(nf(top - 1), 1, name=f"from_rgb{resolution}", **eql)
        # As D_basic: a group size of 0 or 1 means no minibatch-stddev layer (and no extra channel).
        self.mbstd = layers.MinibatchStddev(group_size=mbstd_group_size, num_new_features=s["mbstd_num_features"],
                                            epsilon=1e-8) if mbstd_group_size > 1 else None
        self.combines, self.blocks = [], []
        for res in self.resolutions[::-1]:  # top first
            stage = int(math.log2(res)) - 1
            self.combines.append(Combine(combine, nf(stage), use_eql=eql["use_wscale"], name=f"combine{res}")
                                 if res < resolution else None)
            if res > 4:
                self.blocks.append([layers.EqualizedConv2D(nf(stage), 3, name=f"conv{res}_0", **eql),
                                    layers.EqualizedConv2D(nf(stage - 1), 3, name=f"conv{res}_1", **eql)])
        self.conv4 = layers.EqualizedConv2D(nf(1), 3, name="conv4", **eql)
        self.dense0 = layers.EqualizedDense(nf(0), name="dense4", **eql)
        self.out = layers.EqualizedDense(1, gain=1.0, name="out", **eql, **layers.OUTPUT)

    def build(self, input_shape):
        """Creates every weight from the layer plan (no forward pass)."""
        extra = self.mbstd.num_new_features if self.mbstd is not None else 0
        self.from_rgb.build((None, self.resolution, self.resolution, self.channels))
        x_channels = self.from_rgb.filters
        for k, res in enumerate(self.resolutions[::-1]):
            if k > 0:
                x_channels = self.combines[k].build_for(res, self.channels, x_channels)
            if k < len(self.blocks):
                for i, conv in enumerate(self.blocks[k]):
                    conv.build((None, res, res, x_channels + (extra if i == 0 else 0)))
                    x_channels = conv.filters
        self.conv4.build((None, 4, 4, x_channels + extra))
        self.dense0.build((None, 4, 4, self.conv4.filters))
        self.out.build((None, self.dense0.units))
        self.built = True

    def call(self, scales):
        scales = list(scales)[::-1]  # top first
        dtype = self.compute_dtype
        act = self.act
        x = act(self.from_rgb(tf.cast(scales[0], dtype)))
        for k, image in enumerate(scales):
            if k > 0:
                x = self.combines[k](image, x)
            if self.mbstd is not None:
                x = self.mbstd(x)
            if k < len(self.blocks):
                conv0, conv1 = self.blocks[k]
                x = act(conv0(x))
                blurred = layers.blur2d(x, self.blur_taps) if self.blur_taps else x
                x = act(layers.downscale2d(conv1(blurred), 2))
        x = act(self.conv4(x))
        x = act(self.dense0(x))
        return tf.cast(self.out(x)[:, 0], tf.float32)


# --- MSG-ProGAN (BMSG-GAN) -------------------------------------------------------------------

class ProGenerator(keras.Model):
    """z -> [4x4 ... RxR]: BMSG-GAN's ProGAN-style generator with toRGB at every scale."""

    def __init__(self, resolution, channels, z_dim, nf, use_eql=True, **kwargs):
        super().__init__(**kwargs)
        self.resolution, self.resolutions, self.z_dim = resolution, _resolutions(resolution), z_dim
        self.width4 = nf(1)
        # ConvTranspose 4x4 from a 1x1 map == a dense layer to 4*4*C with fan_in = z_dim.
        self.project = _dense(16 * self.width4, use_bias=False, use_eql=use_eql, name="project")
        self.bias4 = self.add_weight(shape=(self.width4,), initializer="zeros", name="bias4")
        self.convs, self.to_rgb = [], []
        for res in self.resolutions:
            width = nf(int(math.log2(res)) - 1)
            self.convs.append([_conv(width, 3, use_eql=use_eql, name=f"conv{res}_{i}")
                               for i in ([1] if res == 4 else [0, 1])])
            self.to_rgb.append(_conv(channels, 1, use_eql=use_eql, name=f"to_rgb{res}", **layers.OUTPUT))

    def build(self, input_shape):
        self.built = True

    def call(self, z, **unused):
        x = layers.pixel_norm(tf.cast(z, self.compute_dtype))  # == BMSG's z / |z| * sqrt(latent size)
        x = tf.reshape(self.project(x), [-1, 4, 4, self.width4]) + tf.cast(self.bias4, x.dtype)
        x = layers.lrelu(x)
        outputs = []
        for k, res in enumerate(self.resolutions):
            if res > 4:
                x = layers.upscale2d(x, 2)
            for conv in self.convs[k]:
                x = layers.pixel_norm(layers.lrelu(conv(x)))
            outputs.append(tf.cast(self.to_rgb[k](x), tf.float32))
        return outputs


class ProDiscriminator(keras.Model):
    """[4x4 ... RxR] -> logit: BMSG-GAN's discriminator (mbstd in the final block only)."""

    def __init__(self, resolution, channels, nf, combine="lin_cat", use_eql=True, **kwargs):
        super().__init__(**kwargs)
        self.resolutions = _resolutions(resolution)
        width = lambda res: nf(int(math.log2(res)) - 1)  # noqa: E731  block input width
        self.from_rgb = _conv(width(resolution), 1, use_eql=use_eql, name=f"from_rgb{resolution}")
        self.combines, self.blocks = [], []
        for res in self.resolutions[::-1]:
            self.combines.append(Combine(combine, width(res), width(res) // 2, use_eql=use_eql,
                                         name=f"combine{res}") if res < resolution else None)
            if res > 4:  # conv in->in, conv in->out with out = half the next block's input width
                self.blocks.append([_conv(width(res), 3, use_eql=use_eql, name=f"conv{res}_0"),
                                    _conv(width(res // 2) // 2, 3, use_eql=use_eql, name=f"conv{res}_1")])
        self.mbstd = layers.MinibatchStddev(group_size=None, epsilon=1e-8)
        self.conv4 = _conv(width(4), 3, use_eql=use_eql, name="conv4_0")
        self.conv4_valid = _conv(width(4), 4, use_eql=use_eql, padding="valid", name="conv4_1")
        self.out = _conv(1, 1, use_eql=use_eql, name="out", **layers.OUTPUT)

    def build(self, input_shape):
        self.built = True

    def call(self, scales):
        scales = list(scales)[::-1]
        dtype = self.compute_dtype
        x = self.from_rgb(tf.cast(scales[0], dtype))
        for k, image in enumerate(scales):
            if k > 0:
                x = self.combines[k](image, x)
            if k < len(self.blocks):
                for conv in self.blocks[k]:
                    x = layers.lrelu(conv(x))
                x = layers.downscale2d(x, 2)
        x = layers.lrelu(self.conv4(self.mbstd(x)))
        x = layers.lrelu(self.conv4_valid(x))
        return tf.cast(tf.reshape(self.out(x), [-1]), tf.float32)


# --- snapshot interface ----------------------------------------------------------------------

def make_config(model, resolution, channels, z_dim=512, fmap_base=None, fmap_max=None, combine=None,
                mapping_layers=8, mapping_fmaps=None, mapping_lrmul=0.01, mbstd_group_size=4, use_eql=True,
                **style):
    """The architecture config. `style`: msg_stylegan's other keywords (STYLE_DEFAULTS; None = default)."""
    if model not in KINDS:
        raise UserError(f"unknown MSG model {model!r}; choose one of {', '.join(KINDS)}")
    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"MSG models need a power-of-two resolution >= 8, not {resolution}")
    fmap_max = int(fmap_max or 512)
    fmap_base = int(fmap_base or (8192 if model == "msg_stylegan" else 16 * fmap_max))
    combine = combine if combine not in (None, "auto") else ("cat_lin" if model == "msg_stylegan" else "lin_cat")
    config = dict(model=model, resolution=int(resolution), channels=int(channels), z_dim=int(z_dim),
                  fmap_base=fmap_base, fmap_max=fmap_max, combine=combine, mapping_layers=int(mapping_layers),
                  mapping_fmaps=int(mapping_fmaps or 512), mapping_lrmul=float(mapping_lrmul),
                  mbstd_group_size=int(mbstd_group_size), use_eql=bool(use_eql))
    unknown = sorted(set(style) - set(STYLE_KEYWORDS))
    if unknown:
        raise TypeError(f"make_config: unknown keywords {unknown}")
    if model == "msg_stylegan":
        config.update(_style_config(config, style))
    return config


def _style_config(config, style):
    """The checked msg_stylegan keywords, every one explicit (D's copies resolved to values)."""
    s = style_settings(dict(config, **{k: v for k, v in style.items() if v is not None}))
    for key in ("nonlinearity", "mapping_nonlinearity", "d_nonlinearity"):
        if s[key] not in NONLINEARITIES:
            raise UserError(f"--{key} {s[key]!r}: choose one of {', '.join(NONLINEARITIES)}")
    for key in ("fused_scale", "d_fused_scale"):
        s[key] = _fused_scale(s[key], key)
    for key in ("blur_filter", "d_blur_filter"):
        s[key] = parse_blur_filter(s[key], f"--{key}")
    for key in ("dlatent_size", "mbstd_num_features", "d_fmap_base", "d_fmap_max"):
        s[key] = int(s[key])
    for key in ("fmap_decay", "d_fmap_decay", "dlatent_avg_beta"):
        s[key] = float(s[key])
    if s["mbstd_num_features"] < 1:
        raise UserError(f"--mbstd_num_features must be >= 1, not {s['mbstd_num_features']}")
    if s["truncation_psi"] is not None:
        s["truncation_psi"] = float(s["truncation_psi"])
    if s["truncation_cutoff"] is not None:
        s["truncation_cutoff"] = int(s["truncation_cutoff"])
    return {k: s[k] for k in STYLE_KEYWORDS}


def _fused_scale(value, key):
    """'auto' | True | False (also 'true'/'false' from a flag)."""
    value = {"true": True, "false": False}.get(str(value).lower(), value)
    if value not in FUSED_SCALES:
        raise UserError(f"--{key} {value!r}: choose auto, true or false")
    return value


def build_networks(config):
    """G, D and Gs (Gs a copy of G), built and ready to load weights into."""
    res, ch = config["resolution"], config["channels"]
    if config["model"] == "msg_stylegan":
        s = style_settings(config)
        nf = nf_rule(config["fmap_base"], config["fmap_max"], s["fmap_decay"])
        d_nf = nf_rule(s["d_fmap_base"], s["d_fmap_max"], s["d_fmap_decay"])
        make_g = lambda name: StyleGenerator(  # noqa: E731
            res, ch, config["z_dim"], nf, s["dlatent_size"], config["mapping_layers"],
            config["mapping_lrmul"], settings=s, name=name)
        d = StyleDiscriminator(res, ch, d_nf, config["combine"], config["mbstd_group_size"], settings=s, name="D")
    else:
        nf = nf_rule(config["fmap_base"], config["fmap_max"])
        make_g = lambda name: ProGenerator(res, ch, config["z_dim"], nf, config["use_eql"], name=name)  # noqa
        d = ProDiscriminator(res, ch, nf, config["combine"], config["use_eql"], name="D")
    nets = {"G": make_g("G"), "D": d, "Gs": make_g("Gs")}
    if config["model"] == "msg_stylegan":  # the layer plan builds every weight without running
        for net in nets.values():
            net.build((None, config["z_dim"]))
    else:
        z = tf.zeros([4, config["z_dim"]])
        for g in (nets["G"], nets["Gs"]):
            images = g(z)
        d(images)
    ema_lib.copy_weights(nets["Gs"].weights, nets["G"].weights)
    return nets


def latent_dim(config):
    return config["z_dim"]


def generate(networks, config, latents, all_scales=False, truncation_psi=None, truncation_cutoff=None,
             randomize_noise=True, noise_seed=None, batch_size=64, network="Gs", **unused):
    """Images from Gs: the top scale [N, R, R, C], or with all_scales=True the list lowest first.

    Truncation (MSG-StyleGAN): w_i <- avg + psi (w_i - avg) for the first `truncation_cutoff` layers
    (default: the model's --truncation_cutoff, else 8). Only when `truncation_psi` is given: a model's
    own truncation_psi is recorded, not applied (published metrics are without truncation).
    `randomize_noise=False` uses the stored noise inputs; `noise_seed` (int) makes random noise repeatable.
    """
    g = networks[network]
    kw = {}
    if config["model"] == "msg_stylegan":
        if truncation_cutoff is None:
            truncation_cutoff = config.get("truncation_cutoff") or 8
        kw = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                  randomize_noise=randomize_noise)
    chunks = []
    for k, i in enumerate(range(0, len(latents), batch_size)):
        if noise_seed is not None and config["model"] == "msg_stylegan":
            kw["noise_seed"] = tf.constant([int(noise_seed), 1000003 * k], tf.int64)
        out = g(tf.convert_to_tensor(latents[i:i + batch_size], tf.float32), **kw)
        chunks.append([o.numpy() for o in out])
    scales = [np.concatenate([c[s] for c in chunks]) for s in range(len(chunks[0]))]
    return scales if all_scales else scales[-1]


def generator_tensor(networks, config, z, truncation_psi=None, randomize_noise=False, **unused):
    """Differentiable Gs(z): every scale, lowest first (D reads the whole pyramid), for DGflow refinement.
    MSG-StyleGAN's noise defaults to the stored constants, so that the flow sees one deterministic G."""
    kw = {}
    if config["model"] == "msg_stylegan":
        kw = dict(truncation_psi=truncation_psi, randomize_noise=randomize_noise)
    return list(networks["Gs"](z, **kw))


def discriminator_logit(networks, config, images, **unused):
    """D's logit for a list of scales, or for top-resolution images (their pyramid is pooled here)."""
    if not isinstance(images, (list, tuple)):
        images = real_pyramid(tf.convert_to_tensor(images, tf.float32), len(_resolutions(config["resolution"])))
    group = config.get("mbstd_group_size", 0) if config["model"] == "msg_stylegan" else 0
    d = networks["D"]

    def in_two_parts(cut):  # minibatch-stddev groups must divide the batch: the remainder is its own group
        return tf.concat([d([s[:cut] for s in images]), d([s[cut:] for s in images])], 0)

    n = images[0].shape[0]
    if n is None:  # a traced function of any batch size (the exports' discriminate signature)
        n = tf.shape(images[0])[0]
        cut = n - n % group if group > 1 else n
        return tf.cond((cut == n) | (n <= group), lambda: d(images), lambda: in_two_parts(cut))
    cut = n - n % group if group and n > group else n
    return d(images) if cut == n else in_two_parts(cut)


# --- losses with lists of scales ---------------------------------------------------------------

def r1_per_sample(discriminator, reals, num_scales, backflow=True):
    """MSG's R1: per sample, the mean over scales of ||d sum D(pyramid) / d x_s||^2.

    With backflow (the original's tf.gradients semantics) the pyramid is pooled from the watched
    top-level `reals` inside the tape, so each scale's gradient is a total derivative that includes
    what flows back from the coarser scales through the pooling; without it every scale is its own leaf.
    Returns (penalty [B], real_logits [B]) and is differentiable (for the D update).
    """
    with tf.GradientTape() as tape:
        if backflow:
            tape.watch(reals)
            pyramid = real_pyramid(reals, num_scales)
        else:
            pyramid = [tf.identity(s) for s in real_pyramid(tf.stop_gradient(reals), num_scales)]
            tape.watch(pyramid)
        logits = discriminator(pyramid)
        total = tf.reduce_sum(logits)
    grads = tape.gradient(total, pyramid)
    penalty = tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32)), axis=[1, 2, 3]) for g in grads])
    return penalty / float(num_scales), logits


def loss_functions(name):
    """(d_loss, g_loss, needs the real logits in the G step) for an MSG loss name."""
    name = "logistic" if name == "standard-gan" else name
    d_loss, g_loss, _ = losses.get_gan_loss(name)
    return d_loss, g_loss, name == "relativistic-hinge"


# --- training --------------------------------------------------------------------------------

def _flag_value(value):
    """A config value as typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return value


def _option(options, name, default=None):
    value = getattr(options, name, None)
    return default if value is None else value


class Trainer:
    """One iteration, as the originals (docs/msg_gan_iteration.md compares them line by line):

    MSG-StyleGAN: D step on a fresh batch and fresh z (dlatent_avg update), Gs update, G step on fresh z
    (dlatent_avg update). MSG-ProGAN: D step, then G step on the same z and reals, then the EMA update.
    """

    DEFAULTS = dict(total_nimg=25_000_000, tick_kimg=10, snapshot_kimg=100)

    inspect_data = staticmethod(data_lib.dataset_from_options)

    @staticmethod
    def run_name_suffix(options):
        return options.model

    @staticmethod
    def identity(options):
        keys = ("combine", "loss_function", "z_dim", "fmap_base", "fmap_max", "depth", "mapping_layers",
                "mapping_fmaps", "use_eql") + STYLE_KEYWORDS
        return {k: getattr(options, k, None) for k in keys}

    def __init__(self, options, strategy, info):
        self.options, self.strategy, self.info = options, strategy, info
        self.model = options.model
        self.stylegan = self.model == "msg_stylegan"
        self.dataset_path = info.path
        resolution = options.resolution or info.resolution
        if options.depth is not None:
            depth_res = 2 ** (options.depth + 1)
            if options.resolution and options.resolution != depth_res:
                raise UserError(f"--depth {options.depth} means {depth_res} px but --resolution is "
                                f"{options.resolution}; give only one")
            resolution = depth_res
        if resolution not in info.levels:
            raise UserError(f"dataset {info.path} has resolutions {min(info.levels)}..{max(info.levels)}; "
                            f"{resolution} px is not available")
        style = {k: getattr(options, k, None) for k in STYLE_KEYWORDS}
        self.arch = make_config(self.model, resolution, info.channels, options.z_dim or 512, options.fmap_base,
                                options.fmap_max, options.combine, options.mapping_layers,
                                options.mapping_fmaps, options.mapping_lrmul, options.mbstd_group_size,
                                options.use_eql, **style)
        if self.stylegan and options.style_mixing_prob > 0 and not self.arch["use_styles"]:
            raise UserError("--style_mixing_prob needs styles; it cannot be used with --use_styles=false")
        self.resolution, self.num_scales = resolution, len(_resolutions(resolution))
        self.replicas = strategy.num_replicas_in_sync
        loss_name = options.loss_function if options.loss_function != "auto" else \
            ("logistic" if self.stylegan else "relativistic-hinge")
        self.loss_name = loss_name
        self.d_loss_fn, self.g_loss_fn, self.g_needs_reals = loss_functions(loss_name)
        self.r1_gamma = _option(options, "r1_gamma", 10.0 if loss_name in ("logistic", "standard-gan") else 0.0)
        self.mirror = _option(options, "mirror_augment", _option(options, "flip_augment", not self.stylegan))
        self.global_batch = self._batch_size()
        if self.stylegan and options.mbstd_group_size > 1:
            group = min(options.mbstd_group_size, self.global_batch // self.replicas)
            if (self.global_batch // self.replicas) % group:
                raise UserError(f"the per-replica batch {self.global_batch // self.replicas} is not divisible "
                                f"by the minibatch-stddev group {group}; change --batch_size or "
                                "--mbstd_group_size")
        # EMA: a half-life (StyleGAN) after every D step, or a decay (BMSG-GAN) after every G step.
        half_life = _option(options, "G_smoothing_kimg", 10.0 if self.stylegan else None)
        if not options.use_ema:
            self.ema_beta = 0.0
        elif half_life is not None:
            self.ema_beta = ema_lib.beta_from_half_life(self.global_batch, half_life)
        else:
            self.ema_beta = _option(options, "ema_decay", 0.999)
        self.ema_after_g = not self.stylegan and options.G_smoothing_kimg is None
        if not self.stylegan:
            epoch_nimg = max(info.num_images // self.global_batch, 1) * self.global_batch
            self.DEFAULTS = dict(total_nimg=3 * epoch_nimg, tick_kimg=10, snapshot_kimg=epoch_nimg / 1000)
        with strategy.scope():
            nets = build_networks(self.arch)
            self.G, self.D, self.Gs = nets["G"], nets["D"], nets["Gs"]
            lr = _option(options, "learning_rate", 0.003)
            betas = dict(beta_1=options.adam_beta1, beta_2=options.adam_beta2, epsilon=1e-8)
            # BMSG-GAN is PyTorch: its Adam adds epsilon to the bias-corrected sqrt(v_hat).
            betas["torch_epsilon"] = not self.stylegan
            self.opt_g = make_adam(_option(options, "g_lr", lr), **betas)
            self.opt_d = make_adam(_option(options, "d_lr", lr), **betas)
            self.opt_g.build(self.G.trainable_variables)
            self.opt_d.build(self.D.trainable_variables)
            self.batches_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches_seen")
        self.rng = tf.random.Generator.from_seed(options.seed)
        self.grid_latents = np.random.RandomState(1234).randn(1024, self.arch["z_dim"]).astype(np.float32)
        self._step, self._iterator_obj = None, None
        self.trace_counts = 0

    # -- bookkeeping ---------------------------------------------------------------------------
    def _batch_size(self):
        batch = self.options.batch_size
        if batch is None:
            batch = STYLEGAN_BATCH_BY_REPLICAS.get(self.replicas, 4 * self.replicas) if self.stylegan else 20
        if batch % self.replicas:
            raise UserError(f"batch size {batch} is not divisible by the {self.replicas} replicas; "
                            "set --batch_size")
        return batch

    def checkpoint_items(self):
        return dict(G=self.G, D=self.D, Gs=self.Gs, opt_g=self.opt_g, opt_d=self.opt_d, rng=self.rng,
                    batches_seen=self.batches_seen)

    def check_source_config(self, source, path):
        """--resume_from: the source's architecture must be this run's (an activation or a norm shows in no
        weight shape); one line with the flags that rebuild it."""
        keys = ("z_dim", "fmap_base", "fmap_max", "mapping_layers", "mapping_fmaps", "mapping_lrmul",
                "mbstd_group_size", "use_eql", "combine") + STYLE_KEYWORDS
        call_settings = ("truncation_psi", "truncation_cutoff", "dlatent_avg_beta")  # not architecture
        differ = [k for k in keys if k not in call_settings and k in source and source[k] != self.arch.get(k)]
        if differ:
            flags = " ".join(f"--{k}={_flag_value(source[k])}" for k in differ)
            raise UserError(f"--resume_from {path} was built with other settings than this run; add {flags}")

    def after_restore(self, cur_nimg):
        self._iterator_obj = None  # rebuilt lazily, skipping the batches already consumed
        if self.options.restart_adam_on_resume:  # the originals saved no optimizer state
            ema_lib.reset_optimizer(self.opt_g)
            ema_lib.reset_optimizer(self.opt_d)

    def config(self):
        return dict(self.arch)

    def networks(self):
        return {"G": self.G, "D": self.D, "Gs": self.Gs}

    def progress_scalars(self, cur_nimg):
        return {"resolution": self.resolution, "minibatch": self.global_batch}

    def grids(self, count):
        """Per scale `<R>x<R>/fakes` (nearest-upsampled to R) and `fakes`, every scale side by side."""
        scales = generate(self.networks(), self.config(), self.grid_latents[:count], all_scales=True,
                          randomize_noise=False)
        ups = upsample_scales(scales, self.resolution)
        out = {f"{s.shape[1]}x{s.shape[1]}/fakes": u for s, u in zip(scales, ups)}
        out["fakes"] = side_by_side(ups, gap=1, gap_value=0.0)  # 1 px mid-grey between scales
        return out

    # -- data ------------------------------------------------------------------------------------
    def _iterator(self):
        if self._iterator_obj is None:
            dataset = data_lib.load_dataset(self.dataset_path, batch_size=self.global_batch,
                                            resolution=self.resolution, shuffle=True, repeat=True,
                                            seed=self.options.seed)
            dataset = dataset.skip(int(self.batches_seen.numpy()))
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
            self._iterator_obj = iter(self.strategy.experimental_distribute_dataset(dataset))
        return self._iterator_obj

    def feed_inputs(self, batches, rng):
        """Test hook to rerun another implementation's iterations: the next iterations read `batches`
        (dicts with "image", NHWC in [-1, 1]) instead of the dataset, and draw latents, flips and seeds
        from `rng` (anything with tf.random.Generator's normal/uniform/make_seeds) instead of --seed."""
        self._iterator_obj, self.rng, self._step = iter(batches), rng, None

    # -- per-replica pieces ------------------------------------------------------------------------
    def _replica_seed(self, seed):
        ctx = tf.distribute.get_replica_context()
        return seed + tf.constant([1, 0], tf.int64) * tf.cast(ctx.replica_id_in_sync_group, tf.int64) * 7919

    def _prepare_reals(self, images, flip):
        images = tf.ensure_shape(tf.cast(images, tf.float32),
                                 [None, self.resolution, self.resolution, self.arch["channels"]])
        if self.mirror:
            flip = replica_slice(flip)[:, None, None, None]
            images = tf.where(flip < 0.5, images, images[:, :, ::-1, :])
        return images

    def _fakes(self, z, noise_seed, mix_z=None, mix_cutoff=None, return_dlatents=False):
        if not self.stylegan:
            out = self.G(replica_slice(z))
            return (out, None) if return_dlatents else out
        kw = dict(noise_seed=self._replica_seed(noise_seed), return_dlatents=return_dlatents)
        if mix_z is not None:
            kw.update(mix_z=replica_slice(mix_z), mix_cutoff=mix_cutoff)
        return self.G(replica_slice(z), **kw)

    def _d_grads(self, images, flip, z, noise_seed, mix_z, mix_cutoff, gp_u):
        batch = float(self.global_batch)
        reals = self._prepare_reals(images, flip)
        fakes, w = self._fakes(z, noise_seed, mix_z, mix_cutoff, return_dlatents=True)
        fakes = [tf.stop_gradient(f) for f in fakes]
        with tf.GradientTape() as tape:
            if self.r1_gamma:
                r1, real_logits = r1_per_sample(self.D, reals, self.num_scales)
            else:
                r1, real_logits = tf.zeros([tf.shape(reals)[0]]), self.D(real_pyramid(reals, self.num_scales))
            fake_logits = self.D(fakes)
            adv = self.d_loss_fn(real_logits, fake_logits)
            loss = adv + 0.5 * self.r1_gamma * r1
            gp = tf.zeros_like(adv)
            if self.loss_name == "wgan-gp":
                gp = losses.gradient_penalty(self.D, real_pyramid(reals, self.num_scales), fakes,
                                             replica_slice(gp_u))
                loss += self.options.wgan_lambda * gp + self.options.wgan_epsilon * tf.square(real_logits)
            loss = tf.reduce_sum(loss) / batch
        grads = tape.gradient(scale_loss(self.opt_d, loss), self.D.trainable_variables)
        stats = {"d_loss": loss, "scores_real": tf.reduce_sum(real_logits) / batch,
                 "scores_fake": tf.reduce_sum(fake_logits) / batch, "r1": tf.reduce_sum(r1) / batch,
                 "gp": tf.reduce_sum(gp) / batch}
        return grads, stats, self._w_sum(w)

    def _g_grads(self, images, flip, z, noise_seed, mix_z, mix_cutoff):
        batch = float(self.global_batch)
        with tf.GradientTape() as tape:
            fakes, w = self._fakes(z, noise_seed, mix_z, mix_cutoff, return_dlatents=True)
            fake_logits = self.D(fakes)
            real_logits = None
            if self.g_needs_reals:
                real_logits = self.D(real_pyramid(self._prepare_reals(images, flip), self.num_scales))
            loss = tf.reduce_sum(self.g_loss_fn(fake_logits, real_logits)) / batch
        grads = tape.gradient(scale_loss(self.opt_g, loss), self.G.trainable_variables)
        return grads, loss, self._w_sum(w)

    def _w_sum(self, w):
        """This replica's share of the global batch mean of the dlatents w (zeros for MSG-ProGAN)."""
        if w is None:
            return tf.zeros([1])
        return tf.reduce_sum(tf.cast(w, tf.float32), axis=0) / float(self.global_batch)

    # -- the iteration -----------------------------------------------------------------------------
    def _make_step(self):
        opts, strategy = self.options, self.strategy
        batch, z_dim = self.global_batch, self.arch["z_dim"]
        jit = (lambda f: tf.function(f, jit_compile=True)) if opts.jit_compile else (lambda f: f)
        d_grads, g_grads = jit(self._d_grads), jit(self._g_grads)
        mixing = self.stylegan and opts.style_mixing_prob > 0
        num_layers = getattr(self.G, "num_layers", 1)

        def draw():
            z = self.rng.normal([batch, z_dim])
            seed = self.rng.make_seeds(1)[:, 0]
            mix_z, cutoff = None, None
            if mixing:
                mix_z = self.rng.normal([batch, z_dim])
                u = self.rng.uniform([])
                cutoff = tf.where(u < opts.style_mixing_prob,
                                  self.rng.uniform([], 1, num_layers, dtype=tf.int32), num_layers)
            return z, seed, mix_z, cutoff

        def iteration(iterator, ema_beta):
            self.trace_counts += 1  # runs only while tracing
            images = next(iterator)["image"]
            flip = self.rng.uniform([batch])
            gp_u = self.rng.uniform([batch])
            z, seed, mix_z, cutoff = draw()
            grads, stats, w_sum = strategy.run(d_grads, args=(images, flip, z, seed, mix_z, cutoff, gp_u))
            finite_d = apply_if_finite(strategy, self.opt_d, grads, self.D.trainable_variables)
            stats = {k: reduce_sum(strategy, v) for k, v in stats.items()}
            if not self.ema_after_g:  # before the dlatent_avg update, so Gs copies the value from before
                self._update_gs(ema_beta)  # it, as the original's session.run schedules it (runs first)
            if self.stylegan:  # the D loss graph runs G's dlatent_avg update too (original: twice per iteration)
                self._update_dlatent_avg(reduce_sum(strategy, w_sum))
            if self.stylegan:  # fresh latents for the G step (BMSG-GAN reuses the D step's)
                z, seed, mix_z, cutoff = draw()
            grads, g_loss, w_sum = strategy.run(g_grads, args=(images, flip, z, seed, mix_z, cutoff))
            finite_g = apply_if_finite(strategy, self.opt_g, grads, self.G.trainable_variables)
            if self.stylegan:
                self._update_dlatent_avg(reduce_sum(strategy, w_sum))
            if self.ema_after_g:
                self._update_gs(ema_beta)
            return dict(stats, g_loss=reduce_sum(strategy, g_loss), finite=tf.logical_and(finite_d, finite_g))

        return tf.function(iteration)

    def _update_dlatent_avg(self, mean_w):
        """dlatent_avg <- lerp(batch mean of w, dlatent_avg, dlatent_avg_beta), as G_style does in training."""
        avg = self.G.dlatent_avg
        avg.assign(mean_w + self.arch["dlatent_avg_beta"] * (avg - mean_w))

    def _update_gs(self, beta):
        """Gs <- G + beta (Gs - G) on trainable weights; non-trainable ones (dlatent_avg) are copied."""
        ema_lib.ema_update(self.Gs.trainable_weights, self.G.trainable_weights, beta)
        ema_lib.copy_weights(self.Gs.non_trainable_weights, self.G.non_trainable_weights)

    def train_iteration(self, cur_nimg):
        if self._step is None:
            self._step = self._make_step()
        stats = self._step(self._iterator(), tf.constant(self.ema_beta, tf.float32))
        self.batches_seen.assign_add(1)
        stats, finite = host_stats(stats)
        if not self.r1_gamma:
            stats.pop("r1")
        if self.loss_name != "wgan-gp":
            stats.pop("gp")
        return dict(stats, nimg=self.global_batch, nonfinite=not finite)

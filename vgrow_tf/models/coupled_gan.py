"""CoGAN (Liu & Tuzel, NIPS 2016) and SCoGAN: GANs of the joint distribution of two image domains.

Both models train two generators on the *same* z against two unpaired datasets (`--dataset` is domain
A, `--dataset_b` domain B), so that G1(z) and G2(z) are "the same thing" in two domains.

- `--model=cogan`: hard weight sharing. The generators share their first layers (everything but the
  last layer for digits, the last two for faces); the discriminators share everything but their first
  layer (digits) or first two (faces). The shared layers are one set of Keras layer objects used by
  both networks, so their variables are literally the same objects. Cross-entropy over the
  concatenated A+B batch; one D step then one G step with fresh noise.
- `--model=scogan`: two independent generators and discriminators, coupled only by regularisers that
  are added to both generators' losses, each switched on by a positive weight (spec §2.4):
  feature (`--feature_weight`, the first `--shared_layers` feature maps), weight (`--weight_reg_weight`,
  every generator variable, as the original's `weight_regularizer`), semantic (`--semantic_weight`
  through a frozen classifier from `--classifier_path`), cycle (`--cycle_weight`, a shared encoder E
  regressing z with L1, run in inference mode as the original calls it; E is trained on the term) and
  perceptual (`--style_weight`, `--content_weight`, VGG19 features). Losses `ce` or `wgan-gp`.

Choices (see README, "CoGAN / SCoGAN: choices"):
- separate Adam optimizers per network by default; `--scogan_adam shared` is the original's one Adam
  for D1+D2 and one for G1+G2+E, whose step count advances once per network's update;
- weight decay: `--weight_decay` defaults to 5e-4 for CoGAN (applied as L2 added to the gradients,
  like the PyTorch CoGAN's Adam) and to 0 for SCoGAN (the original declares 5e-4 kernel regularisers
  but its custom loop never adds `model.losses`, so it trains without decay);
- PReLU slopes per element (`--prelu element`, the original's Keras default: one slope per unit of the
  layer's output) or per channel (`--prelu channel`, fewer parameters);
- convolutions use 'same' padding so the architectures also run at 8-16 px for tests and demos;
- dropout draws its masks from the trainer's checkpointed RNG (stateless dropout), so resume is exact;
- initialisation: Xavier (Glorot uniform, bias 0) for CoGAN as in its Caffe/PyTorch code, N(0, 0.02) with
  bias 0.1 for SCoGAN;
- z ~ U(-1, 1) as in SCoGAN (`--noise_type normal` for the PyTorch CoGAN's N(0, 1)).
"""
import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import data as data_lib
from vgrow_tf import layers
from vgrow_tf import losses as losses_lib
from vgrow_tf.data import pairs as pairs_lib
from vgrow_tf.models import classifier as classifier_lib
from vgrow_tf.errors import UserError
from vgrow_tf.sampling.images import interleave
from vgrow_tf.training.options import Option
from vgrow_tf.training.steps import apply_if_finite, host_stats, make_adam, reduce_sum
from vgrow_tf.training.strategy import replica_slice

KIND = "scogan"
KINDS = ("cogan", "scogan")
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
CONTENT_LAYERS = ("block5_conv2",)
VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"

# Config keys spelled otherwise as options (train.py --resume_from takes the config's value for the option).
OPTION_OF_CONFIG = {"arch": "coupled_arch"}

OPTIONS = [
    Option("dataset_b", None, "CoGAN/SCoGAN/classifier: the second domain's dataset directory (or name)."),
    Option("z_dim", None, "Latent size (default 512; GLO 100, CoGAN 100).", "integer"),
    Option("fmaps", None, "Feature maps per layer (default 256 up to 128 px, 128 above).", "integer"),
    Option("d_fmaps", None, "CoGAN/SCoGAN discriminator width on --fmaps' scale (default --fmaps): 1024 is "
           "the reference discriminator (20-50-500 maps for digits), cheap beside a narrow generator.",
           "integer"),
    Option("learning_rate", None, "Adam learning rate (VGrow-PG 1e-3, MSG 3e-3, ...).", "float"),
    Option("g_lr", None, "Generator learning rate (overrides --learning_rate).", "float"),
    Option("d_lr", None, "Discriminator learning rate (overrides --learning_rate).", "float"),
    Option("wgan_lambda", 10.0, "WGAN-GP gradient-penalty weight.", "float"),
    Option("coupled_arch", "auto", "CoGAN/SCoGAN architecture: digits (G32/D32 family, up to 32 px) or "
           "faces (G128/D128 family); auto picks digits up to 32 px.", "enum", ["auto", "digits", "faces"]),
    Option("adv_loss", "ce", "SCoGAN adversarial loss: ce (sigmoid cross-entropy) or wgan-gp "
           "(penalty weight --wgan_lambda).", "enum", ["ce", "wgan-gp"]),
    Option("noise_type", "uniform", "CoGAN/SCoGAN latent distribution: uniform U(-1,1) or normal N(0,1).",
           "enum", ["uniform", "normal"]),
    Option("weight_decay", None, "CoGAN/SCoGAN L2 weight decay added to the gradients (default 5e-4 for "
           "CoGAN, 0 for SCoGAN, whose original never applied its declared decay).", "float"),
    Option("disc_iters", 1, "CoGAN/SCoGAN discriminator steps per generator step.", "integer"),
    Option("shared_layers", 2, "SCoGAN: how many leading generator feature maps the feature regulariser "
           "ties together.", "integer"),
    Option("feature_weight", 0.0, "SCoGAN feature regulariser weight (0: off; the original used 10).", "float"),
    Option("weight_reg_weight", 0.0, "SCoGAN weight regulariser weight: sum over all generator variables of "
           "mean((W1-W2)^2) (0: off; the original used 10).", "float"),
    Option("semantic_weight", 0.0, "SCoGAN semantic loss weight (0: off; needs --classifier_path).", "float"),
    Option("classifier_path", None, "SCoGAN semantic loss: a classifier snapshot from "
           "train.py --model=classifier (or a Keras .keras model)."),
    Option("cycle_weight", 0.0, "SCoGAN cycle-consistency weight: L1 between E(G_i(z)) and z (0: off).",
           "float"),
    Option("style_weight", 0.0, "SCoGAN perceptual style weight (Gram matrices of VGG19 block*_conv1; "
           "-1 means content_weight / 8e-4; 0: off).", "float"),
    Option("content_weight", 0.0, "SCoGAN perceptual content weight (VGG19 block5_conv2 of G1 vs G2; 0: off).",
           "float"),
    Option("vgg_weights", None, "VGG19 for the perceptual loss: the notop ImageNet .h5 weights, or a .keras "
           "feature model (default: the Keras cache, ~/.keras/models)."),
    Option("prelu", "element", "CoGAN/SCoGAN PReLU slopes: element (one per output unit, as the original's "
           "Keras PReLU) or channel (one per feature map).", "enum", ["element", "channel"]),
    Option("scogan_adam", "per_network", "SCoGAN Adam optimizers: per_network (one per G1, G2, D1, D2, E) or "
           "shared (the original's: one for D1+D2 and one for G1+G2+E, applied network by network, so the "
           "step count of bias correction advances once per network).", "enum", ["per_network", "shared"]),
    Option("gram_norm", "hwc", "SCoGAN Gram-matrix normalisation: hwc (refactor; content also divided by "
           "HWC) or hw (thesis).", "enum", ["hwc", "hw"]),
]



def _initializers(init):
    """Fresh instances per layer (a reused Keras 3 initializer repeats its values): SCoGAN's N(0, 0.02)
    with bias 0.1, or CoGAN's Xavier (Glorot uniform) with bias 0."""
    if init == "xavier":
        return dict(kernel_initializer=keras.initializers.GlorotUniform(), bias_initializer="zeros")
    return dict(kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
                bias_initializer=keras.initializers.Constant(0.1))


# --- building blocks ---------------------------------------------------------------------------

class Block(keras.layers.Layer):
    """One layer of the CoGAN/SCoGAN networks: dense/conv/deconv, optional BN, activation, pooling,
    dropout (stateless, seeded by the caller)."""

    def __init__(self, kind, filters, kernel=1, stride=1, bn=False, act=None, pool=False, dropout=0.0,
                 reshape=None, init="normal", prelu="element", **kwargs):
        super().__init__(**kwargs)
        self.kind, self.act, self.pool, self.dropout, self.reshape = kind, act, pool, dropout, reshape
        common = dict(_initializers(init), dtype=self.dtype_policy)  # a float32 Block is float32 inside
        if kind == "dense":
            self.op = keras.layers.Dense(filters, **common)
        elif kind == "conv":
            self.op = keras.layers.Conv2D(filters, kernel, stride, padding="same", **common)
        else:
            self.op = keras.layers.Conv2DTranspose(filters, kernel, stride, padding="same", **common)
        self.bn = keras.layers.BatchNormalization() if bn else None
        per_channel = prelu == "channel" and (kind != "dense" or reshape)
        self.prelu = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                                        shared_axes=[1, 2] if per_channel else None) \
            if act == "prelu" else None

    def call(self, x, training=False, seed=None):
        if self.kind == "dense" and x.shape.rank > 2:
            x = tf.reshape(x, [tf.shape(x)[0], int(np.prod(x.shape[1:]))])
        x = self.op(x)
        if self.reshape:
            x = tf.reshape(x, [-1, *self.reshape])
        if self.bn is not None:
            x = self.bn(x, training=training)
        if self.act == "prelu":
            x = self.prelu(x)
        elif self.act == "lrelu":
            x = tf.nn.leaky_relu(x, 0.2)
        elif self.act == "tanh":
            x = tf.tanh(x)
        if self.pool:
            x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        if self.dropout and seed is not None:
            x = tf.nn.experimental.stateless_dropout(x, self.dropout, seed)
        return x


def _seed(seed, k):
    return None if seed is None else seed + tf.constant([0, 7919], seed.dtype) * (k + 1)


class Generator(keras.Model):
    """z -> [feature_1, ..., feature_n, image]: `trunk` (FC and the feature stages) then `tail`."""

    def __init__(self, trunk, tail, **kwargs):
        super().__init__(**kwargs)
        self.trunk, self.tail = list(trunk), list(tail)

    def call(self, z, training=False):
        x = self.trunk[0](z, training=training)
        features = []
        for block in self.trunk[1:]:
            x = block(x, training=training)
            features.append(x)
        for block in self.tail:
            x = block(x, training=training)
        return features + [tf.cast(x, tf.float32)]


class Sequence(keras.Model):
    """Images -> logit (discriminators, [B]) or z (the encoder), blocks in order; `seed` drives dropout."""

    def __init__(self, blocks, squeeze=True, **kwargs):
        super().__init__(**kwargs)
        self.blocks, self.squeeze = list(blocks), squeeze

    def call(self, x, training=False, seed=None):
        for k, block in enumerate(self.blocks):
            x = block(x, training=training, seed=_seed(seed, k))
        x = tf.cast(x, tf.float32)
        return x[:, 0] if self.squeeze else x


# --- architectures (spec §2.1, §2.3) -------------------------------------------------------------

def _w(width, fmaps, minimum=4):
    """A width of the 1024-wide reference architecture scaled to --fmaps."""
    return max(minimum, int(round(width * fmaps / 1024)))


def _block_for(config, init=None):
    """Block with the config's initialiser and PReLU slopes (snapshots without `prelu` predate the
    per-element default and were per channel)."""
    init = init or config.get("init") or ("xavier" if config["model"] == "cogan" else "normal")
    prelu = config.get("prelu", "channel")
    return lambda *args, **kwargs: Block(*args, init=init, prelu=prelu, **kwargs)


def generator_layers(config, name):
    """(trunk, tail) layer lists of one generator: trunk = FC + feature stages (CoGAN shares it)."""
    Block = _block_for(config)  # noqa: N806
    res, fm, ch = config["resolution"], config["fmaps"], config["channels"]
    n_up = int(round(math.log2(res // 4)))
    faces = config["arch"] == "faces"
    trunk = [Block("dense", 16 * fm, bn=True, act="prelu", reshape=(4, 4, fm), name=f"{name}_fc")]
    n_features = n_up - 1 if faces else n_up
    for i in range(n_features):
        trunk.append(Block("deconv", max(1, fm >> (i + 1)), 4 if faces else 3, 2, bn=True, act="prelu",
                           name=f"{name}_up{i}"))
    if faces:
        tail = [Block("deconv", max(1, fm >> 5), 4, 2, bn=True, act="prelu", name=f"{name}_up{n_features}"),
                Block("deconv", ch, 3, 1, act="tanh", name=f"{name}_to_rgb", **layers.OUTPUT)]
    else:
        tail = [Block("deconv", ch, 6, 1, act="tanh", name=f"{name}_to_rgb", **layers.OUTPUT)]
    return trunk, tail


def discriminator_layers(config, name):
    """(head, trunk) layer lists of one discriminator: head = the first layer(s) CoGAN keeps per domain."""
    Block = _block_for(config)  # noqa: N806
    fm = config.get("d_fmaps") or config["fmaps"]
    if config["arch"] == "faces":
        head = [Block("conv", _w(32, fm), 5, 2, bn=True, act="prelu", name=f"{name}_conv0"),
                Block("conv", _w(64, fm), 5, 2, bn=True, act="prelu", name=f"{name}_conv1")]
        trunk = [Block("conv", _w(128, fm), 5, 2, bn=True, act="prelu", dropout=0.1, name=f"{name}_conv2"),
                 Block("conv", _w(256, fm), 3, 2, bn=True, act="prelu", dropout=0.3, name=f"{name}_conv3"),
                 Block("conv", _w(512, fm), 3, 2, bn=True, act="prelu", dropout=0.3, name=f"{name}_conv4"),
                 Block("conv", _w(1024, fm), 3, 2, bn=True, act="prelu", dropout=0.5, name=f"{name}_conv5"),
                 Block("dense", _w(2048, fm), bn=True, act="prelu", dropout=0.5, name=f"{name}_fc"),
                 Block("dense", 1, name=f"{name}_logit")]
    else:
        head = [Block("conv", _w(20, fm), 5, pool=True, name=f"{name}_conv0")]
        trunk = [Block("conv", _w(50, fm), 5, pool=True, name=f"{name}_conv1"),
                 Block("dense", _w(500, fm), act="prelu", dropout=0.5, name=f"{name}_fc"),
                 Block("dense", 1, name=f"{name}_logit")]
    return head, trunk


def encoder_layers(config):
    """SCoGAN's encoder, with Keras' default initialisers (Glorot uniform, zero bias) as the original's.
    Its dropout never acts in training: the original (and cycle_loss) call E in inference mode."""
    Block = _block_for(config, init="xavier")  # noqa: N806
    fm = config["fmaps"]
    return [Block("conv", _w(64, fm), 3, 1, act="lrelu", name="E_conv0"),
            Block("conv", _w(128, fm), 3, 2, act="lrelu", name="E_conv1"),
            Block("conv", _w(128, fm), 3, 2, act="lrelu", name="E_conv2"),
            Block("conv", _w(256, fm), 3, 2, act="lrelu", dropout=0.4, name="E_conv3"),
            Block("dense", config["z_dim"], name="E_z")]


# --- snapshot interface --------------------------------------------------------------------------

def default_arch(resolution):
    return "digits" if resolution <= 32 else "faces"


def make_config(model, resolution, channels, z_dim=100, fmaps=1024, arch="auto", noise_type="uniform",
                cycle=False, prelu="element", d_fmaps=None):
    if model not in KINDS:
        raise UserError(f"coupled_gan builds cogan or scogan, not {model!r}")
    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"CoGAN/SCoGAN need a power-of-two resolution >= 8, got {resolution}")
    if prelu not in ("element", "channel"):
        raise UserError(f"--prelu must be element or channel, got {prelu!r}")
    arch = default_arch(resolution) if arch in (None, "auto") else arch
    return dict(model=model, resolution=int(resolution), channels=int(channels), z_dim=int(z_dim),
                fmaps=int(fmaps), d_fmaps=int(d_fmaps or fmaps), arch=arch, noise_type=noise_type,
                cycle=bool(cycle),
                init="xavier" if model == "cogan" else "normal", prelu=prelu)


def build_networks(config):
    """G1, G2, D1, D2 (and E with the cycle term), built. CoGAN's pairs share layer objects."""
    g1_trunk, g1_tail = generator_layers(config, "G1")
    d1_head, d1_trunk = discriminator_layers(config, "D1")
    if config["model"] == "cogan":
        _, g2_tail = generator_layers(config, "G2")
        g2_trunk = g1_trunk  # hard sharing: the very same layer objects
        d2_head, _ = discriminator_layers(config, "D2")
        d2_trunk = d1_trunk
    else:
        g2_trunk, g2_tail = generator_layers(config, "G2")
        d2_head, d2_trunk = discriminator_layers(config, "D2")
    nets = {"G1": Generator(g1_trunk, g1_tail, name="G1"), "G2": Generator(g2_trunk, g2_tail, name="G2"),
            "D1": Sequence(d1_head + d1_trunk, name="D1"), "D2": Sequence(d2_head + d2_trunk, name="D2")}
    if config.get("cycle"):
        nets["E"] = Sequence(encoder_layers(config), squeeze=False, name="E")
    z = tf.zeros([2, config["z_dim"]])
    image = nets["G1"](z)[-1]
    nets["G2"](z)
    nets["D1"](image)
    nets["D2"](image)
    if "E" in nets:
        nets["E"](image)
    return nets


def latent_dim(config):
    return config["z_dim"]


def sample_latents(config, count, seed=0):
    """Latents from the distribution the model was trained on (uniform U(-1,1) unless noise_type=normal)."""
    rs = np.random.RandomState(seed)
    if config.get("noise_type", "uniform") == "normal":
        return rs.randn(count, config["z_dim"]).astype(np.float32)
    return rs.uniform(-1.0, 1.0, [count, config["z_dim"]]).astype(np.float32)


def generate(networks, config, latents, domain="a", batch_size=64, **unused):
    """Images for `latents`: domain "a" (G1, the default: metrics compare with --dataset), "b" (G2), or
    "both": each z's pair side by side, [N, H, 2W, C] (A left, B right)."""
    if domain not in ("a", "b", "both"):
        raise UserError(f"domain must be a, b or both, got {domain!r}")
    names = {"a": ["G1"], "b": ["G2"], "both": ["G1", "G2"]}[domain]
    outs = []
    for i in range(0, len(latents), batch_size):
        z = tf.convert_to_tensor(latents[i:i + batch_size], tf.float32)
        outs.append(np.concatenate([networks[n](z)[-1].numpy() for n in names], axis=2))
    return np.concatenate(outs)


def generator_tensor(networks, config, z, domain="a", **unused):
    """Differentiable G1(z) or G2(z), for DGflow refinement (one domain at a time)."""
    name = {"a": "G1", "b": "G2"}.get(domain)
    if name is None:
        raise UserError("DGflow refines one domain at a time; use --domain a or b")
    return networks[name](z)[-1]


DISCRIMINATORS = ("D1", "D2")  # what DGflow reads (Snapshot.has_discriminator)


def discriminator_logit(networks, config, images, domain="a", **unused):
    """D1's or D2's logit for images of one domain, for DGflow refinement (the domain of generator_tensor)."""
    name = {"a": "D1", "b": "D2"}.get(domain)
    if name is None:
        raise UserError("DGflow refines one domain at a time; use --domain a or b")
    return networks[name](images)


def paired_grid_images(networks, config, latents):
    """G1(z_i), G2(z_i) interleaved: a grid with an even number of columns shows the pairs side by side."""
    z = tf.convert_to_tensor(latents, tf.float32)
    return interleave(networks["G1"](z)[-1].numpy(), networks["G2"](z)[-1].numpy())


# --- regularisers (spec §2.4): per-replica means; each is a function so tests can check it by hand ---

def feature_regulariser(features1, features2, shared_layers):
    """sum_{l < shared_layers} mean((h1_l - h2_l)^2)."""
    return tf.add_n([tf.reduce_mean(tf.square(a - b))
                     for a, b in list(zip(features1, features2))[:shared_layers]])


def weight_regulariser(g1, g2):
    """sum over the generators' trainable variables, paired in order, of mean((W1 - W2)^2): all of them,
    as the original's `weight_regularizer(g1, g2, shared_layers)` (which ignores `shared_layers`)."""
    v1, v2 = g1.trainable_variables, g2.trainable_variables
    if [tuple(v.shape) for v in v1] != [tuple(v.shape) for v in v2]:
        raise UserError("the weight regulariser needs two generators of the same architecture")
    return tf.add_n([tf.reduce_mean(tf.square(a - b)) for a, b in zip(v1, v2)])


def semantic_loss(classify, images1, images2):
    """mean((C(x1) - C(x2))^2) on the classifier's probabilities; gradients flow through C."""
    return tf.reduce_mean(tf.square(classify(images1) - classify(images2)))


def cycle_loss(encoder, images1, images2, z):
    """L1(E(G1 z), z) + L1(E(G2 z), z), each the mean absolute error. E runs in inference mode (no
    dropout), as the original calls it, for the generators' and for E's own update."""
    return (tf.reduce_mean(tf.abs(encoder(images1, training=False) - z))
            + tf.reduce_mean(tf.abs(encoder(images2, training=False) - z)))


def gram_matrix(features, norm="hwc"):
    """[B, C, C] Gram matrices divided by H*W*C ("hwc", the refactor) or H*W ("hw", the thesis)."""
    gram = tf.einsum("bijc,bijd->bcd", features, features)
    h, w, c = features.shape[1], features.shape[2], features.shape[3]
    return gram / float(h * w * c if norm == "hwc" else h * w)


def style_loss(fake_styles, real_styles, norm="hwc"):
    """mean over layers of mean((Gram(fake) - Gram(real))^2) (times style_weight by the caller)."""
    return tf.add_n([tf.reduce_mean(tf.square(gram_matrix(f, norm) - gram_matrix(r, norm)))
                     for f, r in zip(fake_styles, real_styles)]) / len(fake_styles)


def content_loss(content1, content2, norm="hwc"):
    """mean((c1 - c2)^2), divided by H*W*C with the refactor's normalisation."""
    diff = tf.reduce_mean(tf.square(content1 - content2))
    h, w, c = content1.shape[1], content1.shape[2], content1.shape[3]
    return diff / float(h * w * c) if norm == "hwc" else diff


def _to_rgb(images):
    return tf.tile(images, [1, 1, 1, 3]) if images.shape[-1] == 1 else images


# --- frozen helper networks: the semantic classifier and VGG19 --------------------------------------

def load_classifier(path):
    """(probabilities(images) callable, config) from a classifier snapshot or a Keras .keras model."""
    if not path:
        raise UserError("--semantic_weight needs --classifier_path (train one with train.py --model=classifier)")
    if not os.path.isfile(path):
        raise UserError(f"classifier file {path} does not exist; train one with "
                        "`python train.py --model=classifier ...` and pass its network-final.h5")
    if path.endswith(".keras"):
        model = keras.models.load_model(path, compile=False)
        model.trainable = False
        size = model.input_shape[1]
        channels = model.input_shape[-1]
        return (lambda x: model(_fit_images(x, size, channels), training=False)), {"source": path}
    from vgrow_tf import snapshot
    snap = snapshot.load(path, expect_kind="classifier")
    net, config = snap.networks["C"], snap.config
    net.trainable = False
    return (lambda x: classifier_lib.probabilities(net, config, x)), config


def _fit_images(images, size, channels):
    if size and images.shape[1] != size:
        images = tf.image.resize(images, [size, size], method="bilinear")
    if channels == 3:
        images = _to_rgb(images)
    elif channels == 1 and images.shape[-1] == 3:
        images = tf.reduce_mean(images, axis=-1, keepdims=True)
    return images


def vgg_feature_model(vgg_weights, resolution):
    """A frozen model: preprocessed RGB images -> [style features..., content feature]."""
    if vgg_weights and vgg_weights.endswith(".keras"):
        if not os.path.isfile(vgg_weights):
            raise UserError(f"--vgg_weights {vgg_weights} does not exist")
        model = keras.models.load_model(vgg_weights, compile=False)
        model.trainable = False
        return model
    if vgg_weights:
        if not os.path.isfile(vgg_weights):
            raise UserError(f"--vgg_weights {vgg_weights} does not exist; pass the VGG19 notop ImageNet "
                            f"weights ({VGG19_NOTOP_FILE})")
        weights = vgg_weights
    else:
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models",
                             VGG19_NOTOP_FILE)
        if not os.path.isfile(cache):
            raise UserError(f"the perceptual loss needs VGG19 ImageNet weights, which are not in the Keras "
                            f"cache ({cache}) and cannot be downloaded here; pass --vgg_weights PATH to "
                            f"{VGG19_NOTOP_FILE}, or set --style_weight=0 --content_weight=0")
        weights = cache
    size = max(32, resolution)
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=weights, input_shape=(size, size, 3))
    except (ValueError, OSError) as e:
        raise UserError(f"cannot load VGG19 weights from {weights}: {str(e).splitlines()[0]}") from None
    vgg.trainable = False
    outputs = [vgg.get_layer(n).output for n in STYLE_LAYERS + CONTENT_LAYERS]
    return keras.Model(vgg.input, outputs, name="vgg19_features")


def vgg_features(model, images):
    """[style features..., content] of NHWC [-1,1] images through `preprocess_input` (caffe BGR)."""
    size = model.input_shape[1]
    x = _to_rgb(images)
    if size and x.shape[1] != size:
        x = tf.image.resize(x, [size, size], method="bilinear")
    x = keras.applications.vgg19.preprocess_input((x + 1.0) * 127.5)
    out = model(x, training=False)
    return list(out) if isinstance(out, (list, tuple)) else [out]


# --- training --------------------------------------------------------------------------------------

class Trainer:
    """CoGAN / SCoGAN: `disc_iters` D steps then one G step per iteration (spec §2.1, §2.4)."""

    DEFAULTS = dict(total_nimg=640_000, tick_kimg=12.8, snapshot_kimg=128)

    @staticmethod
    def inspect_data(options):
        info_a, info_b = pairs_lib.inspect_pair(options)
        pairs_lib.pair_resolution(options, info_a, info_b)
        return dataclasses.replace(info_a, name=pairs_lib.pair_name(info_a.name, info_b.name))

    @staticmethod
    def run_name_suffix(options):
        return options.model

    @staticmethod
    def identity(options):
        keys = ("dataset_b", "z_dim", "fmaps", "coupled_arch", "adv_loss", "noise_type", "shared_layers",
                "feature_weight", "weight_reg_weight", "semantic_weight", "classifier_path", "cycle_weight",
                "style_weight", "content_weight", "gram_norm")
        ident = {k: getattr(options, k) for k in keys}
        if options.prelu != "channel":  # runs from before --prelu were per channel and lack the key
            ident["prelu"] = options.prelu
        if options.d_fmaps:  # runs from before --d_fmaps lack the key
            ident["d_fmaps"] = options.d_fmaps
        if options.model == "scogan" and options.scogan_adam != "per_network":  # likewise
            ident["scogan_adam"] = options.scogan_adam
        if ident["dataset_b"]:
            ident["dataset_b"] = data_lib.resolve_dataset(options.dataset_b, options.data_root)
        return ident

    def __init__(self, options, strategy, info):
        self.options, self.strategy, self.info = options, strategy, info
        self.model = options.model
        _, info_b = pairs_lib.inspect_pair(options)
        self.info_b = info_b
        self.dataset_path, self.dataset_b_path = info.path, info_b.path
        self.resolution = pairs_lib.pair_resolution(options, info, info_b)
        channels = max(info.channels, info_b.channels)
        self.channels_in = (info.channels, info_b.channels)
        w = self._weights()
        self.arch = make_config(self.model, self.resolution, channels, options.z_dim or 100,
                                options.fmaps or 1024, options.coupled_arch, options.noise_type,
                                cycle=w["cycle"] > 0, prelu=options.prelu, d_fmaps=options.d_fmaps)
        if options.disc_iters < 1:
            raise UserError(f"--disc_iters must be >= 1, got {options.disc_iters}")
        n_features = len(generator_layers(self.arch, "probe")[0]) - 1
        if self.model == "scogan" and w["feature"] > 0 and not 1 <= options.shared_layers <= n_features:
            raise UserError(f"--shared_layers must be 1..{n_features} for a {self.resolution} px "
                            f"{self.arch['arch']} generator, got {options.shared_layers}")
        self.replicas = strategy.num_replicas_in_sync
        self.batch = options.batch_size or (64 if self.model == "cogan" else 128)
        if self.batch % self.replicas:
            raise UserError(f"batch size {self.batch} is not divisible by the {self.replicas} replicas")
        self.weights = w
        self.weight_decay = options.weight_decay if options.weight_decay is not None \
            else (5e-4 if self.model == "cogan" else 0.0)
        self.d_loss_fn, self.g_loss_fn, _ = losses_lib.get_gan_loss("ce" if self.model == "cogan"
                                                                    else options.adv_loss)
        self.use_gp = self.model == "scogan" and options.adv_loss == "wgan-gp"
        # Frozen helpers (built before the trainable networks so a bad path fails fast).
        self.classify = self.vgg = None
        if self.model == "scogan" and w["semantic"] > 0:
            self.classify, _ = load_classifier(options.classifier_path)
        if self.model == "scogan" and (w["style"] > 0 or w["content"] > 0):
            self.vgg = vgg_feature_model(options.vgg_weights, self.resolution)
        with strategy.scope():
            self.nets = build_networks(self.arch)
            lr = options.learning_rate or 2e-4
            g_lr, d_lr = options.g_lr or lr, options.d_lr or lr
            self.groups = self._groups()
            self.opt_of = self._optimizer_of_group()
            self.opts = {}
            for name in dict.fromkeys(self.opt_of.values()):
                groups = [g for g, o in self.opt_of.items() if o == name]
                is_g = self.groups[groups[0]][1]
                self.opts[name] = make_adam(g_lr if is_g else d_lr, beta_1=0.5, beta_2=0.999, epsilon=1e-7)
                self.opts[name].build([v for g in groups for v in self.groups[g][0]])
            self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
        self.rng = tf.random.Generator.from_seed(options.seed)
        self.grid_latents = sample_latents(self.arch, 1000, seed=1234)
        self._step, self._iterators = None, None
        self.trace_count = 0

    def _weights(self):
        o = self.options
        style = o.style_weight
        if style is not None and style < 0:  # the original's "-1 means content_weight / 8e-4"
            style = o.content_weight / 8e-4
        return dict(feature=o.feature_weight, weight=o.weight_reg_weight, semantic=o.semantic_weight,
                    cycle=o.cycle_weight, style=style, content=o.content_weight)

    def _groups(self):
        """name -> (variables, is_generator_side): one optimizer per group (per network for SCoGAN)."""
        n = self.nets

        def unique(*models):
            seen, out = set(), []
            for m in models:
                for v in m.trainable_variables:
                    if id(v) not in seen:
                        seen.add(id(v))
                        out.append(v)
            return out

        if self.model == "cogan":
            return {"G": (unique(n["G1"], n["G2"]), True), "D": (unique(n["D1"], n["D2"]), False)}
        groups = {"G1": (unique(n["G1"]), True), "G2": (unique(n["G2"]), True),
                  "D1": (unique(n["D1"]), False), "D2": (unique(n["D2"]), False)}
        if "E" in n:
            groups["E"] = (unique(n["E"]), True)
        return groups

    def _optimizer_of_group(self):
        """group -> optimizer name. `--scogan_adam shared` is the original's: one Adam for D1 and D2 and
        one for G1, G2 and E, each network's update a separate apply (TF <= 2.10's Keras Adam then
        advanced its one step count per apply: D2's first update used t = 2)."""
        if self.model == "scogan" and self.options.scogan_adam == "shared":
            return {name: "G" if is_g else "D" for name, (_, is_g) in self.groups.items()}
        return {name: name for name in self.groups}

    # -- the loop's interface ----------------------------------------------------------------------
    def checkpoint_items(self):
        items = dict(self.nets)
        items.update({f"opt_{k}": v for k, v in self.opts.items()})
        items.update(rng=self.rng, batches=self.batches)
        return items

    def after_restore(self, cur_nimg):
        self._iterators = None  # rebuilt lazily, skipping the batches already consumed

    def config(self):
        return dict(self.arch)

    def networks(self):
        return dict(self.nets)

    def progress_scalars(self, cur_nimg):
        return {}

    def grids(self, count):
        return {"fakes": paired_grid_images(self.nets, self.arch, self.grid_latents[:max(1, count // 2)])}

    # -- data ----------------------------------------------------------------------------------------
    def _make_iterators(self):
        skip = int(self.batches.numpy())
        its = []
        for k, path in enumerate((self.dataset_path, self.dataset_b_path)):
            ds = data_lib.load_dataset(path, batch_size=self.batch, resolution=self.resolution, shuffle=True,
                                       repeat=True, seed=self.options.seed + k).skip(skip)
            opts = tf.data.Options()
            opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            its.append(iter(self.strategy.experimental_distribute_dataset(ds.with_options(opts))))
        return its

    # -- per-replica maths -----------------------------------------------------------------------------
    def _reals(self, images):
        return _to_rgb(images) if self.arch["channels"] == 3 else images

    def _d_grads(self, real_a, real_b, z, gp_u, seeds):
        n, batch = self.nets, self.batch
        z = replica_slice(z)
        real_a, real_b = self._reals(real_a), self._reals(real_b)
        fake_a = tf.stop_gradient(n["G1"](z, training=True)[-1])
        fake_b = tf.stop_gradient(n["G2"](z, training=True)[-1])
        stats = {}
        with tf.GradientTape(persistent=True) as tape:
            per_domain = []
            for k, (d, real, fake) in enumerate(((n["D1"], real_a, fake_a), (n["D2"], real_b, fake_b))):
                real_logits = d(real, training=True, seed=seeds[2 * k])
                fake_logits = d(fake, training=True, seed=seeds[2 * k + 1])
                loss = tf.reduce_sum(self.d_loss_fn(real_logits, fake_logits)) / batch
                if self.use_gp:
                    gp = tf.reduce_sum(losses_lib.gradient_penalty(
                        lambda x, d=d: d(x, training=True, seed=seeds[4 + k]), real, fake,
                        replica_slice(gp_u[k]))) / batch
                    stats[f"gp{k + 1}"] = gp
                    loss += self.options.wgan_lambda * gp
                per_domain.append(loss)
            if self.model == "cogan":  # CE over the concatenated A+B batch
                losses = {"D": (per_domain[0] + per_domain[1]) / 2.0}
            else:
                losses = {"D1": per_domain[0], "D2": per_domain[1]}
        grads = self._gradients(tape, losses)
        stats.update(d1=per_domain[0], d2=per_domain[1])
        return grads, stats

    def regularisers(self, out1, out2, z, real_a, real_b):
        """Unweighted SCoGAN terms that are switched on: name -> (value for G1, value for G2)."""
        w, o, terms = self.weights, self.options, {}
        img1, img2 = out1[-1], out2[-1]
        if w["feature"] > 0:
            fr = feature_regulariser(out1[:-1], out2[:-1], o.shared_layers)
            terms["feature"] = (fr, fr)
        if w["weight"] > 0:
            wr = weight_regulariser(self.nets["G1"], self.nets["G2"])
            terms["weight"] = (wr, wr)
        if w["semantic"] > 0:
            sl = semantic_loss(self.classify, img1, img2)
            terms["semantic"] = (sl, sl)
        if w["cycle"] > 0:
            cc = cycle_loss(self.nets["E"], img1, img2, z)
            terms["cycle"] = (cc, cc)
        if w["style"] > 0 or w["content"] > 0:
            f1, f2 = vgg_features(self.vgg, img1), vgg_features(self.vgg, img2)
            if w["style"] > 0:
                r1, r2 = vgg_features(self.vgg, real_a), vgg_features(self.vgg, real_b)
                terms["style"] = (style_loss(f1[:-1], r1[:-1], o.gram_norm), style_loss(f2[:-1], r2[:-1], o.gram_norm))
            if w["content"] > 0:
                cl = content_loss(f1[-1], f2[-1], o.gram_norm)
                terms["content"] = (cl, cl)
        return terms

    def _g_grads(self, z, real_a, real_b, seeds):
        n, batch = self.nets, self.batch
        z = replica_slice(z)
        real_a, real_b = self._reals(real_a), self._reals(real_b)
        local = tf.cast(tf.shape(z)[0], tf.float32)
        share = local / batch  # per-replica means add up to the global mean over replicas
        with tf.GradientTape(persistent=True) as tape:
            out1, out2 = n["G1"](z, training=True), n["G2"](z, training=True)
            adv1 = tf.reduce_sum(self.g_loss_fn(n["D1"](out1[-1], training=True, seed=seeds[0]))) / batch
            adv2 = tf.reduce_sum(self.g_loss_fn(n["D2"](out2[-1], training=True, seed=seeds[1]))) / batch
            stats = {"g1": adv1, "g2": adv2}
            if self.model == "cogan":
                losses = {"G": (adv1 + adv2) / 2.0}
            else:
                terms = self.regularisers(out1, out2, z, real_a, real_b)
                l1, l2 = adv1, adv2
                for name, (t1, t2) in terms.items():
                    weight = self.weights[name]
                    l1 += weight * share * t1
                    l2 += weight * share * t2
                    stats[name] = share * t1
                losses = {"G1": l1, "G2": l2}
                if "cycle" in terms:
                    losses["E"] = share * terms["cycle"][0]
        grads = self._gradients(tape, losses)
        return grads, stats

    def _gradients(self, tape, losses):
        """Per-replica gradients of each group's loss, with L2 weight decay (summed over replicas)."""
        grads = {}
        for name, loss in losses.items():
            variables = self.groups[name][0]
            g = tape.gradient(loss, variables)
            if self.weight_decay:
                g = [None if gi is None else gi + (self.weight_decay / self.replicas) * v
                     for gi, v in zip(g, variables)]
            grads[name] = g
        return grads

    # -- the iteration --------------------------------------------------------------------------------
    def _apply(self, grads):
        finite = tf.constant(True)
        for name, g in grads.items():
            variables = self.groups[name][0]
            optimizer = self.opts[self.opt_of[name]]
            finite = tf.logical_and(finite, apply_if_finite(self.strategy, optimizer, g, variables))
        return finite

    def _make_step(self):
        strategy, opts = self.strategy, self.options
        batch, z_dim = self.batch, self.arch["z_dim"]

        def noise():
            if self.arch["noise_type"] == "normal":
                return self.rng.normal([batch, z_dim])
            return self.rng.uniform([batch, z_dim], -1.0, 1.0)

        def seeds(count):
            return self.rng.uniform_full_int([count, 2], tf.int64)

        def iteration(it_a, it_b):
            self.trace_count += 1  # runs only while tracing
            totals = {}
            finite = tf.constant(True)
            for _ in range(opts.disc_iters):
                real_a, real_b = next(it_a)["image"], next(it_b)["image"]
                gp_u = self.rng.uniform([2, batch])
                grads, stats = strategy.run(self._d_grads, args=(real_a, real_b, noise(), gp_u, seeds(6)))
                finite = tf.logical_and(finite, self._apply(grads))
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + reduce_sum(strategy, v) / opts.disc_iters
            grads, stats = strategy.run(self._g_grads, args=(noise(), real_a, real_b, seeds(2)))
            finite = tf.logical_and(finite, self._apply(grads))
            for k, v in stats.items():
                totals[k] = reduce_sum(strategy, v)
            return dict(totals, finite=finite)

        return tf.function(iteration)

    def train_iteration(self, cur_nimg):
        if self._iterators is None:
            self._iterators = self._make_iterators()
        if self._step is None:
            self._step = self._make_step()
        stats = self._step(*self._iterators)
        self.batches.assign_add(self.options.disc_iters)
        stats, finite = host_stats(stats)
        return dict(stats, nimg=self.options.disc_iters * self.batch, nonfinite=not finite)


# --- the joint-distribution measure -------------------------------------------------------------------

def pair_classes(networks, config, classify, count=1000, seed=0, batch_size=100):
    """The classifier's classes of G1(z) and of G2(z) for `count` latents: two int arrays."""
    latents = sample_latents(config, count, seed)
    classes = [[], []]
    for i in range(0, count, batch_size):
        z = tf.convert_to_tensor(latents[i:i + batch_size])
        for k, name in enumerate(("G1", "G2")):
            classes[k].append(tf.argmax(classify(networks[name](z)[-1]), -1).numpy())
    return np.concatenate(classes[0]), np.concatenate(classes[1])


def pair_agreement(networks, config, classify, count=1000, seed=0, batch_size=100):
    """Fraction of z whose two images (G1(z), G2(z)) the classifier puts in the same class."""
    a, b = pair_classes(networks, config, classify, count, seed, batch_size)
    return float(np.mean(a == b))

"""BMSG-GAN (MSG-ProGAN's original, PyTorch) state_dicts -> our `msg_progan` networks.

The original's weights are named as in its `state_dict()`: Generator `layers.<i>.conv_<j>` and
`rgb_converters.<i>`, Discriminator `rgb_to_features.<i>`, `final_converter`, `layers.<i>.conv_<j>` and
`final_block.conv_<j>`, each with `.weight` (NCHW order: out, in, kh, kw; the 4x4 transposed conv of
G's first block: in, out, kh, kw) and `.bias`.

The file format (`bmsg_gan_npz`) is one .npz holding them as `G/<name>`, `D/<name>` and optionally
`Gs/<name>` (the shadow generator), which a few lines of PyTorch write from the original's
GAN_GEN_*.pth / GAN_DIS_*.pth / GAN_GEN_SHADOW_*.pth (docs/original_models.md); `.pth` files themselves
(pickles that name torch classes) are not read.

How the layers correspond:
- G's first block turns z into 4x4 with a transposed conv on a 1x1 map: our `project` dense layer (no
  bias) to 4*4*C, then `bias4`; its 3x3 conv is our `conv4_1`. Block i >= 1 is `conv<res>_0/1`.
- D's blocks run top resolution first in ours, last-layer-first in the original: our block k is the
  original's `layers.<depth-2-k>`, our combine k's 1x1 conv its `rgb_to_features.<depth-2-k>` (the
  4x4 scale's is `final_converter`), our top `from_rgb` its `rgb_to_features.<depth-2>`.
- Both use the same equalised-lr scale sqrt(2 / fan_in) on every layer, toRGB and the last one included.
"""
import os
import zipfile

import numpy as np

from vgrow_tf.errors import UserError

FORMAT = "bmsg_gan_npz"
DESCRIPTION = "BMSG-GAN (MSG-ProGAN, PyTorch): its G/D (and shadow G) state_dicts as G/<name>, D/<name>, Gs/<name> in one .npz"
MARKERS = ("G/layers.0.conv_1.weight.npy", "D/final_block.conv_3.weight.npy")


def _conv(weight):
    return np.transpose(weight, (2, 3, 1, 0))  # out, in, kh, kw -> kh, kw, in, out


def _project(weight):
    """ConvTranspose2d(latent, C, 4) on a 1x1 map == dense latent -> 4*4*C with (h, w, c) order."""
    return np.transpose(weight, (0, 2, 3, 1)).reshape(weight.shape[0], -1)


def _same(array):
    return array


def depth_of(gen):
    """The original's `depth` (number of scales) from its generator state_dict."""
    return len({k.split(".")[1] for k in gen if k.startswith("rgb_converters.")})


def generator_pairs(g, depth):
    """[(our variable, original name, original array -> ours)] for a ProGenerator."""
    pairs = [(g.project.kernel, "layers.0.conv_1.weight", _project), (g.bias4, "layers.0.conv_1.bias", _same)]
    for k in range(depth):
        convs = g.convs[k]
        names = ["conv_2"] if k == 0 else ["conv_1", "conv_2"]
        for conv, name in zip(convs, names):
            pairs += _conv_pairs(conv, f"layers.{k}.{name}")
        pairs += _conv_pairs(g.to_rgb[k], f"rgb_converters.{k}")
    return pairs


def discriminator_pairs(d, depth):
    """[(our variable, original name, original array -> ours)] for a ProDiscriminator."""
    pairs = _conv_pairs(d.from_rgb, f"rgb_to_features.{depth - 2}")
    for k in range(depth):
        if k > 0:
            source = "final_converter" if k == depth - 1 else f"rgb_to_features.{depth - 2 - k}"
            pairs += _conv_pairs(d.combines[k].conv, source)
        if k < depth - 1:
            for j, conv in enumerate(d.blocks[k], 1):
                pairs += _conv_pairs(conv, f"layers.{depth - 2 - k}.conv_{j}")
    for conv, j in ((d.conv4, 1), (d.conv4_valid, 2), (d.out, 3)):
        pairs += _conv_pairs(conv, f"final_block.conv_{j}")
    return pairs


def _conv_pairs(conv, name):
    return [(conv.kernel, f"{name}.weight", _conv), (conv.bias, f"{name}.bias", _same)]


def config_for(gen, dis):
    """Our msg_progan config for a BMSG-GAN G/D pair (widths: fmap_max = latent size, as the original)."""
    from vgrow_tf.models import msg_gan
    depth, latent = depth_of(gen), gen["layers.0.conv_1.weight"].shape[0]
    if depth < 4:  # its Discriminator cannot be built below depth 4 either
        raise UserError(f"BMSG-GAN generator of depth {depth}: the original needs depth >= 4")
    if "final_block.conv_3.weight" not in dis:
        raise UserError("not a BMSG-GAN discriminator state_dict (no final_block.conv_3.weight)")
    channels = gen["rgb_converters.0.weight"].shape[0]
    return msg_gan.make_config("msg_progan", 2 ** (depth + 1), channels, z_dim=latent, fmap_max=latent)


def load_state_dicts(networks, gen, dis, shadow=None):
    """Copies the original's G (and shadow G, default G) and D state_dicts into our G, Gs and D."""
    depth = depth_of(gen)
    targets = [(generator_pairs(networks["G"], depth), gen), (generator_pairs(networks["Gs"], depth), shadow or gen),
               (discriminator_pairs(networks["D"], depth), dis)]
    for pairs, arrays in targets:
        for variable, name, to_ours in pairs:
            if name not in arrays:
                raise UserError(f"BMSG-GAN state_dict lacks {name}")
            value = to_ours(np.asarray(arrays[name], np.float32))
            if tuple(value.shape) != tuple(variable.shape):
                raise UserError(f"BMSG-GAN {name}: shape {tuple(value.shape)} does not fit "
                                f"{tuple(variable.shape)}")
            variable.assign(value)


def detect(path):
    if not (os.path.isfile(path) and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return all(m in names for m in MARKERS)


def _group(arrays, prefix):
    return {k[len(prefix) + 1:]: arrays[k] for k in arrays.files if k.startswith(prefix + "/")}


def convert(path, **options):
    from vgrow_tf.interop import Imported
    from vgrow_tf.models import msg_gan

    if not detect(path):
        raise UserError(f"{path} is not a BMSG-GAN npz (it needs {' and '.join(m[:-4] for m in MARKERS)})")
    with np.load(path, allow_pickle=False) as arrays:
        gen, dis, shadow = _group(arrays, "G"), _group(arrays, "D"), _group(arrays, "Gs")
    config = config_for(gen, dis)
    networks = msg_gan.build_networks(config)
    load_state_dicts(networks, gen, dis, shadow or None)
    summary = (f"BMSG-GAN (MSG-ProGAN) {config['resolution']} px, {config['channels']} channels, "
               f"latent {config['z_dim']}, " + ("with" if shadow else "no") + " shadow generator")
    return Imported(kind="msg_progan", config=config, networks=networks, arrays={}, summary=summary)

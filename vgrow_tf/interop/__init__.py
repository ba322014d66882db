"""Models saved by the original codes, read without TF1, dnnlib or the original sources.

One module per source format. Each provides

    FORMAT              the name `--kind` / `source_format=` takes
    DESCRIPTION         one line for help texts
    detect(path)        True when `path` looks like this format (cheap: names and magic bytes only)
    convert(path, **options) -> Imported
                        our family's networks, built from the detected architecture and holding the
                        original's weights, so that they compute the original's outputs

`load(path)` picks the module by detection; `vgrow_tf.snapshot.load` calls it for any file that is
not one of our own snapshots, so every tool that takes a snapshot takes an original model too.
"""
import dataclasses
import importlib
import os

from vgrow_tf.errors import UserError

# format name -> module. Detection tries them in this order.
FORMAT_MODULES = {
    "msg_stylegan_pkl": "vgrow_tf.interop.msg_stylegan_pickle",
    "pgvgrow_ckpt": "vgrow_tf.interop.pgvgrow_checkpoint",
    "glo_tf_ckpt": "vgrow_tf.interop.glo_checkpoint",
    "scogan_keras": "vgrow_tf.interop.scogan_keras",
    "bmsg_gan_npz": "vgrow_tf.interop.bmsg_gan",
}


@dataclasses.dataclass
class Imported:
    """An original model converted to one of our families (what a snapshot file holds)."""

    kind: str       # our model kind, e.g. "msg_stylegan"
    config: dict    # the family's config: build_networks(config) rebuilds the same networks
    networks: dict  # network name -> built Keras model holding the original's weights
    arrays: dict    # extra numpy arrays a snapshot keeps (GLO's latent table, ...)
    summary: str    # one line on what was found, e.g. "MSG-StyleGAN 1024 px, 3 channels, z 512"


def read_tf_checkpoint(prefix):
    """(reader, {variable name: shape}) of a TF checkpoint, read without its graph; UserError if unreadable."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
        return reader, reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f"{prefix}: the checkpoint index is truncated or corrupt ({type(e).__name__}); "
                        "copy the checkpoint again") from None


def format_module(name):
    if name not in FORMAT_MODULES:
        raise UserError(f"unknown original format '{name}'; known: {', '.join(FORMAT_MODULES)}")
    return importlib.import_module(FORMAT_MODULES[name])


def detect(path):
    """The name of the original format `path` is in, or None."""
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        return None
    for name in FORMAT_MODULES:
        try:
            module = format_module(name)
        except ModuleNotFoundError:  # a format not implemented in this version
            continue
        if module.detect(path):
            return name
    return None


def load(path, source_format=None, **options):
    """Converts the original model at `path` (format detected unless given) into an `Imported`."""
    name = source_format or detect(path)
    if name is None:
        raise UserError(f"{path} is neither a vgrow_tf snapshot nor a model file of an original code "
                        f"({', '.join(FORMAT_MODULES)}); pass --kind to name its format")
    return format_module(name).convert(path, **options)

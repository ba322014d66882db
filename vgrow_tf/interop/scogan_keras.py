"""SCoGAN models as the original trainer (MarkusHald/SCoGAN, `Main.py --gan_type scogan`) saves them.

The trainer calls Keras 2 `model.save(dir)` five times, writing one TF SavedModel folder per network
under its `--dir`: `generator1/`, `generator2/`, `discriminator1/`, `discriminator2/` and, with
`--use_cycle`, `encoder/`. Keras 3 refuses to load those folders, so only their weights are read, with
`tf.train.load_checkpoint`: the object-based checkpoint `variables/variables`, whose object graph names
the layers that hold weights `layer_with_weights-<k>` in model order (a nested model, such as the faces
discriminator's Sequential, adds a level). Nothing in `saved_model.pb` or `keras_metadata.pb` is
executed or needed.

The architecture is inferred from the weight shapes: generator `32` (digits: 3x3 deconvs, 6x6 output
conv) or `128` (faces: 4x4 deconvs, 3x3 output conv), its width and z size from the first dense layer,
resolution and channels from the deconvolutions, per-element or per-channel PReLU from the slope shapes;
`config.txt` (written by the original next to the folders) supplies `noise_type` when present. Our
`coupled_gan` networks are then built with `--model=scogan` and receive the weights layer by layer.
Not carried over: optimizer state (the original saves models uncompiled) and the training flags.
"""
import os
import re

import numpy as np

from vgrow_tf.errors import UserError

FORMAT = "scogan_keras"
DESCRIPTION = ("SCoGAN (MarkusHald/SCoGAN) run folder: Keras-2 SavedModel folders generator1, generator2, "
               "discriminator1, discriminator2 [, encoder]")

# our network name -> the original's folder; the encoder exists only with the cycle loss
FOLDERS = {"G1": "generator1", "G2": "generator2", "D1": "discriminator1", "D2": "discriminator2",
           "E": "encoder"}
REQUIRED = ("G1", "G2", "D1", "D2")
_LAYER = re.compile(r"^layer_with_weights-\d+$")
WEIGHT_NAMES = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance", "alpha")


def _model_dir(path):
    """A run folder, or one of its model folders standing for the run folder."""
    path = os.path.normpath(path)
    if os.path.basename(path) in FOLDERS.values() and os.path.isdir(os.path.join(path, "variables")):
        return os.path.dirname(path) or "."
    return path


def _has_model(folder):
    return os.path.isfile(os.path.join(folder, "saved_model.pb")) \
        or os.path.isdir(os.path.join(folder, "variables"))


def detect(path):
    if not os.path.isdir(path):
        return False
    root = _model_dir(path)
    return any(_has_model(os.path.join(root, FOLDERS[n])) for n in ("G1", "G2"))


# --- reading the checkpoints ----------------------------------------------------------------------

def read_layers(folder):
    """The weights of one saved model: a list, in model order, of {weight name: array} per layer."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    prefix = os.path.join(folder, "variables", "variables")
    if not os.path.isfile(prefix + ".index"):
        raise UserError(f"{folder} has no variables/variables.index; the SavedModel folder is incomplete "
                        "(copy the whole folder the original wrote)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        layers = [{name: reader.get_tensor(key) for name, key in keys.items()}
                  for keys in _layer_keys(graph, 0)]
    except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: a truncated data file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read the weights in {prefix} ({reason}); the folder is damaged or "
                        "incomplete") from None
    if not layers:
        raise UserError(f"{prefix} holds no Keras layer weights (layer_with_weights-*); not a model saved by "
                        "Keras 2 model.save")
    return layers


def _layer_keys(graph, node_id):
    """[{weight name: checkpoint key}] of the layers under `node_id`, in model order. The object graph is
    followed rather than the keys, because a weight is stored under one of its paths only: a nested
    model's weights (gan128_disc's Sequential) appear as `variables/<n>` of the outer model."""
    layers = []
    children = sorted((int(c.local_name.rsplit("-", 1)[1]), c.node_id)
                      for c in graph.nodes[node_id].children if _LAYER.match(c.local_name))
    for _, child in children:
        weights = {}
        for c in graph.nodes[child].children:
            if c.local_name in WEIGHT_NAMES:
                keys = [a.checkpoint_key for a in graph.nodes[c.node_id].attributes if a.name == "VARIABLE_VALUE"]
                weights[c.local_name] = keys[0]
        layers += [weights] if weights else _layer_keys(graph, child)
    return layers


def read_run_config(root):
    """`key: value` lines of the config.txt the original writes next to its models ({} if absent)."""
    path = os.path.join(root, "config.txt")
    config = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Model:"):
                    break  # the model summaries Main.py appends
                key, sep, value = line.partition(": ")
                if sep:
                    config[key.strip()] = value.strip()
    return config


# --- the architecture -----------------------------------------------------------------------------

def infer_config(layers, run_config, has_encoder):
    """Our scogan config from the generator's layers (and config.txt's noise_type)."""
    from vgrow_tf.models import coupled_gan

    g1 = layers["G1"] + [{}] * 3  # padded: a too-short model fails the checks below, not with IndexError
    dense_kernel, bn, alpha = g1[0].get("kernel"), g1[1].get("gamma"), g1[2].get("alpha")
    if dense_kernel is None or dense_kernel.ndim != 2 or bn is None or alpha is None:
        raise UserError("generator1 does not start with Dense, BatchNormalization, PReLU as the original's "
                        "gan32_gen_multi / gan128_gen_multi do; not an SCoGAN generator")
    z_dim, fmaps = dense_kernel.shape[0], bn.shape[0]
    deconvs = [layer["kernel"] for layer in g1 if layer.get("kernel") is not None and layer["kernel"].ndim == 4]
    if dense_kernel.shape[1] != 16 * fmaps or len(deconvs) < 2:
        raise UserError(f"generator1's layer shapes (dense {list(dense_kernel.shape)}, {len(deconvs)} "
                        "convolutions) are not those of an SCoGAN generator")
    arch = {3: "digits", 4: "faces"}.get(deconvs[0].shape[0])
    if arch is None:
        raise UserError(f"generator1's first deconvolution is {deconvs[0].shape[0]}x{deconvs[0].shape[1]}; "
                        "SCoGAN's generators use 3x3 (g_arch 32) or 4x4 (g_arch 128)")
    d_arch = "faces" if any("gamma" in layer for layer in layers["D1"]) else "digits"
    if d_arch != arch:
        raise UserError(f"generator is the {arch} architecture but discriminator1 the {d_arch} one; "
                        "only matching g_arch/d_arch pairs (32/32, 128/128) are supported")
    noise_type = run_config.get("noise_type", "uniform")
    if noise_type not in ("uniform", "normal"):
        raise UserError(f"config.txt says noise_type {noise_type}; only uniform and normal are supported")
    return coupled_gan.make_config("scogan", resolution=4 * 2 ** (len(deconvs) - 1),
                                   channels=deconvs[-1].shape[2], z_dim=z_dim, fmaps=fmaps, arch=arch,
                                   noise_type=noise_type, cycle=has_encoder,
                                   prelu="element" if alpha.ndim == 3 and alpha.shape[0] > 1 else "channel")


def weight_layers(network):
    """Our Keras layers that hold weights, in the order the original's model lists its layers."""
    blocks = list(network.trunk) + list(network.tail) if hasattr(network, "trunk") else list(network.blocks)
    for block in blocks:
        yield block.op
        if block.bn is not None:
            yield block.bn
        if block.prelu is not None:
            yield block.prelu


def assign(network, stored, label):
    """Copies the original's per-layer weights into `network`, checking names and shapes."""
    ours = list(weight_layers(network))
    if len(ours) != len(stored):
        raise UserError(f"{label} has {len(stored)} layers with weights; the inferred architecture has "
                        f"{len(ours)}: not a model of this SCoGAN architecture")
    for k, (layer, weights) in enumerate(zip(ours, stored)):
        variables = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
        if set(variables) != set(weights):
            raise UserError(f"{label} weight layer {k} holds {sorted(weights)}, expected {sorted(variables)}")
        for name, value in weights.items():
            if tuple(value.shape) != tuple(variables[name].shape):
                raise UserError(f"{label} weight layer {k} ({name}) has shape {list(value.shape)}, the "
                                f"inferred architecture {list(variables[name].shape)}: widths that do not "
                                "follow the original's ratios are not supported")
            variables[name].assign(np.asarray(value, np.float32))


def convert(path, **options):
    from vgrow_tf.interop import Imported
    from vgrow_tf.models import coupled_gan

    if not os.path.isdir(path):
        raise UserError(f"{path} is not a folder; pass the SCoGAN run folder holding generator1/, generator2/, "
                        "discriminator1/, discriminator2/ (and encoder/)")
    root = _model_dir(path)
    missing = [FOLDERS[n] for n in REQUIRED if not _has_model(os.path.join(root, FOLDERS[n]))]
    if missing:
        raise UserError(f"{root} lacks the SCoGAN model folder(s) {', '.join(missing)}; the original saves "
                        "generator1, generator2, discriminator1, discriminator2 (and encoder) side by side")
    has_encoder = _has_model(os.path.join(root, FOLDERS["E"]))
    names = list(REQUIRED) + (["E"] if has_encoder else [])
    layers = {n: read_layers(os.path.join(root, FOLDERS[n])) for n in names}
    run_config = read_run_config(root)
    if run_config.get("gan_type", "scogan") != "scogan":
        raise UserError(f"{root}/config.txt says gan_type {run_config['gan_type']}; only the scogan "
                        "trainer's models are supported")
    config = infer_config(layers, run_config, has_encoder)
    networks = coupled_gan.build_networks(config)
    for n in names:
        assign(networks[n], layers[n], f"{FOLDERS[n]}")
    summary = (f"SCoGAN {config['arch']} {config['resolution']} px, {config['channels']} channels, "
               f"z {config['z_dim']} ({config['noise_type']}), generator width {config['fmaps']}, "
               f"PReLU per {config['prelu']}" + (", with encoder" if has_encoder else ", no encoder"))
    return Imported(kind="scogan", config=config, networks=networks, arrays={}, summary=summary)

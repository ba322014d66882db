"""PGVGrow's TF1 Saver checkpoints (`networks-<num_img>.ckpt`: G, Gs, D and both Adams' state).

Read with `tf.train.load_checkpoint` (names and arrays only; no graph, no TF1). Accepted paths: the
prefix `networks-02400256.ckpt`, any of its files (`.index`, `.data-…`, `.meta`), or the run directory
(its `checkpoint` state file names the latest; without one, the highest `networks-*.ckpt`).

Mapping (original scope -> our layer; both keep NHWC activations, HWIO kernels, [in, out] dense
weights, and the unscaled equalised-learning-rate values, scaled by the same constants at run time):

    generator/ and generator_smoothing/ -> G and Gs        discriminator/ -> D
    4x4/Dense/{Weight,Bias}  -> dense4/kernel, bias4       ItoF_<r>x<r>     -> from_rgb<r>
    4x4/Conv                 -> conv4                      <r>x<r>/Conv1,2  -> conv<r>_0, conv<r>_1
    <r>x<r>/Conv1, Conv2     -> conv<r>_0, conv<r>_1       4x4/Conv         -> conv4
    FtoI_<r>x<r>             -> to_rgb<r>                  4x4/Dense1, 2    -> dense4, logit

The 32x32 self-attention block (present when resolution >= 32) starts at zero and stays an exact
identity in PGVGrow's training (its output is gamma * o with gamma and o both zero, so every gradient
through it is zero); it is dropped after checking that gamma is zero. Adam slots: `<var>/opt_g`,
`<var>/opt_g_1` (G) and `<var>/opt_d`, `<var>/opt_d_1` (D) are the first and second moments;
`beta2_power` belongs to opt_d and `beta2_power_1` to opt_g (opt_d is created first), and holds
beta2 ** (steps + 1).
"""
import glob
import math
import os
import re

import numpy as np
import tensorflow as tf

from vgrow_tf.errors import UserError
from vgrow_tf.interop import Imported, read_tf_checkpoint
from vgrow_tf.training import schedule

FORMAT = "pgvgrow_ckpt"
DESCRIPTION = "PGVGrow TF1 checkpoint networks-<num_img>.ckpt (G, Gs, D, Adam state)"
KIND = "vgrow_pg"
SCOPES = {"G": "generator", "Gs": "generator_smoothing", "D": "discriminator"}
ADAM_SLOTS = {"G": ("opt_g", "opt_g_1"), "D": ("opt_d", "opt_d_1")}   # (first, second moment)
ADAM_BETA2_POWER = {"D": "beta2_power", "G": "beta2_power_1"}
ORIGINAL_BETA2 = 0.99            # train.py's AdamOptimizer(beta2=0.99) for both networks
ORIGINAL_SCHEDULE = dict(init_resolution=4, dur_nimg=600_000)  # train.py's flag defaults
MARKERS = ("generator/4x4/Dense/Weight", "discriminator/4x4/Dense2/Weight")
ATTENTION = re.compile(r"(generator|generator_smoothing|discriminator)/32x32/Attention/")
OPTIMIZER_NAMES = re.compile(r"(.*/opt_[dg](_1)?|beta[12]_power(_1)?)$")


# --- finding and opening the checkpoint ----------------------------------------------------------

def _strip_suffix(path):
    path = re.sub(r"\.data-\d{5}-of-\d{5}$", "", path)
    return re.sub(r"\.(index|meta)$", "", path)


def resolve_prefix(path):
    """The checkpoint prefix `path` names, or None."""
    if os.path.isdir(path):
        state = tf.train.get_checkpoint_state(path)
        if state and state.model_checkpoint_path:  # relative, or absolute from another machine
            for candidate in (state.model_checkpoint_path,
                              os.path.join(path, os.path.basename(state.model_checkpoint_path))):
                if os.path.exists(candidate + ".index"):
                    return candidate
        found = sorted(glob.glob(os.path.join(path, "networks-*.ckpt.index")), key=_num_img_or_zero)
        return found[-1][:-len(".index")] if found else None
    prefix = _strip_suffix(path)
    return prefix if os.path.isfile(prefix + ".index") else None


def _num_img_or_zero(path):
    return num_img_of(path) or 0


def num_img_of(prefix):
    """The image count in train.py's file name `networks-%08d.ckpt`, or None."""
    match = re.fullmatch(r"networks-(\d+)\.ckpt", os.path.basename(_strip_suffix(prefix)))
    return int(match.group(1)) if match else None


def detect(path):
    prefix = resolve_prefix(path)
    if prefix is None:
        return False
    try:
        names = read_tf_checkpoint(prefix)[1]
    except UserError:
        return False
    return all(m in names for m in MARKERS)


def open_checkpoint(path):
    """(prefix, reader, {name: shape}) of a PGVGrow checkpoint; UserError if it is none."""
    prefix = resolve_prefix(path)
    if prefix is None:
        where = "holds no checkpoint (no 'checkpoint' file, no networks-*.ckpt.index)" if os.path.isdir(path) \
            else "is not a TF checkpoint (no .index file beside it)"
        raise UserError(f"{path} {where}; give PGVGrow's networks-<num_img>.ckpt prefix or its run directory")
    reader, shapes = read_tf_checkpoint(prefix)
    missing = [m for m in MARKERS if m not in shapes]
    if missing:
        raise UserError(f"{prefix} is a TF checkpoint but not PGVGrow's: it has no {missing[0]} "
                        "(a checkpoint of another project?)")
    return prefix, reader, shapes


# --- architecture ---------------------------------------------------------------------------------

def infer_architecture(shapes):
    """dict(resolution, channels, z_dim, fmaps, attention) from the variable names and shapes."""
    sizes = [int(m.group(1)) for name in shapes
             for m in [re.fullmatch(r"generator/FtoI_(\d+)x\1/Kernel", name)] if m]
    if not sizes:
        raise UserError("PGVGrow checkpoint without generator/FtoI_*/Kernel variables; it is incomplete")
    resolution = max(sizes)
    z_dim, width = shapes["generator/4x4/Dense/Weight"]
    fmaps = width // 16
    return dict(resolution=resolution, channels=int(shapes[f"generator/FtoI_{resolution}x{resolution}/Kernel"][-1]),
                z_dim=int(z_dim), fmaps=int(fmaps), attention=any(ATTENTION.match(n) for n in shapes))


def original_name(network, weight_path):
    """The checkpoint name of one of our weights, e.g. ("D", "logit/kernel") -> discriminator/4x4/Dense2/Weight."""
    scope = SCOPES[network]
    if weight_path == "bias4":
        return f"{scope}/4x4/Dense/Bias"
    layer, leaf = weight_path.split("/")
    dense = {"dense4": "4x4/Dense1" if network == "D" else "4x4/Dense", "logit": "4x4/Dense2"}
    if layer in dense:
        return f"{scope}/{dense[layer]}/{'Weight' if leaf == 'kernel' else 'Bias'}"
    leaf = {"kernel": "Kernel", "bias": "Bias"}[leaf]
    if layer == "conv4":
        return f"{scope}/4x4/Conv/{leaf}"
    match = re.fullmatch(r"conv(\d+)_([01])", layer)
    if match:
        r = match.group(1)
        return f"{scope}/{r}x{r}/Conv{int(match.group(2)) + 1}/{leaf}"
    match = re.fullmatch(r"(to_rgb|from_rgb)(\d+)", layer)
    if match:
        r = match.group(2)
        return f"{scope}/{'FtoI' if match.group(1) == 'to_rgb' else 'ItoF'}_{r}x{r}/{leaf}"
    raise ValueError(f"no PGVGrow name for {network}/{weight_path}")


def _weight_path(network_name, weight):
    return weight.path.split("/", 1)[1] if weight.path.startswith(network_name + "/") else weight.path


def weight_names(networks):
    """[(network, our weight, checkpoint name)] for every weight of G, Gs and D."""
    return [(name, w, original_name(name, _weight_path(networks[name].name, w)))
            for name in SCOPES for w in networks[name].weights]


def _check_complete(prefix, shapes, pairs):
    missing = [ckpt for _, _, ckpt in pairs if ckpt not in shapes]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{prefix} lacks {missing[0]}{more}; the checkpoint is incomplete (or of a modified "
                        "PGVGrow); use a complete networks-*.ckpt written by train.py")
    for _, w, ckpt in pairs:
        if tuple(shapes[ckpt]) != tuple(w.shape):
            raise UserError(f"{prefix}: {ckpt} has shape {tuple(shapes[ckpt])}, expected {tuple(w.shape)} "
                            "for the architecture inferred from the other variables")
    known = {ckpt for _, _, ckpt in pairs}
    unknown = [n for n in shapes if n not in known and not OPTIMIZER_NAMES.match(n) and not ATTENTION.match(n)]
    if unknown:
        raise UserError(f"{prefix} has variables this port does not know ({unknown[0]}, {len(unknown)} in all); "
                        "it is not a checkpoint of the PGVGrow code this port follows")


def _check_attention(prefix, reader, shapes):
    gammas = [n for n in shapes if ATTENTION.match(n) and n.endswith("/Attention/Gamma")]
    largest = max((float(np.max(np.abs(reader.get_tensor(n)))) for n in gammas), default=0.0)
    if largest != 0.0:
        raise UserError(f"{prefix}: the 32x32 self-attention block has gamma {largest:g} (PGVGrow's training "
                        "keeps it at 0); this port omits that block, so this model cannot be converted exactly")


def _read(prefix, reader, name):
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError) as e:  # the reader raises IndexError on short reads
        raise UserError(f"{prefix}: cannot read {name} ({type(e).__name__}); the .data file is truncated "
                        "or corrupt; copy the checkpoint again") from None


# --- conversion -------------------------------------------------------------------------------------

def _lod(prefix, resolution, lod, init_resolution, dur_nimg):
    top = math.log2(resolution / 4)
    if lod is not None:
        if not 0 <= float(lod) <= top:
            raise UserError(f"lod {lod} is outside 0..{top:g} for a {resolution} px model")
        return float(lod), f"lod {float(lod):g} (given)"
    num_img = num_img_of(prefix)
    if num_img is None:
        return 0.0, "lod 0 (no image count in the file name; pass lod= to choose another)"
    value = schedule.lod_at(num_img, resolution, init_resolution, dur_nimg)
    return value, f"lod {value:g} (train.py's schedule at {num_img} images)"


def load_networks(path, networks):
    """Assigns the checkpoint's G, Gs and D into built networks (checked complete); returns the prefix."""
    prefix, reader, shapes = open_checkpoint(path)
    pairs = weight_names(networks)
    _check_complete(prefix, shapes, pairs)
    _check_attention(prefix, reader, shapes)
    for _, w, ckpt in pairs:
        w.assign(_read(prefix, reader, ckpt))
    return prefix


def convert(path, lod=None, init_resolution=ORIGINAL_SCHEDULE["init_resolution"],
            dur_nimg=ORIGINAL_SCHEDULE["dur_nimg"], **unused):
    """PGVGrow checkpoint -> vgrow_pg networks. The lod (which resolution/fade G and D work at) is `lod`,
    else train.py's schedule at the image count in the name (`init_resolution`, `dur_nimg` as trained),
    else 0 (full resolution)."""
    from vgrow_tf.models import vgrow_pg

    prefix, _, shapes = open_checkpoint(path)
    arch = infer_architecture(shapes)
    lod, lod_note = _lod(prefix, arch["resolution"], lod, init_resolution, dur_nimg)
    config = vgrow_pg.make_config(arch["resolution"], arch["channels"], arch["z_dim"], arch["fmaps"], lod=lod)
    networks = vgrow_pg.build_networks(config)
    load_networks(prefix, networks)
    attention = "self-attention at 32x32 (gamma 0, dropped)" if arch["attention"] else "no self-attention"
    summary = (f"PGVGrow {os.path.basename(prefix)}: {arch['resolution']} px, {arch['channels']} channel(s), "
               f"z {arch['z_dim']}, {arch['fmaps']} feature maps, {attention}; {lod_note}")
    return Imported(KIND, config, networks, {}, summary)


def architecture_of(path):
    """(prefix, dict(resolution, channels, z_dim, fmaps, attention), num_img or None) without building."""
    prefix, _, shapes = open_checkpoint(path)
    return prefix, infer_architecture(shapes), num_img_of(prefix)


def load_optimizer_state(path, networks, optimizers):
    """Copies both Adams' moments and step counts into Keras Adams built over G's and D's variables.

    `optimizers` maps "G" and "D" to keras Adam optimizers (a LossScaleOptimizer's inner one is used).
    TF1 keeps beta2 ** (steps + 1) instead of a step count; Keras keeps the count of steps done.
    """
    prefix, reader, shapes = open_checkpoint(path)
    for net_name, optimizer in optimizers.items():
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        first, second = ADAM_SLOTS[net_name]
        for w in networks[net_name].trainable_variables:
            ckpt = original_name(net_name, _weight_path(networks[net_name].name, w))
            if f"{ckpt}/{first}" not in shapes or f"{ckpt}/{second}" not in shapes:
                raise UserError(f"{prefix} lacks the Adam slots of {ckpt}; the checkpoint is incomplete")
            index = optimizer._get_variable_index(w)
            optimizer._momentums[index].assign(_read(prefix, reader, f"{ckpt}/{first}"))
            optimizer._velocities[index].assign(_read(prefix, reader, f"{ckpt}/{second}"))
        power = float(_read(prefix, reader, ADAM_BETA2_POWER[net_name]))
        steps = int(round(math.log(power) / math.log(ORIGINAL_BETA2))) - 1 if 0 < power < 1 else 0
        optimizer.iterations.assign(max(steps, 0))

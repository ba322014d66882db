"""The GLO TF reference's models (clvrai/Generative-Latent-Optimization-Tensorflow): its tf.train.Saver
checkpoint `model-<step>` plus the latent codes, which that code keeps in its dataset file.

- Checkpoint (read with `tf.train.load_checkpoint`, no graph): `g/deconv<k>/conv2d/{w,biases}` for the
  blocks k = 1..5 (HWIO 4x4 kernels; widths and z_dim from the shapes) and, for every block but the
  last, BatchNorm variables `g/BatchNorm`, `g/BatchNorm_1`, ... (outside the block's scope in the
  original; `g/BatchNorm_<k-1>` belongs to block k). Adam slots, `learning_rate` and `global_step` are
  not carried over (only the step is reported).
- Codes: `datasets/<name>/data.hdf5`, one group per example (`str(i)`) with `image` (uint8 HWC),
  `code` (the initial code) and, once trained, `update` (the learned code, read in preference, as the
  original's Dataset.get_data does); `id.txt` beside it lists the ids. The original runs from its
  repository root with checkpoints in `train_dir/<run>/`, so the file is looked for beside the
  checkpoint and two levels up (`datasets/*/data.hdf5`); `data_file=` names it explicitly.
- The original's train split (ids shuffled by RandomState(123), the first 60,000 / 73,257 / 50,000 for
  MNIST / SVHN / CIFAR-10) is kept as `arrays["train_order"]`, and which examples got a learned code
  as `arrays["learned"]`; GLO sampling fits its Gaussian to the learned codes only.
"""
import glob
import os

import numpy as np

from vgrow_tf.data.glo_hdf5 import read_codes
from vgrow_tf.errors import UserError
from vgrow_tf.interop import Imported, read_tf_checkpoint

FORMAT = "glo_tf_ckpt"
DESCRIPTION = "GLO TF reference: Saver checkpoint model-<step> (+ its dataset's data.hdf5 latent codes)"
KIND = "glo"
FIRST_KERNEL = "g/deconv1/conv2d/w"
# datasets/<name>.py: the number of shuffled ids that form the train split.
TRAIN_SPLIT = {"mnist": 60000, "svhn": 73257, "cifar10": 50000}
SPLIT_SEED = 123


# --- finding the files ---------------------------------------------------------------------------

def _strip_suffix(path):
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    if ".data-" in os.path.basename(path):
        return path[:path.rindex(".data-")]
    return path


def checkpoint_prefix(path):
    """The checkpoint prefix `path` names (the prefix, one of its files, or a directory with a
    `checkpoint` state file or model-*.index files), or None."""
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.isfile(state):
            named = _state_checkpoint(state)
            for candidate in (named, os.path.join(path, os.path.basename(named or ""))):
                if candidate and os.path.isfile(_full(path, candidate) + ".index"):
                    return _full(path, candidate)
        indexes = glob.glob(os.path.join(path, "model-*.index"))
        if not indexes:
            return None
        return max(indexes, key=lambda p: _step_of(p[:-len(".index")]))[:-len(".index")]
    prefix = _strip_suffix(path)
    return prefix if os.path.isfile(prefix + ".index") else None


def _full(directory, name):
    return name if os.path.isabs(name) else os.path.join(directory, name)


def _state_checkpoint(state_file):
    """model_checkpoint_path of a TF checkpoint state file (a text proto of one-line fields)."""
    try:
        with open(state_file) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model_checkpoint_path":
                    return value.strip().strip('"')
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _step_of(prefix):
    tail = prefix.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def detect(path):
    prefix = checkpoint_prefix(path)
    if prefix is None:
        return False
    try:
        return FIRST_KERNEL in read_tf_checkpoint(prefix)[1]
    except UserError:
        return False


def data_file_candidates(prefix):
    """The data.hdf5 files of the original's layout near a checkpoint (best first)."""
    ckpt_dir = os.path.dirname(os.path.abspath(prefix))
    candidates = [os.path.join(ckpt_dir, "data.hdf5")]
    for root in (ckpt_dir, os.path.dirname(os.path.dirname(ckpt_dir))):
        candidates += sorted(glob.glob(os.path.join(root, "datasets", "*", "data.hdf5")))
    found = [c for c in dict.fromkeys(candidates) if os.path.isfile(c)]
    run = os.path.basename(ckpt_dir).lower()  # the original names run dirs <prefix>-<DATASET>_lr_<lr>-<time>
    named = [c for c in found if f"-{os.path.basename(os.path.dirname(c)).lower()}_lr_" in run]
    return named or found


# --- the original's train split ---------------------------------------------------------------------

def train_order(ids, dataset_name):
    """Row numbers of the original's train split, in its shuffled order (datasets/<name>.py)."""
    shuffled = list(ids)
    np.random.RandomState(SPLIT_SEED).shuffle(shuffled)
    row = {k: r for r, k in enumerate(ids)}
    count = TRAIN_SPLIT.get(dataset_name, len(ids))
    return np.array([row[k] for k in shuffled[:count]], np.int64)


# --- the checkpoint --------------------------------------------------------------------------------

def bn_scope(block):
    """The BatchNorm scope of block k (1-based): TF's unique-name order of the bn_act calls."""
    return "g/BatchNorm" if block == 1 else f"g/BatchNorm_{block - 1}"


def _read_generator(prefix):
    reader, shapes = read_tf_checkpoint(prefix)
    if FIRST_KERNEL not in shapes:
        raise UserError(f"{prefix} is a TF checkpoint but not the GLO reference's (no {FIRST_KERNEL})")
    blocks = 0
    while f"g/deconv{blocks + 1}/conv2d/w" in shapes:
        blocks += 1
    names = [f"g/deconv{k}/conv2d/{v}" for k in range(1, blocks + 1) for v in ("w", "biases")]
    names += [f"{bn_scope(k)}/{v}" for k in range(1, blocks)
              for v in ("gamma", "beta", "moving_mean", "moving_variance")]
    missing = [n for n in names if n not in shapes]
    if missing:
        raise UserError(f"{prefix} lacks {len(missing)} generator variable(s) ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); the checkpoint is incomplete")
    import tensorflow as tf
    try:
        values = {n: reader.get_tensor(n) for n in names}
        step = int(reader.get_tensor("global_step")) if "global_step" in shapes else None
    except (tf.errors.OpError, IndexError) as e:  # a short .data file: "Read less bytes than requested"
        raise UserError(f"{prefix}: cannot read the variable values (the .data file is truncated or corrupt: "
                        f"{str(e).splitlines()[0][:120]})") from None
    return blocks, values, step


def _architecture(prefix, blocks, values):
    kernels = [values[f"g/deconv{k}/conv2d/w"] for k in range(1, blocks + 1)]
    for k, w in enumerate(kernels, 1):
        if w.shape[:2] != (4, 4) or (k > 1 and w.shape[2] != kernels[k - 2].shape[3]):
            raise UserError(f"{prefix}: g/deconv{k}/conv2d/w has shape {list(w.shape)}; the reference "
                            "generator has 4x4 kernels chained block to block")
    return int(kernels[0].shape[2]), [int(w.shape[3]) for w in kernels]


def _assign(generator, blocks, values):
    for k in range(1, blocks + 1):
        conv = generator.convs[k - 1]
        conv.kernel.assign(values[f"g/deconv{k}/conv2d/w"])
        conv.bias.assign(values[f"g/deconv{k}/conv2d/biases"])
        if k < blocks:
            bn, scope = generator.bns[k - 1], bn_scope(k)
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                getattr(bn, name).assign(values[f"{scope}/{name}"])


def convert(path, data_file=None, **unused):
    """The reference checkpoint at `path` (prefix, one of its files, or its directory) and the codes in
    `data_file` (found beside it in the original's layout when not given) as a GLO snapshot."""
    from vgrow_tf.models import glo
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise UserError(f"{path}: no TF checkpoint found (give model-<step>, its .index, or the train dir "
                        "holding the 'checkpoint' file)")
    blocks, values, step = _read_generator(prefix)
    z_dim, widths = _architecture(prefix, blocks, values)
    if data_file is None:
        found = data_file_candidates(prefix)
        if len(found) != 1:
            raise UserError(f"{'several' if found else 'no'} GLO latent-code files found for {prefix}"
                            f"{' (' + ', '.join(found) + ')' if found else ''}: the reference keeps them in "
                            "datasets/<name>/data.hdf5; name it (data_file= / generate_samples.py "
                            "--dataset=.../data.hdf5)")
        data_file = found[0]
    ids, codes, learned, (height, width, channels) = read_codes(data_file)
    if codes.shape[1] != z_dim or channels != widths[-1] or height != width:
        raise UserError(f"{data_file} (codes of size {codes.shape[1]}, {height}x{width}x{channels} images) "
                        f"does not belong to {prefix} (z {z_dim}, {widths[-1]} channels, square images)")
    name = os.path.basename(os.path.dirname(os.path.abspath(data_file))).lower()
    config = glo.make_config(2 ** blocks, widths[-1], z_dim=z_dim, arch="reference", num_latents=len(ids),
                             latent_projection="sphere", loss="local_moment",
                             dataset=os.path.abspath(data_file), widths=widths, output_size=height)
    networks = glo.build_networks(config)
    _assign(networks["G"], blocks, values)
    arrays = {"latents": codes, "learned": learned, "train_order": train_order(ids, name)}
    summary = (f"GLO reference generator {2 ** blocks} px -> {height} px, {widths[-1]} channel(s), z {z_dim}, "
               f"widths {widths}{f', step {step}' if step is not None else ''}; {len(ids)} codes "
               f"({int(learned.sum())} learned) from {data_file}")
    return Imported(KIND, config, networks, arrays, summary)

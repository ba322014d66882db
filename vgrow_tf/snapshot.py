"""One-file snapshots: the model kind, its architecture config and the weights of every network.

Layout (HDF5): attrs `format` ("vgrow_tf-snapshot-1"), `kind`, `config` (JSON); group
`networks/<name>` with one dataset per weight, in the order of `model.weights` (attr `path` is kept
for readers); group `arrays/<name>` for extra numpy arrays (e.g. GLO's latent table).
Built in memory, written to a temporary name in one call and renamed, so a crash never leaves a
truncated snapshot in place. HDF5 keeps no checksums, so the config and every weight carry a `crc32`
attribute, checked on load (files without them load unchecked).
"""
import dataclasses
import glob
import io
import json
import os
import re
import zlib

import h5py
import numpy as np

from vgrow_tf.errors import UserError

FORMAT = "vgrow_tf-snapshot-1"


def save(path, kind, config, networks, arrays=None):
    # One write call: the window in which a killed process leaves its temporary file is as short as it can be.
    buffer = io.BytesIO()
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(buffer, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["kind"] = kind
            f.attrs["config"] = json.dumps(config, sort_keys=True)
            f.attrs["crc32"] = _crc(f.attrs["config"])
            for name, model in networks.items():
                group = f.create_group(f"networks/{name}")
                for i, w in enumerate(model.weights):
                    value = np.asarray(w.numpy())
                    ds = group.create_dataset(f"{i:05d}", data=value)
                    ds.attrs["path"] = getattr(w, "path", w.name)
                    ds.attrs["crc32"] = _crc(value)
            for name, value in (arrays or {}).items():
                f.create_dataset(f"arrays/{name}", data=np.asarray(value))
        with open(tmp, "wb") as out:
            out.write(buffer.getbuffer())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _crc(value):
    data = value.encode("utf-8") if isinstance(value, str) else np.ascontiguousarray(value).tobytes()
    return np.uint32(zlib.crc32(data))


def _check_crc(path, what, stored, value):
    if stored is not None and int(stored) != int(_crc(value)):
        raise UserError(f"snapshot {path} is corrupt ({what} does not match its checksum); use an earlier snapshot")


def read_header(path):
    """(kind, config) of a snapshot without building anything; UserError if unreadable."""
    if not os.path.isfile(path):
        raise UserError(f"snapshot {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise UserError(f"{path} is not a vgrow_tf snapshot (format attribute missing)")
            _check_crc(path, "its config", f.attrs.get("crc32"), str(f.attrs["config"]))
            return str(f.attrs["kind"]), json.loads(f.attrs["config"])
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"snapshot {path} is corrupt or truncated ({e.__class__.__name__}); "
                        "use an earlier snapshot") from None


def assign_weights(model, group, path, name):
    stored = [group[k] for k in sorted(group.keys())]
    if len(stored) != len(model.weights):
        raise UserError(f"snapshot {path}: network '{name}' has {len(stored)} weights, "
                        f"the rebuilt network {len(model.weights)}; the snapshot is of another architecture")
    for w, ds in zip(model.weights, stored):
        if tuple(ds.shape) != tuple(w.shape):
            raise UserError(f"snapshot {path}: weight {ds.attrs.get('path')} has shape {ds.shape}, "
                            f"expected {tuple(w.shape)}")
        value = ds[()]
        _check_crc(path, f"weight {ds.attrs.get('path')} of network '{name}'", ds.attrs.get("crc32"), value)
        w.assign(value)


class Snapshot:
    """Networks rebuilt from a snapshot file, with the family's sampling functions bound to them."""

    def __init__(self, path, kind, config, networks, arrays, family):
        self.path, self.kind, self.config = path, kind, config
        self.networks, self.arrays, self.family = networks, arrays, family

    @property
    def latent_dim(self):
        return self.family.latent_dim(self.config)

    def generate(self, latents, **kwargs):
        """Images (NHWC, [-1, 1]) from the EMA generator for the given latents."""
        return self.family.generate(self.networks, self.config, latents, **kwargs)

    def has_discriminator(self):
        names = getattr(self.family, "DISCRIMINATORS", ("D",))  # e.g. a coupled GAN's D1 and D2
        return hasattr(self.family, "discriminator_logit") and all(n in self.networks for n in names)

    def discriminator_logit(self, images, **kwargs):
        if not self.has_discriminator():
            raise UserError(f"a {self.kind} snapshot has no discriminator; train a density-ratio "
                            "corrector (train.py --model=dgflow_corrector) and use it instead")
        return self.family.discriminator_logit(self.networks, self.config, images, **kwargs)


def is_native(path):
    """True for one of our snapshot files (HDF5); False for anything else, e.g. an original model."""
    return os.path.isfile(path) and h5py.is_hdf5(path)


@dataclasses.dataclass(frozen=True)
class Source:
    """What a model path names: the file to read and its format (None: one of our snapshot files)."""

    path: str
    source_format: str = None


_OUR_CHECKPOINT = re.compile(r"^(ckpt-\d+(\.index|\.data-\d{5}-of-\d{5})?|checkpoint)$")


def _training_checkpoint_run_dir(path):
    """The run directory when `path` is one of train.py's checkpoints (a file of a run's checkpoints/
    folder, or that folder: what --resume reads), else None."""
    path = os.path.normpath(path)
    if os.path.isdir(path):  # a folder named checkpoints only in a run directory
        if os.path.basename(path) != "checkpoints" or not os.path.isfile(os.path.join(path, "..", "run.json")):
            return None
        return os.path.dirname(path) or "."
    inner = os.path.dirname(os.path.abspath(path))
    if not _OUR_CHECKPOINT.match(os.path.basename(path)) or os.path.basename(inner) != "checkpoints":
        return None
    return os.path.dirname(os.path.dirname(path)) or "."


def resolve(path, flag="--snapshot", source_format=None, announce=print):
    """The one answer to "what model does this path name", for every program that reads a model.

    Takes one of our snapshots (.h5), a run directory (its newest network-*.h5), or a model saved by an
    original code in any form its importer accepts (see vgrow_tf.interop: a PGVGrow `networks-N.ckpt`
    prefix, its .index/.data file or run directory; a GLO-TF checkpoint folder or `model-N` prefix; a
    SCoGAN run folder or one of its model folders; an msg-stylegan-tf pickle). `source_format` (--kind)
    names the original format instead of detecting it. Refuses, naming `flag`, a path that does not
    exist, one of train.py's training checkpoints (what --resume reads) and anything of no known format.
    Resolving a resolved path gives it back unchanged.
    """
    from vgrow_tf import interop
    named = f"{flag} {path}" if flag else path
    if not path:
        raise UserError(f"{flag} is empty; give a snapshot file (network-*.h5), a run directory or an original model")
    exists = os.path.exists(path) or os.path.isfile(path + ".index")
    if not exists:
        raise UserError(f"{named} does not exist")
    if source_format:
        if source_format not in interop.FORMAT_MODULES:
            raise UserError(f"--kind={source_format} is no known format; known: {', '.join(interop.FORMAT_MODULES)}")
        if not interop.format_module(source_format).detect(path):
            actual = "a vgrow_tf snapshot" if is_native(path) else interop.detect(path)
            if actual:  # else the importer says what is wrong (a truncated index, a missing variable, ...)
                raise UserError(f"{named} is not a {source_format} model: it is {actual}; drop --kind to "
                                "detect the format")
        return Source(path, source_format)
    if is_native(path):
        return Source(path)
    found = interop.detect(path)
    if found:
        return Source(path, found)
    run_dir = _training_checkpoint_run_dir(path)
    if run_dir is not None:
        raise UserError(f"{named} is a training checkpoint (what train.py --resume reads), not a snapshot; "
                        f"give a network-*.h5 file of the run, e.g. {os.path.join(run_dir, 'network-final.h5')}")
    if os.path.isdir(path):
        snapshots = glob.glob(os.path.join(path, "network-*.h5"))
        if snapshots:
            newest = max(snapshots, key=lambda p: (os.path.getmtime(p), p.endswith("network-final.h5")))
            if announce:
                announce(f"{path} is a run directory; using its latest snapshot {newest}", flush=True)
            return Source(newest)
        if os.path.isfile(os.path.join(path, "run.json")):
            raise UserError(f"{named} is a run directory without snapshots yet (network-*.h5); "
                            "train longer or give a snapshot file")
        raise UserError(f"{named} is a directory holding no snapshot (network-*.h5) and no model of an "
                        f"original code ({', '.join(interop.FORMAT_MODULES)})")
    raise UserError(f"{named} is neither a vgrow_tf snapshot nor a model file of an original code "
                    f"({', '.join(interop.FORMAT_MODULES)}); pass --kind to name its format")


def _check_kind(path, kind, expect_kind):
    kinds = (expect_kind,) if isinstance(expect_kind, str) else expect_kind
    if kinds and kind not in kinds:
        raise UserError(f"{path} is a '{kind}' snapshot; this needs {' or '.join(kinds)}")


def load(path, expect_kind=None, source_format=None, flag="--snapshot", **import_options):
    """Any model `resolve` accepts: our snapshot file, or a model saved by an original code (converted in
    memory, see interop)."""
    from vgrow_tf import models

    source = resolve(path, flag, source_format)
    path = source.path
    if source.source_format:
        from vgrow_tf import interop
        imported = interop.load(path, source.source_format, **import_options)
        _check_kind(path, imported.kind, expect_kind)
        return Snapshot(path, imported.kind, imported.config, imported.networks, imported.arrays,
                        models.get_family(imported.kind))
    kind, config = read_header(path)
    _check_kind(path, kind, expect_kind)
    family = models.get_family(kind)
    try:
        networks = family.build_networks(config)
    except (KeyError, TypeError, ValueError) as e:  # a damaged config of a file without checksums
        raise UserError(f"snapshot {path} has a config this version cannot build ({e!r}); "
                        "it is corrupt or of another version") from None
    try:
        with h5py.File(path, "r") as f:
            for name, model in networks.items():
                if f"networks/{name}" not in f:
                    raise UserError(f"snapshot {path} lacks network '{name}'")
                assign_weights(model, f[f"networks/{name}"], path, name)
            arrays = {k: f[f"arrays/{k}"][()] for k in f.get("arrays", {}).keys()}
    except (OSError, KeyError, ValueError) as e:  # h5py's words for damaged metadata
        raise UserError(f"snapshot {path} is corrupt or truncated ({e}); use an earlier snapshot") from None
    return Snapshot(path, kind, config, networks, arrays, family)

"""Reference statistics / features of the real data, cached on disk.

Files live in `<cache_dir>/ref/` (default ~/.cache/vgrow_tf, `VGROW_CACHE_DIR` or `--cache_dir`),
named `<md5>-<dataset>-<what>.npz`, where the md5 covers the dataset directory, a fingerprint of its
tfrecord file (size and mtime, so a rewritten dataset is recomputed), the feature network and its
weights digest, the resolution, the image count, the real-sampling mode and mirroring. FID statistics
files hold `mu` and `sigma` (float64), the keys TTUR, pytorch-fid and clean-fid use, so they can be
exchanged with those tools (`--ref_stats FILE`). Files are written to a temporary name and renamed.
"""
import hashlib
import json
import os

import numpy as np

from vgrow_tf.errors import UserError, require_file
from vgrow_tf.metrics import features as features_lib

FORMAT = 1


def dataset_fingerprint(info):
    path = info.files[info.resolution]
    st = os.stat(path)
    return {"path": os.path.abspath(info.path), "file": os.path.basename(path), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "resolution": info.resolution, "channels": info.channels}


def cache_key(**items):
    text = json.dumps(dict(items, format=FORMAT), sort_keys=True, default=str)
    return hashlib.md5(text.encode()).hexdigest()


def cache_path(cache_dir, key, dataset_name, what):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name)
    return os.path.join(cache_dir or features_lib.cache_dir(), "ref", f"{key}-{safe}-{what}.npz")


def save_npz(path, **arrays):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_npz(path, keys):
    try:
        with np.load(path) as f:
            return {k: f[k] for k in keys}
    except (OSError, KeyError, ValueError):
        return None


def load_ref_stats(path):
    """(mu, sigma) from a TTUR / pytorch-fid / clean-fid .npz (keys mu, sigma)."""
    require_file(path, "--ref_stats file")
    try:
        with np.load(path) as f:
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"--ref_stats {path} is not an .npz with arrays mu and sigma ({e})") from None
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise UserError(f"--ref_stats {path}: mu {mu.shape} and sigma {sigma.shape} do not match")
    return mu, sigma

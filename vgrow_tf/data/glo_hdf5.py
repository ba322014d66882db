"""The GLO TF reference's dataset file `data.hdf5` (written by its download.py, updated by its trainer):
one group per example, named by its id, holding `image` (uint8 HWC), `code` (the initial code, float64)
and, once the example was trained on, `update` (the learned code, float32); `id.txt` beside the file
lists the ids (0..N-1 in download.py's order: train images, then test images). Read-only here.
"""
import os

import h5py
import numpy as np

from vgrow_tf.errors import UserError


def open_data(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"cannot read the GLO codes file {path} ({e.__class__.__name__}: truncated or not "
                        "HDF5); pass the reference's datasets/<name>/data.hdf5") from None


def example_ids(data, path):
    """The example ids in id.txt order (download.py writes 0..N-1), else the groups sorted as integers."""
    id_file = os.path.join(os.path.dirname(os.path.abspath(path)), "id.txt")
    if os.path.isfile(id_file):
        with open(id_file) as f:
            ids = [line.strip() for line in f if line.strip()]
    else:
        ids = sorted(data.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    missing = [i for i in ids if i not in data or "image" not in data[i]]
    if not ids or missing:
        raise UserError(f"{path} is not a GLO reference data file: "
                        + (f"example '{missing[0]}' has no image group" if missing else "no examples"))
    return ids


def read_codes(path):
    """(ids, codes [N, d] float32 as Dataset.get_data returns them, learned [N] bool, image shape)."""
    with open_data(path) as data:
        ids = example_ids(data, path)
        try:
            learned = np.array(["update" in data[i] for i in ids])
            codes = np.stack([np.asarray(data[i]["update" if has else "code"][()], np.float32)
                              for i, has in zip(ids, learned)])
        except KeyError:
            raise UserError(f"{path}: an example has neither 'code' nor 'update'; is it a GLO data.hdf5?") \
                from None
        shape = tuple(data[ids[0]]["image"].shape)
    return ids, codes, learned, shape


def read_images(path, start=0, stop=None):
    """Examples [start, stop) of a reference data.hdf5 as the original feeds them, image/255*2-1 (NHWC)."""
    with open_data(path) as data:
        ids = example_ids(data, path)[start:stop]
        if not ids:
            raise UserError(f"{path} has no examples in [{start}, {stop})")
        return np.stack([(data[i]["image"][()] / 255.0 * 2 - 1).astype(np.float32) for i in ids])

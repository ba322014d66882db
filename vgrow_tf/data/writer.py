"""The tfrecord writer: one file per level of detail, in NVIDIA's ProGAN/StyleGAN format.

`<dir>/<basename(dir)>-rNN.tfrecords` for NN = log2(resolution) down to 2; each record a
tf.train.Example with `shape` = [C, H, W] (int64) and `data` = the raw uint8 CHW bytes. Each lower
level is the float32 2x2 box mean of the level above (summed in NVIDIA's order so the bytes match
theirs), rounded and clipped only when written. Labels go to `<basename>-rxx.labels` (np.save of
float32 [N, dim]) and our metadata to `dataset.json`.

Everything is written into a hidden sibling directory that is renamed onto the target only when
complete, so an interrupted conversion never leaves a directory that looks like a dataset.
"""
import json
import os
import shutil

import numpy as np
import tensorflow as tf

from vgrow_tf.errors import UserError, is_disk_full

FORMAT = "vgrow_tf-dataset-1"


def shuffled_order(count, seed=123):
    """NVIDIA's `choose_shuffled_order`: RandomState(seed).shuffle(arange(count))."""
    order = np.arange(count)
    np.random.RandomState(seed).shuffle(order)
    return order


def serialize(chw_uint8):
    """One record exactly as NVIDIA's exporter builds it ('shape' first, then 'data')."""
    feature = {
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=chw_uint8.shape)),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[chw_uint8.tobytes()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def box_halve(chw):
    """float32 2x2 box mean, summed in the order NVIDIA's exporter uses."""
    chw = chw.astype(np.float32)
    return (chw[:, 0::2, 0::2] + chw[:, 0::2, 1::2] + chw[:, 1::2, 0::2] + chw[:, 1::2, 1::2]) * 0.25


def quantize(image):
    return np.rint(image).clip(0, 255).astype(np.uint8)


def check_shape(shape, name="image"):
    """A UserError unless shape is (C, H, W) with C in {1, 3} and H = W a power of two >= 4."""
    c, h, w = shape
    if c not in (1, 3):
        raise UserError(f"{name} has {c} channels; images must be grayscale (1) or RGB (3)")
    if h != w:
        raise UserError(f"{name} is {w}x{h}, not square; pass --resolution N to centre-crop and resize")
    if h < 4 or h & (h - 1):
        raise UserError(f"{name} is {w}x{h}, not a power of two >= 4; pass --resolution N to resize")


def _same_bytes(path_a, path_b):
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        return a.read() == b.read()


def _same_records(path_a, path_b):
    """Whether two tfrecord files hold equal examples (protobuf may order the feature map differently
    from one process to the next, so equal examples need not be equal bytes)."""
    import itertools
    pairs = itertools.zip_longest(*(tf.data.TFRecordDataset(p).as_numpy_iterator() for p in (path_a, path_b)))
    return all(a == b or (a is not None and b is not None
                          and tf.train.Example.FromString(a) == tf.train.Example.FromString(b)) for a, b in pairs)


def check_resolution(resolution):
    """A UserError unless a requested --resolution is a power of two >= 4."""
    if resolution < 4 or resolution & (resolution - 1):
        nearest = 2 ** max(2, round(np.log2(max(resolution, 1))))
        raise UserError(f"--resolution {resolution} is not a power of two >= 4; use e.g. --resolution {nearest}")


class TFRecordExporter:
    """Context manager: `with TFRecordExporter(dir) as tfr: tfr.add_image(chw); tfr.add_labels(l)`.

    The target appears only when the `with` block ends without an exception.
    """

    def __init__(self, tfrecord_dir, overwrite=False, metadata=None, keep_identical=False):
        self.tfrecord_dir = os.path.abspath(tfrecord_dir.rstrip("/\\"))
        self.name = os.path.basename(self.tfrecord_dir)
        self.overwrite = overwrite
        self.keep_identical = keep_identical  # an existing identical dataset is kept, not refused
        self.found_identical = False
        self.metadata = dict(metadata or {})
        self.shape = None
        self.num_images = 0
        self.labels = None
        self._writers = []
        parent = os.path.dirname(self.tfrecord_dir)
        self.tmp_dir = os.path.join(parent, f".{self.name}.partial-{os.getpid()}")

    # -- context --------------------------------------------------------------------------------
    def __enter__(self):
        if os.path.exists(self.tfrecord_dir) and not os.path.isdir(self.tfrecord_dir):
            raise UserError(f"{self.tfrecord_dir} exists and is not a directory")
        if self._target_taken() and not self.keep_identical:
            self._refuse_existing()
        parent = os.path.dirname(self.tfrecord_dir)
        try:
            os.makedirs(parent, exist_ok=True)
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            os.makedirs(self.tmp_dir)
        except OSError as e:
            raise UserError(f"cannot create the dataset directory {self.tfrecord_dir}: "
                            f"{e.strerror}; choose a writable location") from None
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._discard(exc)
            return False
        try:
            if self.num_images == 0:
                raise UserError("no images were written (the source is empty or every image was skipped)")
            self._finish()
        except BaseException as e:  # a full disk while closing the files, say: leave nothing half-written
            self._discard(e)
            raise
        return False

    def _discard(self, error):
        """Removes the partial output; a full disk becomes one line naming the dataset."""
        for writer in self._writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the disk that failed may fail again; the files go anyway
                pass
        self._writers = []
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if is_disk_full(error):
            raise UserError(f"the disk is full while writing the dataset {self.tfrecord_dir}; its partial "
                            "files were removed; free space and retry") from None

    # -- writing --------------------------------------------------------------------------------
    @property
    def resolution(self):
        return self.shape[1]

    @property
    def levels(self):
        return list(range(int(np.log2(self.resolution)), 1, -1))

    def _open(self, shape, source_name="image"):
        check_shape(shape, source_name)
        self.shape = tuple(shape)
        options = tf.io.TFRecordOptions(compression_type="")
        for level in self.levels:
            path = os.path.join(self.tmp_dir, f"{self.name}-r{level:02d}.tfrecords")
            self._writers.append(tf.io.TFRecordWriter(path, options))

    def add_image(self, chw, source_name="image"):
        """Adds one CHW uint8 image (all images must share the first one's shape)."""
        chw = np.asarray(chw)
        if chw.ndim != 3:
            raise UserError(f"{source_name}: expected a CHW image, got shape {chw.shape}")
        if self.shape is None:
            self._open(chw.shape, source_name)
        elif chw.shape != self.shape:
            raise UserError(f"{source_name} has shape {chw.shape[2]}x{chw.shape[1]}x{chw.shape[0]} "
                            f"(WxHxC) but the first image had {self.shape[2]}x{self.shape[1]}x"
                            f"{self.shape[0]}; pass --resolution N to resize all images")
        image = chw
        for lod, writer in enumerate(self._writers):
            if lod:
                image = box_halve(image)
            writer.write(serialize(quantize(image) if lod else image.astype(np.uint8)))
        self.num_images += 1

    def add_labels(self, labels):
        labels = np.asarray(labels, np.float32)
        if labels.ndim != 2:
            raise UserError(f"labels must be [N, dim], got shape {labels.shape}")
        self.labels = labels

    def _finish(self):
        for writer in self._writers:
            writer.close()
        self._writers = []
        if self.labels is not None:
            if len(self.labels) != self.num_images:
                raise UserError(f"{len(self.labels)} labels for {self.num_images} images")
            with open(os.path.join(self.tmp_dir, f"{self.name}-rxx.labels"), "wb") as f:
                np.save(f, self.labels)
        info = dict(format=FORMAT, resolution=self.resolution, channels=self.shape[0],
                    num_images=self.num_images,
                    levels=[2 ** level for level in reversed(self.levels)],
                    label_size=0 if self.labels is None else int(self.labels.shape[1]))
        info.update(self.metadata)
        with open(os.path.join(self.tmp_dir, "dataset.json"), "w") as f:
            json.dump(info, f, indent=2)
        self._swap_into_place()

    def _target_taken(self):
        return os.path.isdir(self.tfrecord_dir) and bool(os.listdir(self.tfrecord_dir)) and not self.overwrite

    def _refuse_existing(self, detail="already exists and is not empty"):
        raise UserError(f"{self.tfrecord_dir} {detail}; pass --overwrite to replace it or choose another "
                        "directory")

    def _same_files(self):
        names = sorted(os.listdir(self.tmp_dir))
        if names != sorted(os.listdir(self.tfrecord_dir)):
            return False
        for name in names:
            new, old = os.path.join(self.tmp_dir, name), os.path.join(self.tfrecord_dir, name)
            same = _same_records(new, old) if name.endswith(".tfrecords") else _same_bytes(new, old)
            if not same:
                return False
        return True

    def _swap_into_place(self):
        if self._target_taken():  # only with keep_identical: an identical dataset stays, another is refused
            identical = self._same_files()
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            if not identical:
                self._refuse_existing("already holds a different dataset")
            self.found_identical = True
            return
        old = None
        if os.path.isdir(self.tfrecord_dir):
            if os.listdir(self.tfrecord_dir):
                old = self.tmp_dir + ".old"
                os.rename(self.tfrecord_dir, old)
            else:
                os.rmdir(self.tfrecord_dir)
        os.rename(self.tmp_dir, self.tfrecord_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)

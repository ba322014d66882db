"""Reading dataset directories (ours or NVIDIA's ProGAN/StyleGAN ones) into tf.data pipelines."""
import dataclasses
import glob
import json
import os
import re

import numpy as np
import tensorflow as tf

from vgrow_tf.errors import UserError

_LEVEL_FILE = re.compile(r"-r(\d\d)\.tfrecords$")


@dataclasses.dataclass
class DatasetInfo:
    path: str
    name: str
    resolution: int
    channels: int
    num_images: int
    levels: list            # resolutions present, lowest first
    label_size: int
    metadata: dict
    files: dict             # resolution -> tfrecord path
    label_file: str = None


def resolve_dataset(name_or_path, data_root="datasets"):
    """A dataset directory from a path, or from a bare name under data_root."""
    if os.path.isdir(name_or_path):
        return name_or_path
    candidate = os.path.join(data_root, name_or_path)
    if data_root and not os.path.isabs(name_or_path) and os.path.isdir(candidate):
        return candidate
    raise UserError(f"dataset directory {name_or_path} does not exist; create it with "
                    f"`python dataset_tool.py create_... {name_or_path} <source>`")


def dataset_from_options(options, flag="dataset"):
    """DatasetInfo for a training option (`--dataset`, `--dataset_b`), resolved under --data_root."""
    value = getattr(options, flag, None)
    if not value:
        raise UserError(f"--{flag} is required (a dataset directory made by dataset_tool.py)")
    return inspect_dataset(resolve_dataset(value, getattr(options, "data_root", "datasets")))


_FRAMING = 16  # a tfrecord record: 8 bytes of length, 4 of its CRC, the data, 4 of the data's CRC


def _first_record(path):
    """(shape, framed size in bytes) of a tfrecord file's first record; every record of a level has
    that size (same shape, raw bytes), which lets a file's size be checked without reading it."""
    try:
        for record in tf.data.TFRecordDataset(path).take(1):
            example = tf.train.Example.FromString(record.numpy())
            return tuple(example.features.feature["shape"].int64_list.value), len(record.numpy()) + _FRAMING
    except (tf.errors.DataLossError, tf.errors.OpError) as e:
        raise UserError(f"{path} is not a readable tfrecord file ({e.message.splitlines()[0]})") from None
    raise UserError(f"{path} holds no records; recreate the dataset with dataset_tool.py")


def _check_size(path, framed, count):
    """A UserError naming the file and record when `path` cannot hold `count` records of `framed` bytes."""
    size, expected = os.path.getsize(path), count * framed
    if size == expected:
        return
    where = (f"record {size // framed} of {count} is cut short" if size < expected
             else f"{size - expected} bytes more than {count} records")
    raise UserError(f"{path} is truncated or corrupt ({size} bytes, {expected} expected: {where}); "
                    "recreate the dataset with dataset_tool.py")


def inspect_dataset(path):
    """DatasetInfo for a directory of `*-rNN.tfrecords` (dataset.json is optional).

    Cheap integrity check: every level file must have the size its record count implies, so a shard
    cut short stops here, naming it; `dataset_tool.py check` reads every record.
    """
    if not os.path.isdir(path):
        raise UserError(f"dataset directory {path} does not exist; create it with dataset_tool.py")
    paths = sorted(glob.glob(os.path.join(path, "*.tfrecords")))
    if not paths:
        raise UserError(f"{path} contains no .tfrecords files; is it a dataset directory made by dataset_tool.py?")
    files, shapes, framed = {}, {}, {}
    for p in paths:
        match = _LEVEL_FILE.search(p)
        shape, size = _first_record(p)
        resolution = 2 ** int(match.group(1)) if match else shape[1]
        files[resolution], shapes[resolution], framed[resolution] = p, shape, size
    top = max(files)
    shape = shapes[top]
    if len(shape) != 3 or shape[1] != top or shape[2] != top or shape[0] not in (1, 3):
        raise UserError(f"{files[top]} holds images of shape {shape}; expected [C, {top}, {top}] with C = 1 or 3")
    metadata = {}
    meta_path = os.path.join(path, "dataset.json")
    if os.path.isfile(meta_path):
        try:
            with open(meta_path) as f:
                metadata = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{meta_path} is not valid JSON ({e}); delete it or recreate the dataset") from None
    label_files = sorted(glob.glob(os.path.join(path, "*.labels")))
    label_size, label_file = 0, None
    if label_files:
        label_file = label_files[0]
        try:
            label_size = int(np.load(label_file, mmap_mode="r").shape[1])
        except (OSError, ValueError, IndexError) as e:
            raise UserError(f"cannot read labels {label_file}: {e}") from None
    info = DatasetInfo(path=path, name=os.path.basename(os.path.normpath(path)), resolution=top, channels=shape[0],
                       num_images=int(metadata.get("num_images", 0)), levels=sorted(files), label_size=label_size,
                       metadata=metadata, files=files, label_file=label_file)
    if not info.num_images:  # NVIDIA's datasets have no dataset.json: count (and so verify) the smallest level
        info.num_images = count_records(info, min(files))
    for resolution, file in files.items():
        _check_size(file, framed[resolution], info.num_images)
    return info


def find_corrupt_record(path, chunk=4096):
    """(record index, TensorFlow's words) of the first unreadable record of a tfrecord file, else None.

    Reads in chunks (fast), then one record at a time inside the chunk that failed."""
    good = 0
    try:
        for batch in tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(chunk):
            good += int(batch.shape[0])
        return None
    except tf.errors.DataLossError:
        pass
    dataset = tf.data.TFRecordDataset(path).skip(good)
    index = good
    try:
        for _ in dataset:
            index += 1
    except tf.errors.DataLossError as e:
        return index, _tf_words(e)
    return None


def _tf_words(error):
    """TensorFlow's message without the op and function names around it ("corrupted record at 102384")."""
    text = str(getattr(error, "message", error)).strip().splitlines()[0]
    return re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*$", "", text).strip() or text


def data_loss_error(paths, error):
    """A UserError for TensorFlow's DataLossError while reading the datasets in `paths`: the file and record
    that fail to read (found by reading them again), else TensorFlow's own words."""
    for path in filter(None, paths):
        for file in sorted(glob.glob(os.path.join(path, "*.tfrecords"))):
            found = find_corrupt_record(file)
            if found:
                return UserError(f"{file}: record {found[0]} is corrupt ({found[1]}); "
                                 "recreate the dataset with dataset_tool.py")
    return UserError(f"a dataset file is truncated or corrupt ({_tf_words(error)}); "
                     "check it with `dataset_tool.py check`")


def count_records(info, resolution=None):
    """Counts (and so verifies) every record of one level; UserError naming the file and record if one is bad."""
    path = info.files[resolution or info.resolution]
    try:
        return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.DataLossError as e:
        raise data_loss_error([info.path], e) from None


def check(info):
    """Reads every record of every level: shape [C, R, R], data size, and count against dataset.json.
    Returns {resolution: count}; UserError at the first problem, naming file and record."""
    counts = {}
    for resolution, path in sorted(info.files.items()):
        expected = [info.channels, resolution, resolution]
        spec = {"shape": tf.io.FixedLenFeature([3], tf.int64), "data": tf.io.FixedLenFeature([], tf.string)}
        batches = tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(1024).map(
            lambda r: tf.io.parse_example(r, spec))
        count = 0
        try:
            for batch in batches:
                wrong_shape = np.any(batch["shape"].numpy() != expected, axis=1)
                wrong_size = tf.strings.length(batch["data"]).numpy() != np.prod(expected)
                bad = np.flatnonzero(wrong_shape | wrong_size)
                if bad.size:
                    raise UserError(f"{path}: record {count + bad[0]} is not a {expected} uint8 image "
                                    f"(shape {list(batch['shape'].numpy()[bad[0]])}); recreate the dataset")
                count += len(wrong_shape)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise data_loss_error([info.path], e) from None
        if info.metadata.get("num_images") not in (None, count):
            raise UserError(f"{path} holds {count} records; dataset.json says {info.metadata['num_images']}")
        counts[resolution] = count
    if len(set(counts.values())) > 1:
        raise UserError(f"the levels of {info.path} hold different numbers of images: {counts}")
    if info.label_file and len(np.load(info.label_file, mmap_mode="r")) != info.num_images:
        raise UserError(f"{info.label_file} has {len(np.load(info.label_file, mmap_mode='r'))} labels for "
                        f"{info.num_images} images")
    return counts


def read_labels(info):
    if not info.label_file:
        raise UserError(f"dataset {info.path} has no labels (<name>-rxx.labels)")
    return np.load(info.label_file).astype(np.float32)


def _level_file(info, resolution):
    if resolution not in info.files:
        raise UserError(f"dataset {info.path} has no {resolution}x{resolution} level; it has "
                        f"{', '.join(str(r) for r in info.levels)}")
    return info.files[resolution]


def iterate_uint8(info, resolution=None):
    """CHW uint8 numpy arrays of one level, in file order (for extract/compare)."""
    path = _level_file(info, resolution or info.resolution)
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            example = tf.train.Example.FromString(record)
            shape = example.features.feature["shape"].int64_list.value
            yield np.frombuffer(example.features.feature["data"].bytes_list.value[0], np.uint8).reshape(shape)
    except tf.errors.DataLossError as e:
        raise data_loss_error([info.path], e) from None


def _parse_batch(records, channels, resolution, flip=None):
    """A batch of serialized Examples -> [B, H, W, C] float32 in [-1, 1] (one decode for the batch).

    Flipping and transposing happen on the uint8 pixels, a quarter of the float32 bytes.
    """
    features = tf.io.parse_example(records, {"data": tf.io.FixedLenFeature([], tf.string)})
    pixels = tf.io.decode_raw(features["data"], tf.uint8, fixed_length=channels * resolution * resolution)
    images = tf.reshape(pixels, [-1, channels, resolution, resolution])
    if flip is not None:
        images = tf.where(tf.reshape(flip, [-1, 1, 1, 1]), tf.reverse(images, axis=[3]), images)
    images = tf.transpose(images, [0, 2, 3, 1])
    return tf.cast(images, tf.float32) * (1.0 / 127.5) - 1.0


def image_pyramid(images, lowest=4):
    """(4x4, 8x8, ..., RxR) by exact 2x2 box means of the top level (lowest first; a tuple for tf.data)."""
    scales = [images]
    while scales[0].shape[1] > lowest:
        scales.insert(0, tf.nn.avg_pool2d(scales[0], 2, 2, "VALID"))
    return tuple(scales)


def load_dataset(path, batch_size, resolution=None, multiscale=False, labels=False, with_index=False,
                 mirror=False, shuffle=True, shuffle_buffer=None, repeat=True, seed=0, input_context=None,
                 info=None):
    """A tf.data pipeline of dicts {"image", ["label"], ["index"]} from one level of a dataset directory.

    Images are NHWC float32 in [-1, 1] with static shapes. `multiscale` returns the list of scales
    (lowest first) pooled from the top level. `mirror` flips half the images left-right. With an
    `input_context` (strategy.distribute_datasets_from_function) the records are sharded by
    pipeline and `batch_size` is the per-replica batch. Shuffling and mirroring are seeded, so a
    pipeline is reproducible (resume replays it with `skip`).
    """
    info = info or inspect_dataset(path)
    resolution = resolution or info.resolution
    if multiscale and resolution != info.resolution:
        raise UserError(f"multiscale data is pooled from the top level {info.resolution}; "
                        f"got resolution={resolution}")
    file = _level_file(info, resolution)
    label_table = None
    if labels:
        label_table = tf.constant(read_labels(info))
    ds = tf.data.TFRecordDataset(file, buffer_size=8 << 20).enumerate()
    if input_context and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        item_bytes = info.channels * resolution * resolution
        buffer = shuffle_buffer or int(np.clip((256 << 20) // item_bytes, 1024, 65536))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if mirror:
        flips = tf.data.Dataset.random(seed=seed + 1).map(lambda r: r % 2 == 1)
        ds = tf.data.Dataset.zip((ds, flips)).map(lambda pair, flip: (pair[0], pair[1], flip))
    else:
        ds = ds.map(lambda index, record: (index, record, False))
    ds = ds.batch(batch_size, drop_remainder=True)

    def to_features(index, records, flip):
        images = _parse_batch(records, info.channels, resolution, flip if mirror else None)
        images = tf.ensure_shape(images, [batch_size, resolution, resolution, info.channels])
        out = {"image": image_pyramid(images) if multiscale else images}
        if label_table is not None:
            out["label"] = tf.gather(label_table, index)
        if with_index:
            out["index"] = index
        return out

    ds = ds.map(to_features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

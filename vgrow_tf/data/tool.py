"""dataset_tool commands: sources -> TFRecordExporter, plus info / extract / compare.

Each `create_*` function streams images (memory does not grow with the dataset), applies NVIDIA's
shuffle (RandomState(123)) where the source allows random access, and writes through
`writer.TFRecordExporter`, which only renames the result into place once it is complete.
"""
import collections
import concurrent.futures
import contextlib
import glob
import gzip
import os
import pickle
import tarfile

import numpy as np

from vgrow_tf import progress
from vgrow_tf.data import images as image_lib
from vgrow_tf.data import writer as writer_lib
from vgrow_tf.errors import UserError

CPU_WORKERS = max(1, min(8, os.cpu_count() or 1))


# -- shared plumbing --------------------------------------------------------------------------------

def ordered_parallel_map(fn, items, workers=CPU_WORKERS, window=64):
    """map(fn, items) on a thread pool, in order, with at most `window` results in flight.

    PIL decodes with the GIL released, so threads use every core without copying images between
    processes; the bounded window keeps memory flat for any number of images.
    """
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def one_hot(labels, num_classes=None):
    labels = np.asarray(labels, np.int64).reshape(-1)
    num_classes = num_classes or int(labels.max()) + 1
    out = np.zeros([labels.size, num_classes], np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out


def write_dataset(tfrecord_dir, images, count, labels=None, overwrite=False, metadata=None,
                  desc="Adding", keep_identical=False):
    """Writes (name, chw) pairs from `images`; returns the number written.

    `labels` is an array [N, dim], or a callable returning one once the images are consumed.
    `keep_identical`: an existing dataset with exactly these bytes is kept, not refused (cheap sources
    such as the digits demo, so running it twice works).
    """
    with writer_lib.TFRecordExporter(tfrecord_dir, overwrite=overwrite, metadata=metadata,
                                     keep_identical=keep_identical) as tfr:
        with progress_bar(total=count, desc=desc, unit="img") as bar:
            for name, chw in images:
                tfr.add_image(chw, name)
                bar.update()
        if labels is not None:
            tfr.add_labels(labels() if callable(labels) else labels)
    if tfr.found_identical:
        print(f"{tfrecord_dir} already holds this dataset ({tfr.num_images} images, identical); left as is.")
    else:
        print(f"Added {tfr.num_images} images to {tfrecord_dir}.")
    return tfr.num_images


@contextlib.contextmanager
def progress_bar(**kwargs):
    """A tqdm bar on a terminal only (captured output gets the summary lines), erased on an error so
    the error line stands alone."""
    bar = progress.progress_bar(when_piped="quiet", mininterval=1.0, **kwargs)
    try:
        yield bar
    except BaseException:
        bar.leave = False
        bar.close()
        raise
    bar.close()


def array_images(chw_array, order):
    """(name, image) pairs from an in-memory NCHW array in the given order."""
    for index in order:
        yield f"image {index}", chw_array[index]


def order_for(count, shuffle):
    return writer_lib.shuffled_order(count) if shuffle else np.arange(count)


def require_path(path, what):
    if not os.path.exists(path):
        raise UserError(f"{what} {path} does not exist")


# -- image folders --------------------------------------------------------------------------------

def create_from_images(tfrecord_dir, image_dir, shuffle=True, resolution=None, resize_filter="lanczos",
                       channels=None, skip_bad=False, overwrite=False):
    """A folder of images (recursive). Same-size power-of-two images unless `resolution` is given."""
    if resolution is not None:
        writer_lib.check_resolution(resolution)
    files = image_lib.list_image_files(image_dir)
    print(f"Detected {len(files)} images in {image_dir}.")
    order = order_for(len(files), shuffle)
    skipped = []
    if channels is None:  # the first readable file (in sorted order) fixes the channel count, as NVIDIA's
        channels = _first_channels(files, skip_bad, skipped)
    bad = set(skipped)

    def load(path):
        if path in bad:
            return path, None
        return path, _read_or_skip(path, skip_bad, skipped, channels, resolution, resize_filter)

    loaded = ordered_parallel_map(load, (files[i] for i in order))
    metadata = dict(source=os.path.abspath(image_dir), command="create_from_images", shuffled=bool(shuffle),
                    resize_filter=resize_filter if resolution else None)
    count = write_dataset(tfrecord_dir, ((p, x) for p, x in loaded if x is not None), len(files),
                          overwrite=overwrite, metadata=metadata)
    if skipped:
        print(f"Skipped {len(skipped)} unreadable file(s): {', '.join(skipped[:5])}"
              f"{' ...' if len(skipped) > 5 else ''}")
    return count


def _read_or_skip(path, skip_bad, skipped, *load_args):
    """The image at `path`, or None when it is unreadable and `skip_bad` (it is then added to `skipped`)."""
    try:
        return image_lib.load_image_file(path, *load_args)
    except UserError as e:
        if not skip_bad:
            raise UserError(f"{e}; fix or remove it, or pass --skip_bad to skip unreadable files") from None
        print(f"Skipping {e}", flush=True)
        skipped.append(path)
        return None


def _first_channels(files, skip_bad, skipped):
    """Channels of the first readable file; with `skip_bad`, unreadable ones before it are skipped."""
    for path in files:
        image = _read_or_skip(path, skip_bad, skipped)
        if image is None:
            continue
        channels = image.shape[0]
        kind = "grayscale" if channels == 1 else "RGB"
        mode = image_lib.file_mode(path)
        read_as = kind if mode in ("L", "RGB") else f"{mode}, read as {kind}"
        print(f"The first image ({path}) is {read_as}, so the dataset is {kind}; "
              f"--channels {3 if channels == 1 else 1} makes it {'RGB' if channels == 1 else 'grayscale'}.")
        return channels
    raise UserError(f"none of the {len(files)} image files could be read")


# -- classic datasets ------------------------------------------------------------------------------

def _open_maybe_gz(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    raise UserError(f"{os.path.join(directory, stem)}.gz not found; download the MNIST idx files "
                    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) into that directory")


def load_mnist_arrays(mnist_dir, split="train"):
    prefix = "train" if split == "train" else "t10k"
    with _open_maybe_gz(mnist_dir, f"{prefix}-images-idx3-ubyte") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16)
    with _open_maybe_gz(mnist_dir, f"{prefix}-labels-idx1-ubyte") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    if images.size != labels.size * 28 * 28:
        raise UserError(f"MNIST files in {mnist_dir} are inconsistent: {images.size // 784} images, "
                        f"{labels.size} labels")
    images = np.pad(images.reshape(-1, 28, 28), [(0, 0), (2, 2), (2, 2)])  # 28 -> 32 with zeros
    return images[:, np.newaxis], labels


def create_mnist(tfrecord_dir, mnist_dir, split="train", shuffle=True, overwrite=False):
    """MNIST or Fashion-MNIST idx files: 1x32x32 (zero-padded), one-hot labels [N, 10]."""
    require_path(mnist_dir, "MNIST directory")
    images, labels = load_mnist_arrays(mnist_dir, split)
    order = order_for(len(images), shuffle)
    return write_dataset(tfrecord_dir, array_images(images, order), len(images), one_hot(labels, 10)[order],
                         overwrite, dict(source=os.path.abspath(mnist_dir), command="create_mnist",
                                         split=split, shuffled=bool(shuffle)))


def _cifar_members(source, names):
    """Unpickled CIFAR batches from an extracted directory or the .tar.gz itself."""
    require_path(source, "CIFAR source")
    if os.path.isfile(source):
        with tarfile.open(source) as tar:
            by_base = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in by_base]
            if missing:
                raise UserError(f"{source} does not contain {missing[0]}; is it the python version archive?")
            return [pickle.load(tar.extractfile(by_base[n]), encoding="latin1") for n in names]
    for candidate in (source, *glob.glob(os.path.join(source, "cifar-*-python")),
                      *glob.glob(os.path.join(source, "cifar-*-batches-py"))):
        if all(os.path.isfile(os.path.join(candidate, n)) for n in names):
            out = []
            for n in names:
                with open(os.path.join(candidate, n), "rb") as f:
                    out.append(pickle.load(f, encoding="latin1"))
            return out
    raise UserError(f"{source} does not contain {names[0]}; pass the extracted cifar-*-python "
                    "directory or the .tar.gz of the python version")


def create_cifar10(tfrecord_dir, cifar10_dir, shuffle=True, overwrite=False):
    batches = _cifar_members(cifar10_dir, [f"data_batch_{i}" for i in range(1, 6)])
    images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b["labels"] for b in batches])
    order = order_for(len(images), shuffle)
    return write_dataset(tfrecord_dir, array_images(images, order), len(images), one_hot(labels, 10)[order],
                         overwrite, dict(source=os.path.abspath(cifar10_dir), command="create_cifar10",
                                         shuffled=bool(shuffle)))


def create_cifar100(tfrecord_dir, cifar100_dir, shuffle=True, overwrite=False):
    (batch,) = _cifar_members(cifar100_dir, ["train"])
    images = np.asarray(batch["data"]).reshape(-1, 3, 32, 32)
    labels = np.asarray(batch["fine_labels"])
    order = order_for(len(images), shuffle)
    return write_dataset(tfrecord_dir, array_images(images, order), len(images),
                         one_hot(labels, 100)[order], overwrite,
                         dict(source=os.path.abspath(cifar100_dir), command="create_cifar100",
                              shuffled=bool(shuffle)))


def create_svhn(tfrecord_dir, svhn_source, split="train", shuffle=True, overwrite=False):
    """The official `<split>_32x32.mat` (a file, or the directory holding it); label 10 means digit 0."""
    import scipy.io
    path = svhn_source
    if os.path.isdir(path):
        path = os.path.join(path, f"{split}_32x32.mat")
    require_path(path, "SVHN file")
    try:
        mat = scipy.io.loadmat(path)
        images = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))  # HWCN -> NCHW
        labels = mat["y"].reshape(-1) % 10
    except (ValueError, KeyError, OSError) as e:
        raise UserError(f"cannot read SVHN file {path}: {e}") from None
    order = order_for(len(images), shuffle)
    return write_dataset(tfrecord_dir, array_images(images, order), len(images), one_hot(labels, 10)[order],
                         overwrite, dict(source=os.path.abspath(path), command="create_svhn", split=split,
                                         shuffled=bool(shuffle)))


def celeba_files(celeba_dir):
    for sub in ("img_align_celeba_png", "img_align_celeba", ""):
        directory = os.path.join(celeba_dir, sub)
        if os.path.isdir(directory):
            files = sorted(glob.glob(os.path.join(directory, "*.png")) + glob.glob(os.path.join(directory, "*.jpg")))
            if files:
                return files
    raise UserError(f"no CelebA images in {celeba_dir}; expected img_align_celeba/ (jpg) or "
                    "img_align_celeba_png/ (png)")


def celeba_crop(array, cx=89, cy=121, size=128):
    """ProGAN's 128x128 face crop of an aligned 178x218 CelebA image."""
    if array.shape[0] < cy + size // 2 or array.shape[1] < cx + size // 2:
        raise UserError(f"CelebA image is {array.shape[1]}x{array.shape[0]}; expected the aligned 178x218")
    return array[cy - size // 2:cy + size // 2, cx - size // 2:cx + size // 2]


def create_celeba(tfrecord_dir, celeba_dir, cx=89, cy=121, resolution=128, resize_filter="box",
                  shuffle=True, overwrite=False, files=None):
    files = files if files is not None else celeba_files(celeba_dir)
    if len(files) != 202599:
        print(f"Note: found {len(files)} CelebA images (the full set has 202599).")
    order = order_for(len(files), shuffle)

    def load(path):
        array = celeba_crop(image_lib.pil_to_array(_open_pil(path), 3), cx, cy)
        if resolution != 128:
            array = image_lib.centre_crop_resize(array, resolution, resize_filter)
        return path, image_lib.hwc_to_chw(array)

    return write_dataset(tfrecord_dir, ordered_parallel_map(load, (files[i] for i in order)), len(files),
                         overwrite=overwrite,
                         metadata=dict(source=os.path.abspath(celeba_dir), command="create_celeba", cx=cx, cy=cy,
                                       resize_filter=resize_filter if resolution != 128 else None,
                                       shuffled=bool(shuffle)))


def _open_pil(path):
    import PIL.Image
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.copy()
    except OSError as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def create_lsun(tfrecord_dir, lmdb_dir, resolution=256, max_images=None, resize_filter="lanczos",
                overwrite=False):
    """An LSUN category LMDB: centre square crop, resize, LMDB order; unreadable images skipped."""
    try:
        import lmdb
    except ImportError:
        raise UserError("create_lsun needs the lmdb package: pip install 'vgrow_tf[lsun]' (or pip install lmdb)") \
            from None
    require_path(lmdb_dir, "LMDB directory")
    skipped = [0]
    with lmdb.open(lmdb_dir, readonly=True, lock=False, readahead=False, max_readers=8).begin(write=False) as txn:
        total = txn.stat()["entries"]
        count = min(total, max_images) if max_images else total

        def values():
            for i, (_, value) in enumerate(txn.cursor()):
                if i >= count:
                    return
                yield value

        def load(value):
            try:
                array = image_lib.decode_image_bytes(value, 3)
            except Exception:  # noqa: BLE001 - LSUN has a few undecodable entries; the original skips them
                skipped[0] += 1
                return None
            return "lmdb entry", image_lib.hwc_to_chw(image_lib.centre_crop_resize(array, resolution, resize_filter))

        written = write_dataset(tfrecord_dir, (x for x in ordered_parallel_map(load, values()) if x is not None),
                                count, overwrite=overwrite,
                                metadata=dict(source=os.path.abspath(lmdb_dir), command="create_lsun",
                                              resize_filter=resize_filter, shuffled=False))
    if skipped[0]:
        print(f"Skipped {skipped[0]} undecodable LMDB entries.")
    return written


def create_from_hdf5(tfrecord_dir, hdf5_filename, shuffle=True, overwrite=False):
    """ProGAN's HDF5 (`data<R>x<R>` NCHW uint8, the largest taken; labels from `<stem>-labels.npy`)
    or the GLO reference's `data.hdf5` (one group per image holding `image`, HWC uint8)."""
    import h5py
    require_path(hdf5_filename, "HDF5 file")
    try:
        h5 = h5py.File(hdf5_filename, "r")
    except OSError as e:
        raise UserError(f"cannot open HDF5 file {hdf5_filename}: {e}") from None
    with h5:
        data_keys = [k for k in h5.keys() if k.startswith("data")]
        labels = None
        stem = os.path.splitext(hdf5_filename)[0]
        if os.path.isfile(stem + "-labels.npy"):
            labels = np.load(stem + "-labels.npy")
        if data_keys:
            dataset = h5[max(data_keys, key=lambda k: h5[k].shape[3])]
            count, get = dataset.shape[0], (lambda i: dataset[i])
            layout = "progan"
        elif all(isinstance(h5[k], h5py.Group) and "image" in h5[k] for k in list(h5.keys())[:10]) and len(h5):
            names = sorted(h5.keys(), key=lambda k: (len(k), k))  # GLO groups are "0", "1", ...
            count, get = len(names), (lambda i: image_lib.hwc_to_chw(np.asarray(h5[names[i]]["image"])))
            layout = "glo"
        else:
            raise UserError(f"{hdf5_filename} has neither ProGAN 'data<R>x<R>' datasets nor GLO image groups")
        order = order_for(count, shuffle)
        images = ((f"{hdf5_filename}[{i}]", np.asarray(get(i), np.uint8)) for i in order)
        return write_dataset(tfrecord_dir, images, count, None if labels is None else labels[order], overwrite,
                             dict(source=os.path.abspath(hdf5_filename), command="create_from_hdf5", layout=layout,
                                  shuffled=bool(shuffle)))


def create_from_tfds(tfrecord_dir, name, split="train", image_key="image", label_key=None, data_dir=None,
                     resolution=None, resize_filter="lanczos", max_images=None, overwrite=False):
    """Any tensorflow-datasets image dataset (read in its own order; tfds does the download)."""
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # noqa: BLE001 - tfds raises many types for a bad name, split or no network
        raise UserError(f"cannot load tfds dataset {name!r} split {split!r}: {str(e).splitlines()[0]}") from None
    try:
        num = builder.info.splits[split].num_examples
    except (KeyError, ValueError):  # e.g. mocked datasets carry no split sizes
        num = None
    features = builder.info.features
    if image_key not in features:
        raise UserError(f"tfds dataset {name} has no feature {image_key!r}; it has {', '.join(features.keys())}")
    count = min(num or max_images, max_images) if max_images else num
    labels = [] if label_key else None
    if label_key and label_key not in features:
        raise UserError(f"tfds dataset {name} has no feature {label_key!r}; it has {', '.join(features.keys())}")

    def images():
        for i, example in enumerate(tfds.as_numpy(ds)):
            if count is not None and i >= count:
                return
            array = np.asarray(example[image_key])
            if array.ndim == 3 and array.shape[2] == 1:
                array = array[:, :, 0]
            if resolution:
                array = image_lib.centre_crop_resize(array, resolution, resize_filter)
            if label_key:
                labels.append(example[label_key])
            yield f"{name}[{i}]", image_lib.hwc_to_chw(array)

    num_classes = getattr(features[label_key], "num_classes", None) if label_key else None

    def label_array():
        if num_classes:
            return one_hot(labels, num_classes)
        return np.asarray(labels, np.float32).reshape(len(labels), -1)

    return write_dataset(tfrecord_dir, images(), count, label_array if label_key else None, overwrite,
                         dict(source=f"tfds:{name}/{split}", command="create_from_tfds", image_key=image_key,
                              label_key=label_key, resize_filter=resize_filter if resolution else None,
                              shuffled=False))


def digits_arrays(resolution=8):
    """scikit-learn's bundled 8x8 digits (1797, no download) as NCHW uint8, nearest-upsampled."""
    from sklearn.datasets import load_digits
    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"--resolution for digits must be a power of two >= 8, got {resolution}")
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    factor = resolution // 8
    images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)
    return images[:, np.newaxis], digits.target


def create_digits(tfrecord_dir, resolution=8, shuffle=True, overwrite=False):
    """The offline demo dataset: 1797 grayscale digits with one-hot labels."""
    images, labels = digits_arrays(resolution)
    order = order_for(len(images), shuffle)
    return write_dataset(tfrecord_dir, array_images(images, order), len(images), one_hot(labels, 10)[order],
                         overwrite, dict(source="sklearn.datasets.load_digits", command="create_digits",
                                         shuffled=bool(shuffle)), keep_identical=True)


# -- inspection ------------------------------------------------------------------------------------

def info(tfrecord_dir, data_root="datasets"):
    """A dict describing a dataset directory, or a bare name under data_root as train.py --dataset
    takes it (also verifies every record of the top level reads)."""
    from vgrow_tf.data import reader
    dataset_info = reader.inspect_dataset(reader.resolve_dataset(tfrecord_dir, data_root))
    count = reader.count_records(dataset_info, dataset_info.resolution)
    summary = dict(path=dataset_info.path, resolution=dataset_info.resolution, channels=dataset_info.channels,
                   num_images=count, levels=dataset_info.levels, label_size=dataset_info.label_size)
    summary["metadata"] = {k: v for k, v in dataset_info.metadata.items() if k not in summary}
    return summary


def check(tfrecord_dir, data_root="datasets"):
    """Reads every record of every level (shape, size, count against dataset.json); {resolution: count}."""
    from vgrow_tf.data import reader
    return reader.check(reader.inspect_dataset(reader.resolve_dataset(tfrecord_dir, data_root)))


def extract(tfrecord_dir, output_dir, resolution=None):
    """Writes every image of one level (default: the top) as img%08d.png."""
    import PIL.Image
    from vgrow_tf.data import reader
    dataset_info = reader.inspect_dataset(tfrecord_dir)
    os.makedirs(output_dir, exist_ok=True)
    count = 0
    with progress_bar(total=dataset_info.num_images, desc="Extracting", unit="img") as bar:
        for count, chw in enumerate(reader.iterate_uint8(dataset_info, resolution), 1):
            array = chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)
            PIL.Image.fromarray(array).save(os.path.join(output_dir, f"img{count - 1:08d}.png"))
            bar.update()
    print(f"Extracted {count} images to {output_dir}.")
    return count


def compare(tfrecord_dir_a, tfrecord_dir_b, ignore_labels=False):
    """Counts identical images (and labels) at the top level of two datasets, pairwise in order."""
    from vgrow_tf.data import reader
    a, b = reader.inspect_dataset(tfrecord_dir_a), reader.inspect_dataset(tfrecord_dir_b)
    if a.resolution != b.resolution or a.channels != b.channels:
        raise UserError(f"{a.path} is {a.resolution}px x{a.channels} but {b.path} is {b.resolution}px x{b.channels}")
    identical_images = total = 0
    for x, y in zip(reader.iterate_uint8(a), reader.iterate_uint8(b)):
        identical_images += int(np.array_equal(x, y))
        total += 1
    result = dict(compared=total, identical_images=identical_images, count_a=a.num_images, count_b=b.num_images)
    if not ignore_labels and a.label_size and b.label_size:
        la, lb = reader.read_labels(a), reader.read_labels(b)
        n = min(len(la), len(lb))
        result["identical_labels"] = int(np.sum(np.all(la[:n] == lb[:n], axis=1)))
    return result



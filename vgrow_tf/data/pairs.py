"""Two-domain dataset sources for CoGAN / SCoGAN: each command writes two dataset directories,
`<tfrecord_dir>-a` (domain A, `--dataset`) and `<tfrecord_dir>-b` (domain B, `--dataset_b`).

- `create_mnist_edge`: the MNIST train set split in halves; the first half as is, the second as edge
  images (3x3 grey dilation minus the image, as SCoGAN's mnist2edge). 32x32 (ProGAN-style zero padding).
- `create_digits_edge`: the same on scikit-learn's bundled 8x8 digits, bicubic-upsampled to --resolution
  (the offline demo and tests).
- `create_celeba_pairs` (`create_celeba --attribute NAME`): aligned CelebA split by one attribute of
  list_attr_celeba.txt (1 -> A, -1 -> B), central 70% crop resized to --resolution (SCoGAN's crop);
  labels: all 40 attribute flags in {0, 1} (what the classifier trains on).
- `create_cyclegan`: a CycleGAN folder with trainA/ and trainB/ (apple2orange, horse2zebra, ...),
  resized from 256 to --resolution (default 128, what the faces architecture supports).
Every directory's dataset.json records the pair (domain, partner, command, resize).

Reading side: `inspect_pair`, `pair_resolution`, `pair_name` for the trainers that take `--dataset` and
`--dataset_b` (CoGAN/SCoGAN and the domain classifier).
"""
import os

import numpy as np

from vgrow_tf.data import images as image_lib
from vgrow_tf.data import reader
from vgrow_tf.data import tool
from vgrow_tf.errors import UserError

DOMAINS = ("a", "b")


def pair_dirs(tfrecord_dir):
    base = os.path.normpath(tfrecord_dir)
    return f"{base}-a", f"{base}-b"


def edges(images):
    """SCoGAN's edge transform: 3x3 grey dilation minus the image (uint8, any leading axes)."""
    import scipy.ndimage
    size = [1] * (images.ndim - 2) + [3, 3]
    dilated = scipy.ndimage.grey_dilation(images, size=size)
    return (dilated.astype(np.int16) - images.astype(np.int16)).clip(0, 255).astype(np.uint8)


def _write_pair(tfrecord_dir, sources, command, overwrite, extra=None, keep_identical=False):
    """sources: for A and B, (images NCHW uint8 array, labels or None) or (iterable of (name, chw), count,
    labels or None) to stream; returns the two counts."""
    dirs = pair_dirs(tfrecord_dir)
    counts = []
    for k, (source, path) in enumerate(zip(sources, dirs)):
        if len(source) == 2:
            images, labels = source
            source = (tool.array_images(images, range(len(images))), len(images), labels)
        items, count, labels = source
        if count == 0:
            raise UserError(f"{command}: domain {DOMAINS[k]} would be empty; check the source")
        meta = dict(command=command, domain=DOMAINS[k], partner=os.path.abspath(dirs[1 - k]), **(extra or {}))
        counts.append(tool.write_dataset(path, items, count, labels, overwrite, meta,
                                         keep_identical=keep_identical))
    return counts


def _halves(images, labels, shuffle):
    order = tool.order_for(len(images), shuffle)
    images, labels = images[order], labels[order]
    half = len(images) // 2
    return (images[:half], labels[:half]), (images[half:2 * half], labels[half:2 * half])


def create_mnist_edge(tfrecord_dir, mnist_dir, shuffle=True, overwrite=False):
    tool.require_path(mnist_dir, "MNIST directory")
    images, labels = tool.load_mnist_arrays(mnist_dir, "train")
    (ia, la), (ib, lb) = _halves(images, tool.one_hot(labels, 10), shuffle)
    return _write_pair(tfrecord_dir, [(ia, la), (edges(ib), lb)], "create_mnist_edge", overwrite,
                       dict(source=os.path.abspath(mnist_dir), shuffled=bool(shuffle)))


def smooth_digits(resolution):
    """scikit-learn's 8x8 digits bicubic-upsampled (MNIST-like soft strokes: the edges of nearest-upsampled
    blocks are 1 px lattice lines, "mazes" that no digits-size generator learns). NCHW uint8, labels."""
    import PIL.Image
    images, labels = tool.digits_arrays(8)
    if resolution != 8:
        images = np.stack([np.asarray(PIL.Image.fromarray(image[0]).resize((resolution, resolution),
                                                                            PIL.Image.BICUBIC))
                           for image in images])[:, np.newaxis]
    return images, labels


def create_digits_edge(tfrecord_dir, resolution=16, shuffle=True, overwrite=False):
    images, labels = smooth_digits(resolution)
    (ia, la), (ib, lb) = _halves(images, tool.one_hot(labels, 10), shuffle)
    return _write_pair(tfrecord_dir, [(ia, la), (edges(ib), lb)], "create_digits_edge", overwrite,
                       dict(source="sklearn.datasets.load_digits", shuffled=bool(shuffle)), keep_identical=True)


def read_celeba_attributes(celeba_dir):
    """(attribute names, {file name: [40] int in {-1, 1}}) from list_attr_celeba.txt."""
    for candidate in ("list_attr_celeba.txt", os.path.join("Anno", "list_attr_celeba.txt")):
        path = os.path.join(celeba_dir, candidate)
        if os.path.isfile(path):
            break
    else:
        raise UserError(f"list_attr_celeba.txt not found in {celeba_dir} (or its Anno/); "
                        "--attribute needs CelebA's attribute file")
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    try:
        names = lines[1]
        table = {row[0]: [int(v) for v in row[1:]] for row in lines[2:]}
    except (IndexError, ValueError):
        raise UserError(f"{path} is not a CelebA attribute file (count, names, then 'file v1 v2 ...')") from None
    if any(len(v) != len(names) for v in table.values()):
        raise UserError(f"{path}: some rows do not have {len(names)} attribute values")
    return names, table


def central_crop_resize(array, fraction, resolution, resize_filter="bilinear"):
    """tf.image.central_crop(fraction) then a (possibly non-uniform) resize to resolution x resolution."""
    import PIL.Image
    h, w = array.shape[:2]
    ch, cw = int(round(h * fraction)), int(round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = array[top:top + ch, left:left + cw]
    filters = {"bilinear": PIL.Image.BILINEAR, "box": PIL.Image.BOX, "lanczos": PIL.Image.LANCZOS,
               "bicubic": PIL.Image.BICUBIC, "nearest": PIL.Image.NEAREST}
    return np.asarray(PIL.Image.fromarray(crop).resize((resolution, resolution), filters[resize_filter]))


def create_celeba_pairs(tfrecord_dir, celeba_dir, attribute, resolution=128, resize_filter="bilinear",
                        crop_fraction=0.7, shuffle=True, overwrite=False, max_images=None):
    names, table = read_celeba_attributes(celeba_dir)
    if attribute not in names:
        raise UserError(f"unknown CelebA attribute {attribute!r}; choose one of {', '.join(names)}")
    col = names.index(attribute)
    files = tool.celeba_files(celeba_dir)  # sorted, so the order never depends on glob
    files = [f for f in files if os.path.basename(f) in table or
             os.path.splitext(os.path.basename(f))[0] + ".jpg" in table]
    if not files:
        raise UserError(f"none of the images in {celeba_dir} is listed in list_attr_celeba.txt")
    if max_images:
        files = files[:max_images]

    def flags(path):
        base = os.path.basename(path)
        return table.get(base) or table[os.path.splitext(base)[0] + ".jpg"]

    def load(path):
        array = image_lib.pil_to_array(tool._open_pil(path), 3)
        return path, image_lib.hwc_to_chw(central_crop_resize(array, crop_fraction, resolution, resize_filter))

    sources = []
    for on in (True, False):
        chosen = [f for f in files if (flags(f)[col] == 1) == on]
        order = tool.order_for(len(chosen), shuffle)
        chosen = [chosen[i] for i in order]
        labels = (np.asarray([flags(f) for f in chosen], np.float32) + 1.0) / 2.0
        sources.append((tool.ordered_parallel_map(load, chosen), len(chosen),
                        labels.reshape(len(chosen), len(names))))
    return _write_pair(tfrecord_dir, sources, "create_celeba --attribute", overwrite,
                       dict(source=os.path.abspath(celeba_dir), attribute=attribute, attribute_names=names,
                            crop_fraction=crop_fraction, resolution=resolution, resize_filter=resize_filter,
                            shuffled=bool(shuffle)))


def create_cyclegan(tfrecord_dir, source_dir, resolution=128, resize_filter="lanczos", shuffle=True,
                    overwrite=False):
    """trainA/ -> <dir>-a, trainB/ -> <dir>-b, centre-cropped square and resized to `resolution`."""
    tool.require_path(source_dir, "CycleGAN directory")
    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"--resolution must be a power of two >= 8, got {resolution}")
    sources = []

    def load(path):
        array = image_lib.pil_to_array(tool._open_pil(path), 3)
        return path, image_lib.hwc_to_chw(image_lib.centre_crop_resize(array, resolution, resize_filter))

    for sub in ("trainA", "trainB"):
        folder = os.path.join(source_dir, sub)
        if not os.path.isdir(folder):
            raise UserError(f"{folder} does not exist; a CycleGAN pair directory holds trainA/ and trainB/")
        files = image_lib.list_image_files(folder)
        order = tool.order_for(len(files), shuffle)
        sources.append((tool.ordered_parallel_map(load, [files[i] for i in order]), len(files), None))
    return _write_pair(tfrecord_dir, sources, "create_cyclegan", overwrite,
                       dict(source=os.path.abspath(source_dir), resolution=resolution, resized="centre square crop, then resize",
                            resize_filter=resize_filter, shuffled=bool(shuffle)))


# --- reading a pair (the trainers of both domains and the classifier) ----------------------------------

def pair_name(name_a, name_b):
    """mnist2edge-a + mnist2edge-b -> mnist2edge; otherwise a+b."""
    for sa, sb in (("-a", "-b"), ("_a", "_b"), ("-A", "-B"), ("A", "B")):
        if name_a.endswith(sa) and name_b.endswith(sb) and name_a[:-len(sa)] == name_b[:-len(sb)]:
            return name_a[:-len(sa)]
    return f"{name_a}+{name_b}"


def inspect_pair(options, need_b=True):
    """(info_a, info_b) for --dataset and --dataset_b; UserError when either is missing."""
    if not options.dataset:
        raise UserError(f"--model={options.model} needs --dataset (domain A) and --dataset_b (domain B), "
                        "dataset directories made by dataset_tool.py")
    info_a = reader.inspect_dataset(reader.resolve_dataset(options.dataset, options.data_root))
    if not getattr(options, "dataset_b", None):
        if need_b:
            raise UserError(f"--model={options.model} needs --dataset_b, the second domain's dataset "
                            "(e.g. --dataset=datasets/mnist2edge-a --dataset_b=datasets/mnist2edge-b)")
        return info_a, None
    info_b = reader.inspect_dataset(reader.resolve_dataset(options.dataset_b, options.data_root))
    return info_a, info_b


def pair_resolution(options, info_a, info_b):
    infos = [i for i in (info_a, info_b) if i is not None]
    resolution = options.resolution or min(i.resolution for i in infos)
    for info in infos:
        if resolution not in info.levels:
            raise UserError(f"dataset {info.path} has resolutions {min(info.levels)}..{max(info.levels)}; "
                            f"--resolution {resolution} is not available")
    return resolution

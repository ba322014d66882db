"""Reading image files into uint8 CHW arrays: mode conversion, centre crop, resize."""
import os

import numpy as np
import PIL.Image

from vgrow_tf.errors import UserError, require_dir

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
RESIZE_FILTERS = {"box": PIL.Image.BOX, "lanczos": PIL.Image.LANCZOS, "bicubic": PIL.Image.BICUBIC,
                  "bilinear": PIL.Image.BILINEAR, "nearest": PIL.Image.NEAREST}


def list_image_files(image_dir):
    """Every image file under image_dir (recursively), sorted by relative path."""
    require_dir(image_dir, "image directory")
    found = []
    for root, dirs, files in os.walk(image_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in files
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise UserError(f"no input images found in {image_dir} "
                        f"(looked for {', '.join(IMAGE_EXTENSIONS)} recursively)")
    return sorted(found, key=lambda p: os.path.relpath(p, image_dir))


def pil_to_array(image, channels=None):
    """HWC uint8 (or HW for grayscale) from a PIL image: palette/alpha/CMYK -> RGB, 16-bit -> 8-bit.

    `channels` forces 1 or 3; without it grayscale stays grayscale and everything else is RGB.
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.uint32 if mode == "I" else np.uint16)
        array = (array.astype(np.float64) / (65535.0 / 255.0)).round().clip(0, 255).astype(np.uint8)
        image = PIL.Image.fromarray(array, "L")
    elif mode == "F":
        array = np.asarray(image, np.float64)
        top = 1.0 if array.max() <= 1.0 else 255.0
        image = PIL.Image.fromarray((array / top * 255).round().clip(0, 255).astype(np.uint8), "L")
    elif mode == "1":
        image = image.convert("L")
    if channels is None:
        channels = 1 if image.mode in ("L", "LA") else 3
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)
    return np.asarray(image)


def hwc_to_chw(array):
    array = np.asarray(array)
    return array[np.newaxis] if array.ndim == 2 else array.transpose(2, 0, 1)


def centre_crop_resize(array, resolution, resize_filter="lanczos"):
    """Centre-crops an HW(C) uint8 array to a square and resizes it to resolution x resolution."""
    h, w = array.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    array = array[top:top + side, left:left + side]
    if side == resolution:
        return np.ascontiguousarray(array)
    image = PIL.Image.fromarray(array)
    return np.asarray(image.resize((resolution, resolution), RESIZE_FILTERS[resize_filter]))


def file_mode(path):
    """The PIL mode of an image file as stored (e.g. "RGBA", "P", "I;16"), or "unknown"."""
    try:
        with PIL.Image.open(path) as image:
            return image.mode
    except (OSError, ValueError):
        return "unknown"


def load_image_file(path, channels=None, resolution=None, resize_filter="lanczos"):
    """A CHW uint8 array from an image file; UserError naming the file when it cannot be read."""
    try:
        with PIL.Image.open(path) as image:
            image.load()
            array = pil_to_array(image, channels)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None
    if resolution:
        array = centre_crop_resize(array, resolution, resize_filter)
    return hwc_to_chw(array)


def decode_image_bytes(data, channels=None):
    """HW(C) uint8 from encoded bytes (LSUN's LMDB values)."""
    import io
    with PIL.Image.open(io.BytesIO(data)) as image:
        image.load()
        return pil_to_array(image, channels)

"""Image conversion and grids: the one place that turns [-1, 1] tensors into uint8 files."""
import os

import numpy as np
from PIL import Image

GRID_GAP, GRID_GAP_VALUE = 2, 0.0  # 2 px of mid-grey between grid cells, visible on dark and light images


def to_uint8(images):
    """[-1, 1] floats -> uint8 as StyleGAN does: rint(x * 127.5 + 127.5), clipped."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint(images * 127.5 + 127.5), 0, 255).astype(np.uint8)


def upsample_nearest(images, size):
    """Nearest-neighbour upsampling of NHWC images to size x size (an integer factor)."""
    factor = size // images.shape[1]
    if factor <= 1:
        return images
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


def make_grid(images, rows, cols, padding=0, pad_value=0):
    """Tiles N >= rows*cols NHWC images row-major: cell (i, j) shows image i*cols + j."""
    images = np.asarray(images)[: rows * cols]
    n, h, w, c = images.shape
    if n < rows * cols:
        images = np.concatenate([images, np.full((rows * cols - n, h, w, c), pad_value, images.dtype)])
    grid = np.full((rows * (h + padding) - padding, cols * (w + padding) - padding, c), pad_value,
                   images.dtype)
    for k, img in enumerate(images):
        i, j = divmod(k, cols)
        grid[i * (h + padding): i * (h + padding) + h, j * (w + padding): j * (w + padding) + w] = img
    return grid


def save_image(path, image):
    """Writes one HWC uint8 image (C = 1 or 3) as PNG/JPEG atomically."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{ext}"
    try:
        Image.fromarray(image).save(tmp)
        os.replace(tmp, path)
    finally:  # a full disk leaves no partial image behind
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_grid(path, images, rows, cols, padding=0, gap_value=GRID_GAP_VALUE):
    """Quantises [-1, 1] NHWC images and saves them as a rows x cols grid; `padding` px of
    `gap_value` (in [-1, 1]) between cells."""
    gap = int(to_uint8(gap_value))
    return save_image(path, make_grid(to_uint8(images), rows, cols, padding, pad_value=gap))


def interleave(*image_lists):
    """a_0, b_0, a_1, b_1, ...: in a grid with an even number of columns each pair sits side by side."""
    count = min(len(images) for images in image_lists)
    return np.stack([np.asarray(images)[:count] for images in image_lists], axis=1).reshape(
        (len(image_lists) * count,) + np.asarray(image_lists[0]).shape[1:])


def pair_grid(left, right, pairs_per_row, pair_gap=4, inner_gap=1):
    """[-1, 1] images `left[i] | right[i]` as pairs in a grid, row-major: `inner_gap` px of dark grey inside
    a pair, `pair_gap` px of mid-grey between pairs, so each pair reads as one tile. Returns uint8 HWC."""
    pairs = side_by_side([left, right], inner_gap, gap_value=-0.5)
    rows = -(-len(pairs) // pairs_per_row)
    return make_grid(to_uint8(pairs), rows, pairs_per_row, pair_gap, pad_value=int(to_uint8(GRID_GAP_VALUE)))


def side_by_side(image_lists, gap=0, gap_value=-1.0):
    """[N, H, W_k, C] arrays in [-1, 1] joined along the width, `gap` px of `gap_value` between them
    (a multi-scale sheet's separator between scales)."""
    parts = []
    for k, images in enumerate(image_lists):
        images = np.asarray(images)
        if k and gap:
            parts.append(np.full(images.shape[:2] + (gap,) + images.shape[3:], gap_value, images.dtype))
        parts.append(images)
    return np.concatenate(parts, axis=2)

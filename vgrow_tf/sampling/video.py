"""Videos: MP4 (imageio-ffmpeg, H.264) or GIF, chosen by the file extension; frames from latent walks."""
import os

import numpy as np

from vgrow_tf.errors import UserError
from vgrow_tf.sampling.images import make_grid, to_uint8, upsample_nearest

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
GIF_EXTENSIONS = (".gif",)


def check_video_path(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS + GIF_EXTENSIONS:
        raise UserError(f"cannot tell the video format of {path!r}; use a .mp4 or .gif file name")
    return ext


def _even(frames):
    """H.264 in yuv420p needs even sizes: pad by repeating the last row / column."""
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """Appends uint8 HWC frames (C = 1 or 3) to an MP4 or GIF; written to a temporary name and renamed
    on close, so an interrupted run leaves no truncated video behind."""

    def __init__(self, path, fps=24, quality=8):
        self.ext = check_video_path(path)
        if fps <= 0:
            raise UserError(f"--fps must be positive, not {fps}")
        self.path, self.fps = path, float(fps)
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        root, ext = os.path.splitext(path)
        self.tmp = f"{root}.tmp-{os.getpid()}{ext}"
        self.frames = 0
        import imageio.v2 as iio
        if self.ext in GIF_EXTENSIONS:
            self._gif = []
            self._writer = None
        else:
            try:
                self._writer = iio.get_writer(self.tmp, fps=self.fps, codec="libx264", quality=quality,
                                              macro_block_size=1, pixelformat="yuv420p")
            except Exception as e:  # noqa: BLE001 - ffmpeg missing or broken
                raise UserError(f"cannot write MP4 ({e.__class__.__name__}: {e}); install imageio-ffmpeg "
                                "or write a .gif instead") from None

    def append(self, frame):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise ValueError("frames must be uint8")
        if frame.ndim == 2:
            frame = frame[..., None]
        if frame.shape[-1] == 1:
            frame = np.repeat(frame, 3, axis=-1)
        if self._writer is None:
            self._gif.append(frame)
        else:
            self._writer.append_data(_even(frame[None])[0])
        self.frames += 1

    def close(self):
        try:
            if self._writer is None:
                import imageio.v2 as iio
                if not self._gif:
                    raise UserError("no frames to write")
                # duration per frame in milliseconds; loop=0 loops forever
                iio.mimsave(self.tmp, self._gif, duration=1000.0 / self.fps, loop=0)
            else:
                self._writer.close()
            os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        return self.path

    def abort(self):
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001
                pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_video(path, frames, fps=24):
    """Writes uint8 [T, H, W, C] frames; returns the path."""
    with VideoWriter(path, fps) as w:
        for frame in frames:
            w.append(frame)
    return path


def read_video(path):
    """Frames of a written video as uint8 [T, H, W, 3] (for tests and checks)."""
    import imageio.v2 as iio
    return np.stack(iio.mimread(path, memtest=False))


def resize_images(images, size, method="bicubic"):
    """NHWC [-1, 1] floats resized to size = (H, W) (bicubic, as the original video script), clipped.
    Another aspect ratio than the images' is letterboxed (fitted inside, black bars), not stretched."""
    import tensorflow as tf
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise UserError(f"--resize needs two positive integers H W, not {size}")
    x = tf.convert_to_tensor(images, tf.float32)
    if same_aspect(x.shape[1:3], (h, w)):
        out = tf.image.resize(x, [h, w], method=method)
    else:  # resize_with_pad pads with 0, which is mid-grey in [-1, 1]: shift so the bars are black
        out = tf.image.resize_with_pad(x + 1.0, h, w, method=method) - 1.0
    return np.clip(out.numpy(), -1.0, 1.0)


def same_aspect(size_a, size_b):
    return int(size_a[0]) * int(size_b[1]) == int(size_a[1]) * int(size_b[0])


def scales_frame(scales, indices, num_cols=None, padding=0):
    """One multi-scale frame per sample: chosen scales NN-upsampled to the largest chosen one, tiled
    in a grid with num_cols columns (default: all in one row). scales: list lowest first, each [N,...].
    Returns [N, H', W', C] in [-1, 1]."""
    chosen = [scales[i] for i in indices]
    size = max(s.shape[1] for s in chosen)
    ups = [upsample_nearest(np.asarray(s), size) for s in chosen]
    cols = num_cols or len(ups)
    rows = -(-len(ups) // cols)
    return np.stack([make_grid(np.stack([u[k] for u in ups]), rows, cols, padding, pad_value=-1.0)
                     for k in range(len(ups[0]))])


def render_walk(path, latents, render, fps=24, batch_size=16, resize=None, progress=None):
    """Writes a video whose frame t is render(latents[t:t+1]) ([1, H, W, C] in [-1, 1]); rendering
    is batched. `resize` = (H, W) resizes each frame. Returns the number of frames."""
    with VideoWriter(path, fps) as writer:
        for i in range(0, len(latents), batch_size):
            frames = render(latents[i:i + batch_size])
            if resize and i == 0 and not same_aspect(frames.shape[1:3], resize):
                print(f"Note: frames are {frames.shape[2]}x{frames.shape[1]}; --resize {resize[0]},{resize[1]} "
                      "(H,W) has another aspect ratio, so they are letterboxed with black bars", flush=True)
            if resize:
                frames = resize_images(frames, resize)
            for frame in to_uint8(frames):
                writer.append(frame)
            if progress:
                progress(min(i + batch_size, len(latents)), len(latents))
        return writer.frames

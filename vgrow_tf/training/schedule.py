"""ProGAN/VGrow progressive-growing schedule: level of detail (lod) from the number of images seen."""
import math


def lod_at(nimg, resolution, init_resolution=4, dur_nimg=600_000):
    """VGrow's lod: hold each resolution for dur_nimg images, then fade the next in over dur_nimg.

    Returns a float in [0, M], M = log2(resolution / init_resolution); 0 means full resolution.
    """
    m = int(round(math.log2(resolution / init_resolution)))
    phase, rem = divmod(int(nimg), 2 * dur_nimg)
    if phase >= m:
        return 0.0
    if rem <= dur_nimg:
        return float(m - phase)
    return m - phase - (rem - dur_nimg) / dur_nimg


def working_level(lod, resolution):
    """(log2 of the working resolution, fade weight t on the old path) for a lod."""
    floor = math.floor(lod)
    return int(round(math.log2(resolution))) - floor, lod - floor


def phase_key(lod):
    """Changes exactly when VGrow resets its optimisers: at every fade start and stabilise start."""
    return (math.floor(lod), math.ceil(lod))


def level_segments(total_nimg, resolution, init_resolution=4, dur_nimg=600_000):
    """The working levels of `lod_at` as ETA segments [(start, end, level, pixels per image)]: the first
    level until dur_nimg, then each next level from its fade start to the next fade start."""
    first, last = int(round(math.log2(init_resolution))), int(round(math.log2(resolution)))
    segments, start = [], 0
    for level in range(first, last + 1):
        end = total_nimg if level == last else (2 * (level - first) + 1) * dur_nimg
        end = min(end, total_nimg)
        if end > start:
            segments.append((start, end, level, float(4 ** level)))
        start = end
    return segments

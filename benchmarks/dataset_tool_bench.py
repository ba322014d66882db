"""How fast dataset_tool converts a folder of PNGs, and how fast the reader feeds a training loop.

    python benchmarks/dataset_tool_bench.py [--num_images 10000] [--size 64] [--work_dir /tmp/bench]

Prints one JSON line per measurement: conversion images/s and peak resident memory (the process's
maximum RSS, which must not grow with the number of images), and reader images/s at 32 and 256 px.
"""
import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np
import PIL.Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vgrow_tf.data import load_dataset, tool  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_pngs(folder, count, size, seed=0):
    """Smooth random colour images (compress like photos, unlike pure noise)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(count):
        low = rng.randint(0, 256, [size // 8, size // 8, 3]).astype(np.uint8)
        image = PIL.Image.fromarray(low).resize((size, size), PIL.Image.BICUBIC)
        image.save(os.path.join(folder, f"{i:06d}.png"))


def bench_convert(work, count, size):
    folder = os.path.join(work, f"png{size}")
    if not os.path.isdir(folder) or len(os.listdir(folder)) != count:
        shutil.rmtree(folder, ignore_errors=True)
        make_pngs(folder, count, size)
    out = os.path.join(work, f"ds{size}")
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    tool.create_from_images(out, folder, overwrite=True)
    seconds = time.perf_counter() - start
    return out, dict(bench="convert", images=count, size=size, seconds=round(seconds, 2),
                     images_per_s=round(count / seconds, 1), peak_rss_mb_before=round(rss_before),
                     peak_rss_mb=round(peak_rss_mb()))


def bench_reader(path, resolution, batch_size=64, batches=200):
    ds = load_dataset(path, batch_size, resolution=resolution, shuffle=True, repeat=True, mirror=True)
    it = iter(ds)
    for _ in range(5):  # warm-up: fill the shuffle buffer and the prefetch
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)["image"].numpy()
    seconds = time.perf_counter() - start
    return dict(bench="reader", resolution=resolution, batch_size=batch_size,
                images_per_s=round(batches * batch_size / seconds, 1))


def synthetic_dataset(work, resolution, count):
    out = os.path.join(work, f"synthetic{resolution}")
    rng = np.random.RandomState(0)
    images = ((f"synthetic {i}", rng.randint(0, 256, [3, resolution, resolution]).astype(np.uint8))
              for i in range(count))
    tool.write_dataset(out, images, count, overwrite=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_images", type=int, default=10000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--work_dir")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="vgrow_bench_")
    path, result = bench_convert(work, args.num_images, args.size)
    print(json.dumps(result), flush=True)
    print(json.dumps(bench_reader(path, 32)), flush=True)
    print(json.dumps(bench_reader(synthetic_dataset(work, 256, 2000), 256, batch_size=32, batches=100)), flush=True)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Speed of the metrics on this machine: Inception feature extraction and the Frechet distance.

    python benchmarks/metrics_speed.py [--num_images 256] [--batch_size 64] [--sizes 32,256]
    python benchmarks/metrics_speed.py --only fid [--fid_dim 2048] [--fid_samples 10000]

Inception: the InceptionV3 architecture (keras.applications, random weights: nothing is downloaded), fed
uint8 images of each size through the same path as --feature_net=inception_keras (bilinear resize to 299).
Prints images/s per input size. The TTUR graph (inception_pb) has the same architecture and similar speed.

FID: wall and CPU seconds of the Frechet distance between two sets of statistics of --fid_dim features
(post-ReLU, decaying spectrum, like Inception's pool features), with the eigenvalue trace we use and with
the reference scipy.linalg.sqrtm formula of TTUR / pytorch-fid, and their relative difference.
"""
import argparse
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sizes", default="32,256")
    parser.add_argument("--only", choices=["inception", "fid"])
    parser.add_argument("--fid_dim", type=int, default=2048)
    parser.add_argument("--fid_samples", type=int, default=10000)
    args = parser.parse_args()
    if args.only != "fid":
        inception_speed(args)
    if args.only != "inception":
        fid_speed(args.fid_dim, args.fid_samples)


def timed(function, *args):
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def fid_speed(dim, samples):
    from vgrow_tf.metrics import fid
    rng = np.random.RandomState(0)
    mixing = (rng.randn(dim, dim) * np.exp(-np.arange(dim) / 64.0)).astype(np.float32)
    stats = [fid.feature_statistics(np.maximum((rng.randn(samples, dim).astype(np.float32) + shift) @ mixing.T, 0))
             for shift in (0.0, 0.1)]
    results = {}
    for method in ("eigh", "sqrtm"):
        value, wall, cpu = timed(fid.frechet_distance, *stats[0], *stats[1], method)
        results[method] = value
        print(f"FID {dim}x{dim} ({samples} samples per set), {method:5s}: {wall:8.2f} s wall, {cpu:8.2f} s CPU, "
              f"FID {value:.10g}", flush=True)
    print(f"relative difference: {abs(results['eigh'] - results['sqrtm']) / abs(results['sqrtm']):.2e}")


def inception_speed(args):
    from vgrow_tf.metrics import features
    net = features.inception_keras(random_weights=True)
    rng = np.random.RandomState(0)
    for size in [int(s) for s in args.sizes.split(",")]:
        images = rng.randint(0, 256, (args.batch_size, size, size, 3)).astype(np.uint8)
        net(images[:2])  # trace
        done, start = 0, time.time()
        while done < args.num_images:
            net(images)
            done += len(images)
        rate = done / (time.time() - start)
        print(f"InceptionV3 (random weights) {size:4d} px -> 299: {rate:8.1f} images/s "
              f"(batch {args.batch_size}, {done} images)")


if __name__ == "__main__":
    main()

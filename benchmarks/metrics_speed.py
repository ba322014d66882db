"""Feature-extraction speed of the metrics' Inception network on this machine.

    python benchmarks/metrics_speed.py [--num_images 256] [--batch_size 64] [--sizes 32,256]

InceptionV3 architecture (keras.applications, random weights: nothing is downloaded), fed uint8 images of
each size through the same path as --feature_net=inception_keras (bilinear resize to 299). Prints
images/s per input size. The TTUR graph (inception_pb) has the same architecture and similar speed.
"""
import argparse
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sizes", default="32,256")
    args = parser.parse_args()
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

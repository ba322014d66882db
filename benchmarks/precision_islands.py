"""What each float32 island costs under mixed precision: one training iteration, CPU and wall seconds.

    python benchmarks/precision_islands.py [--models vgrow_pg msg_stylegan] [--resolution 32]
                                           [--width 128] [--batch_size 16] [--iterations 4] [--rounds 3]

Variants, each a trainer built under its policy on cached synthetic data (compute only), timed in
interleaved rounds (A, B, C, ..., A, B, C, ...) so that other load on the machine hits them alike:
  float32       the float32 policy;
  mixed         the mixed policy as shipped: equalized-LR scaling, pixel/instance-norm and minibatch-stddev
                statistics and the last layers (toRGB, logit) in float32 (vgrow_tf/layers.py);
  mixed-no-<x>  the same with island <x> computed in the compute dtype instead (eqlr, stats, last);
  mixed-all-low every island in the compute dtype (what a plain Keras mixed policy would do).
Prints one JSON line per variant: median CPU s and wall s per iteration over rounds, and the ratio to
float32. Losses, gradient penalty / R1 norms, the particle move, EMA and optimizer state are float32 in
every mixed variant (they are computed outside the networks or on float32 variables).
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vgrow_tf  # noqa: E402,F401  (first: quiets TensorFlow's C++ logs)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.train_throughput import CachedData, make_trainer, synthetic_dataset  # noqa: E402
from vgrow_tf import layers  # noqa: E402
from vgrow_tf.training import precision  # noqa: E402

WIDTHS = {"vgrow_pg": lambda w: dict(fmaps=w, z_dim=128),
          "msg_stylegan": lambda w: dict(fmap_base=16 * w, fmap_max=w, mapping_fmaps=w, z_dim=w),
          "msg_progan": lambda w: dict(fmap_base=16 * w, fmap_max=w, z_dim=w)}


def _low_scaled(weight, scale, dtype):
    return tf.cast(weight, dtype) * tf.cast(scale, dtype)


def _low_rsqrt_mean_square(x, axis, epsilon):
    return tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axis, keepdims=True) + tf.cast(epsilon, x.dtype))


def _low_instance_norm(x, epsilon=1e-8):
    x -= tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return x * _low_rsqrt_mean_square(x, [1, 2], epsilon)


def _low_mbstd_call(self, x):
    shape = tf.shape(x)
    n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
    g = n if self.group_size is None else tf.minimum(self.group_size, n)
    f = self.num_new_features
    y = tf.reshape(x, [g, -1, h, w, f, c // f])
    y -= tf.reduce_mean(y, axis=0, keepdims=True)
    y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + tf.cast(self.epsilon, x.dtype))
    y = tf.tile(tf.reduce_mean(y, axis=[1, 2, 4])[:, None, None, :], [g, h, w, 1])
    return tf.concat([x, y], axis=-1)


LOW = {"eqlr": [(layers, "scaled", _low_scaled)],
       "stats": [(layers, "_rsqrt_mean_square", _low_rsqrt_mean_square), (layers, "instance_norm", _low_instance_norm),
                 (layers.MinibatchStddev, "call", _low_mbstd_call)],
       "last": [(layers, "OUTPUT", {})]}


@contextlib.contextmanager
def islands_low(names):
    """Computes the named islands in the compute dtype while trainers are built and traced."""
    from vgrow_tf.models import msg_gan
    saved = []
    for name in names:
        for owner, attr, value in LOW[name]:
            saved.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, value)
    if "stats" in names:  # msg_gan imported instance_norm through the module: patched above
        assert msg_gan.layers is layers
    try:
        yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


def build(model, dataset, resolution, batch_size, width, policy, low):
    keras.mixed_precision.set_global_policy(policy)
    with CachedData(), islands_low(low):
        trainer = make_trainer(model, dataset, resolution, batch_size, WIDTHS[model](width))
        nimg = 0
        for _ in range(2):  # trace and warm up inside the patch, so the graph keeps the variant
            nimg += trainer.train_iteration(nimg)["nimg"]
    keras.mixed_precision.set_global_policy("float32")
    return trainer, nimg


def timed(trainer, nimg, iterations):
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(iterations):
        nimg += trainer.train_iteration(nimg)["nimg"]
    return (time.process_time() - cpu) / iterations, (time.perf_counter() - wall) / iterations, nimg


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgrow_pg", "msg_stylegan"])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["float32", "mixed", "mixed-no-eqlr", "mixed-no-stats",
                                                           "mixed-no-last", "mixed-all-low"])
    parser.add_argument("--work_dir")
    args = parser.parse_args()
    policy = precision.choose_policy(bool(tf.config.list_physical_devices("GPU")), False,
                                     precision.cpu_has_bfloat16(precision.cpu_flags()))[0]
    work = args.work_dir or tempfile.mkdtemp(prefix="precision_islands_")
    dataset = synthetic_dataset(work, args.resolution)
    for model in args.models:
        variants = {}
        for name in args.variants:
            low = {"mixed-all-low": list(LOW), "float32": [], "mixed": []}.get(name, [name[len("mixed-no-"):]])
            variants[name] = list(build(model, dataset, args.resolution, args.batch_size, args.width,
                                        "float32" if name == "float32" else policy, low))
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, state in variants.items():
                cpu, wall, state[1] = timed(state[0], state[1], args.iterations)
                times[name].append((cpu, wall))
        base = np.median([c for c, _ in times["float32"]]) if "float32" in times else None
        for name, values in times.items():
            cpu, wall = np.median([c for c, _ in values]), np.median([w for _, w in values])
            print(json.dumps(dict(model=model, variant=name, policy="float32" if name == "float32" else policy,
                                  resolution=args.resolution, width=args.width, batch_size=args.batch_size,
                                  cpu_s_per_iteration=round(float(cpu), 4), wall_s_per_iteration=round(float(wall), 4),
                                  cpu_vs_float32=round(float(base / cpu), 2) if base else None)), flush=True)


if __name__ == "__main__":
    main()

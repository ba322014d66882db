"""How well MSG-StyleGAN and MSG-ProGAN learn the bundled digits: mean and spread over seeds.

    python benchmarks/msg_digits_quality.py [--total_kimg 30] [--seeds 1234 7 42]
                                            [--models msg_stylegan msg_progan] [--work_dir DIR]
                                            [--precisions float32 mixed]

Each model trains at its `configs/<model>/digits.cfg` settings (narrow networks, batch 32) for a fixed
image budget, once per seed, on the 1397 training digits of `vgrow_digits.py`'s split (16 px). The
score is the Fréchet distance between 400 samples of the final Gs (truncation off, random noise) and
the 400 held-out digits, in the 64-d features of the same small classifier (lower is better). Training
is deterministic per seed, so the spread is between seeds. Rerunning with the same --work_dir reuses
finished runs. With --precisions float32 mixed (`mixed`: --mixed_precision) the two sides alternate per
seed, and each run's training CPU seconds are printed beside its wall minutes.
"""
import argparse
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

from benchmarks.vgrow_digits import HELD_OUT, digits_setup, to_float  # noqa: E402
from vgrow_tf import snapshot  # noqa: E402
from vgrow_tf.training import loop  # noqa: E402
from vgrow_tf.training.options import all_options, make_options  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSERS = {"integer": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes"),
           "list": lambda v: [x for x in v.split(",") if x]}


def config_overrides(model):
    """The `--name=value` lines of configs/<model>/digits.cfg as typed option values."""
    kinds = {o.name: o.kind for o in all_options()}
    out = {}
    with open(os.path.join(REPO, "configs", model, "digits.cfg")) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("--"):
                continue
            name, _, value = line[2:].partition("=")
            out[name] = PARSERS.get(kinds[name], str)(value)
    return out


def train_one(model, seed, dataset, run_dir, total_kimg, mixed_precision=None):
    overrides = dict(config_overrides(model), dataset=dataset, run_dir=run_dir, total_kimg=total_kimg,
                     tick_kimg=total_kimg / 2, snapshot_kimg=total_kimg, seed=seed, jit_compile=True)
    if mixed_precision is not None:
        overrides["mixed_precision"] = mixed_precision
    overrides.pop("model")
    final = os.path.join(run_dir, "network-final.h5")
    start, cpu_start = time.time(), time.process_time()
    if not os.path.isfile(final):
        loop.train(make_options(model, **overrides))
    keras.mixed_precision.set_global_policy("float32")  # score in float32
    return final, (time.time() - start) / 60, time.process_time() - cpu_start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total_kimg", type=float, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234, 7, 42])
    parser.add_argument("--models", nargs="+", default=["msg_stylegan", "msg_progan"])
    parser.add_argument("--work_dir")
    parser.add_argument("--precisions", nargs="+", default=["config"], choices=["config", "float32", "mixed"],
                        help="config: as the model's digits.cfg says")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="msg_digits_")
    dataset, _, score, (train_x, _), _ = digits_setup(work)
    print(json.dumps(dict(name="baseline: training images", fd=round(score(to_float(train_x)[:HELD_OUT]), 3))),
          flush=True)
    summary = []
    mixed = {"config": None, "float32": False, "mixed": True}
    for model in args.models:
        fds, cpu = {p: [] for p in args.precisions}, {p: [] for p in args.precisions}
        for seed in args.seeds:
            for precision in args.precisions:
                tag = "" if precision == "config" else f"-{precision}"
                final, minutes, cpu_s = train_one(model, seed, dataset, os.path.join(work, f"{model}{tag}-seed{seed}"),
                                                  args.total_kimg, mixed[precision])
                snap = snapshot.load(final)
                latents = np.asarray(tf.random.stateless_normal([HELD_OUT, snap.latent_dim], seed=[7, 0]))
                fds[precision].append(score(np.asarray(snap.generate(latents, noise_seed=7))))
                cpu[precision].append(cpu_s)
                print(json.dumps(dict(model=model, precision=precision, seed=seed, kimg=args.total_kimg,
                                      fd=round(fds[precision][-1], 3), train_minutes=round(minutes, 1),
                                      train_cpu_s=round(cpu_s, 1))), flush=True)
        for precision in args.precisions:
            values = fds[precision]
            summary.append(dict(model=model, precision=precision, kimg=args.total_kimg, seeds=args.seeds,
                                mean=float(np.mean(values)), std=float(np.std(values, ddof=1)) if len(values) > 1
                                else 0.0, min=float(np.min(values)), max=float(np.max(values)),
                                train_cpu_s=float(np.mean(cpu[precision]))))
            print(json.dumps(summary[-1]), flush=True)
    print("\n| model | precision | kimg | seeds | FD mean ± std (min–max) | train CPU s (mean) |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['model']} | {s['precision']} | {s['kimg']:g} | {len(s['seeds'])} | {s['mean']:.2f} ± "
              f"{s['std']:.2f} ({s['min']:.2f}–{s['max']:.2f}) | {s['train_cpu_s']:.0f} |")


if __name__ == "__main__":
    main()

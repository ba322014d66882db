"""Evidence that VGrow-PG learns: each divergence on the bundled digits, scored against held-out digits.

    python benchmarks/vgrow_digits.py [--total_kimg 60] [--divergences KL JS Jef LogD] [--work_dir DIR]
                                      [--seeds 1234 7 42] [--precisions float32 mixed]

The 1797 scikit-learn digits (upsampled to 16x16) are split 1397 / 400. VGrow-PG trains on the first
part for a fixed image budget per divergence (narrow networks, XLA). The score is a Fréchet distance
between 400 generated and the 400 held-out digits in the 64-d penultimate features of a small
classifier trained on the training split (a domain-specific FID). For scale it prints two baselines:
the training images themselves (the floor a perfect model approaches) and independent per-pixel
Gaussian noise with the training set's mean and variance (a model that learned nothing but moments).
Each trained model is also scored after DGflow refinement of the same latents (KL, eta 0.1, gamma 0.01,
25 steps, through its own discriminator). Rerunning with the same --work_dir reuses finished runs.
With several --seeds or --precisions (`mixed`: --mixed_precision) runs are interleaved (per seed, each
precision in turn), each line gives the run's CPU seconds, and a mean ± std table closes the output.
"""
import argparse
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vgrow_tf  # noqa: E402,F401  (first: quiets TensorFlow's C++ logs)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from vgrow_tf import snapshot  # noqa: E402
from vgrow_tf.data import tool  # noqa: E402
from vgrow_tf.sampling import refine  # noqa: E402
from vgrow_tf.training import loop  # noqa: E402
from vgrow_tf.training.options import make_options  # noqa: E402

HELD_OUT = 400


def split_digits(resolution=16):
    images, labels = tool.digits_arrays(resolution)
    order = np.random.RandomState(0).permutation(len(images))
    images, labels = images[order], labels[order]
    return (images[HELD_OUT:], labels[HELD_OUT:]), (images[:HELD_OUT], labels[:HELD_OUT])


def to_float(nchw_uint8):
    return nchw_uint8.transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1.0


def train_feature_net(images, labels, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(images.shape[1:])
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(128, activation="relu")(x)
    features = keras.layers.Dense(64, activation="relu", name="features")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(features))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(images, labels, epochs=30, batch_size=64, verbose=0)
    return keras.Model(inputs, model.get_layer("features").output), model


def frechet(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = scipy.linalg.sqrtm(cov_a @ cov_b, disp=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root.real))


def quantise(images):
    return np.clip(np.rint(images * 127.5 + 127.5), 0, 255) / 127.5 - 1.0


def digits_setup(work):
    """The training digits (written once as a dataset in `work`), the classifier, and score(images): the
    Frechet distance of the images to the held-out digits in the classifier's 64-d features."""
    (train_x, train_y), (held_x, held_y) = split_digits()
    dataset = os.path.join(work, "digits_train")
    if not os.path.isdir(dataset):
        tool.write_dataset(dataset, ((f"digit {i}", x) for i, x in enumerate(train_x)), len(train_x))
    features, classifier = train_feature_net(to_float(train_x), train_y)
    held_features = features.predict(to_float(held_x), verbose=0)
    score = lambda images: frechet(features.predict(quantise(images), verbose=0), held_features)  # noqa: E731
    return dataset, classifier, score, (train_x, train_y), (held_x, held_y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total_kimg", type=float, default=60)
    parser.add_argument("--divergences", nargs="+", default=["KL", "JS", "Jef", "LogD"])
    parser.add_argument("--dgflow_steps", type=int, default=25, help="also score DGflow-refined samples (0: off)")
    parser.add_argument("--work_dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=["float32", "mixed"])
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="vgrow_digits_")
    dataset, classifier, score, (train_x, _), (held_x, held_y) = digits_setup(work)
    held_accuracy = float(np.mean(classifier.predict(to_float(held_x), verbose=0).argmax(1) == held_y))

    rng = np.random.RandomState(1)
    train_float = to_float(train_x)
    noise = rng.normal(train_float.mean(0), train_float.std(0), size=(HELD_OUT,) + train_float.shape[1:])
    results = [dict(name="baseline: training images", fd=score(train_float[:HELD_OUT])),
               dict(name="baseline: per-pixel Gaussian", fd=score(np.clip(noise, -1, 1)))]
    print(json.dumps(dict(classifier_held_out_accuracy=round(held_accuracy, 3))), flush=True)
    for result in results:
        print(json.dumps(result), flush=True)
    runs = [(d, seed, p) for d in args.divergences for seed in args.seeds for p in args.precisions]
    for divergence, seed, precision in runs:
        tag = "" if (seed, precision) == (1234, "float32") else f"-{precision}-seed{seed}"
        run_dir = os.path.join(work, f"run-{divergence}{tag}")
        options = make_options("vgrow_pg", dataset=dataset, run_dir=run_dir, divergence=divergence, fmaps=32,
                               z_dim=128, batch_size=32, dur_nimg=int(args.total_kimg * 1000 / 6),
                               total_kimg=args.total_kimg, tick_kimg=10, snapshot_kimg=args.total_kimg,
                               jit_compile=True, num_row=10, num_line=10, seed=seed,
                               mixed_precision=precision == "mixed")
        final = os.path.join(run_dir, "network-final.h5")
        start, cpu_start = time.time(), time.process_time()
        if not os.path.isfile(final):  # reuse a finished run: rerunning only adds the DGflow scores
            loop.train(options)
        minutes, cpu_s = (time.time() - start) / 60, time.process_time() - cpu_start
        keras.mixed_precision.set_global_policy("float32")  # score and refine in float32
        snap = snapshot.load(final)
        latents = np.asarray(tf.random.stateless_normal([HELD_OUT, snap.latent_dim], seed=[7, 0]))
        fakes = np.asarray(snap.generate(latents))
        grids = sorted(glob.glob(os.path.join(run_dir, "fakes*.png")))
        result = dict(name=f"VGrow-PG {divergence}", seed=seed, precision=precision, fd=score(fakes),
                      kimg=args.total_kimg, train_minutes=round(minutes, 1), train_cpu_s=round(cpu_s, 1),
                      last_grid=grids[-1] if grids else None)
        if args.dgflow_steps:
            refined = refine.refined_images(snap, latents, steps=args.dgflow_steps, eta=0.1, gamma=0.01,
                                            divergence="KL", save_every=args.dgflow_steps)
            result["fd_dgflow_kl"] = score(refined[args.dgflow_steps])
        results.append(result)
        print(json.dumps(result), flush=True)
    print("\n| model | Fréchet distance to held-out digits (classifier features) | after DGflow (KL, 25 steps) |")
    print("|---|---|---|")
    for result in results:
        refined = f"{result['fd_dgflow_kl']:.2f}" if "fd_dgflow_kl" in result else "—"
        print(f"| {result['name']} | {result['fd']:.2f} | {refined} |")
    print_spread(results[2:])


def print_spread(results):
    """Per divergence and precision: FD mean ± std over seeds (and after DGflow), training CPU s."""
    print("\n| model | precision | seeds | FD mean ± std | after DGflow | train CPU s (mean) |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["name"] for r in results):
        for precision in dict.fromkeys(r["precision"] for r in results):
            group = [r for r in results if r["name"] == name and r["precision"] == precision]
            fd = np.array([r["fd"] for r in group])
            refined = np.array([r.get("fd_dgflow_kl", np.nan) for r in group])
            std = lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
            print(f"| {name} | {precision} | {len(group)} | {fd.mean():.2f} ± {std(fd):.2f} | "
                  f"{refined.mean():.2f} ± {std(refined):.2f} | {np.mean([r['train_cpu_s'] for r in group]):.0f} |")


if __name__ == "__main__":
    main()

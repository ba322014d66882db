"""Where training time goes: the step alone, the full pipeline, and the input pipeline alone.

    python benchmarks/train_throughput.py                       # every model, 32/64/128 px, small widths
    python benchmarks/train_throughput.py --models vgrow_pg --resolutions 128 256 --real_size
    python benchmarks/train_throughput.py --jit_compile --mixed_precision

For each model and resolution it writes a synthetic tfrecord dataset and prints one JSON line:
  step_img_s      training images/s with the data cached in memory (compute only),
  pipeline_img_s  training images/s reading and decoding the tfrecords (what a run sees),
  input_img_s     images/s of the tf.data reader alone at the same batch size,
  input_ratio     input_img_s / step_img_s (must stay >= 10 so the reader is never the bottleneck),
  traces          how many times the step was traced (1 per resolution level is the target),
  peak_rss_mb     the process's peak resident memory so far (and peak GPU memory when there is one).
Small widths by default so that a 2-core CPU finishes; `--real_size` uses each model's paper widths.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vgrow_tf  # noqa: E402,F401  (first: it quiets TensorFlow's C++ logs)
import tensorflow as tf  # noqa: E402

import vgrow_tf.data as data_lib  # noqa: E402
from vgrow_tf import models  # noqa: E402
from vgrow_tf.data import tool  # noqa: E402
from vgrow_tf.errors import UserError  # noqa: E402
from vgrow_tf.training.options import make_options  # noqa: E402

# Small widths for CPU runs; per-model option names (ignored where a family lacks the option).
SMALL = {
    "vgrow_pg": dict(fmaps=32),
    "msg_stylegan": dict(fmap_base=512, fmap_max=64, mapping_fmaps=64, z_dim=64),
    "msg_progan": dict(fmap_base=512, fmap_max=64, z_dim=64),
    "glo": dict(),
    "scogan": dict(),
    "cogan": dict(),
}


def synthetic_dataset(work, resolution, channels=3, count=1024):
    path = os.path.join(work, f"synthetic{resolution}")
    if not os.path.isdir(path):
        rng = np.random.RandomState(0)
        images = ((f"synthetic {i}", rng.randint(0, 256, [channels, resolution, resolution]).astype(np.uint8))
                  for i in range(count))
        tool.write_dataset(path, images, count, labels=np.eye(10, dtype=np.float32)[np.arange(count) % 10])
    return path


def make_trainer(model, dataset, resolution, batch_size, extra):
    family = models.get_family(model)
    overrides = dict(dataset=dataset, batch_size=batch_size, resolution=resolution, init_resolution=resolution,
                     dataset_b=dataset, **extra)
    probe = make_options(model)
    options = make_options(model, **{k: v for k, v in overrides.items() if hasattr(probe, k)})
    strategy = tf.distribute.get_strategy()
    return family.Trainer(options, strategy, family.Trainer.inspect_data(options))


def time_iterations(trainer, iterations, warmup=2):
    nimg = 0
    for _ in range(warmup):
        nimg += trainer.train_iteration(nimg)["nimg"]
    start, done = time.perf_counter(), 0
    for _ in range(iterations):
        stats = trainer.train_iteration(nimg)
        nimg += stats["nimg"]
        done += stats["nimg"]
    return done / (time.perf_counter() - start)


def input_rate(dataset, resolution, batch_size, batches=50):
    it = iter(data_lib.load_dataset(dataset, batch_size, resolution=resolution, shuffle=True, repeat=True))
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)["image"].numpy()
    return batches * batch_size / (time.perf_counter() - start)


class CachedData:
    """Replaces the reader with one cached batch, so the step is timed without input costs."""

    def __enter__(self):
        self.original = data_lib.load_dataset

        def cached(*args, **kwargs):
            return self.original(*args, **kwargs).take(1).cache().repeat()

        data_lib.load_dataset = cached
        return self

    def __exit__(self, *exc):
        data_lib.load_dataset = self.original


def traces(trainer):
    counts = getattr(trainer, "trace_counts", None)
    return sum(counts.values()) if isinstance(counts, dict) else counts


def peak_memory():
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if tf.config.list_physical_devices("GPU"):
        out["peak_gpu_mb"] = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20)
    return out


def bench(model, resolution, batch_size, iterations, work, real_size, flags):
    dataset = synthetic_dataset(work, resolution)
    extra = dict(flags, **({} if real_size else SMALL.get(model, {})))
    with CachedData():
        trainer = make_trainer(model, dataset, resolution, batch_size, extra)
        step = time_iterations(trainer, iterations)
        step_traces = traces(trainer)
    trainer = make_trainer(model, dataset, resolution, batch_size, extra)
    pipeline = time_iterations(trainer, iterations)
    reader = input_rate(dataset, resolution, batch_size)
    return dict(model=model, resolution=resolution, batch_size=batch_size, device=device_name(),
                jit_compile=flags.get("jit_compile", False), mixed_precision=flags.get("mixed_precision", False),
                real_size=real_size, step_img_s=round(step, 1), pipeline_img_s=round(pipeline, 1),
                input_img_s=round(reader, 1), input_ratio=round(reader / step, 1),
                pipeline_over_step=round(pipeline / step, 2), traces=step_traces, **peak_memory())


def device_name():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"CPU x{os.cpu_count()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgrow_pg", "msg_stylegan", "msg_progan", "glo", "scogan"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--real_size", action="store_true", help="paper widths instead of small ones")
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--mixed_precision", action="store_true")
    parser.add_argument("--work_dir")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="vgrow_throughput_")
    flags = {k: True for k in ("jit_compile", "mixed_precision") if getattr(args, k)}
    if args.mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16")
    for model in args.models:
        for resolution in args.resolutions:
            try:
                result = bench(model, resolution, args.batch_size, args.iterations, work, args.real_size, flags)
            except UserError as e:
                result = dict(model=model, resolution=resolution, skipped=str(e))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

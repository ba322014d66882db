"""Exported generators: file size and per-image latency of each format, beside vgrow_tf's own sampling.

    python benchmarks/export_latency.py                                      # tests/fixtures' MSG-StyleGAN pickle
    python benchmarks/export_latency.py results/ffhq/network-final.h5 --batch_sizes 1 8
    python benchmarks/export_latency.py SOURCE --threads 2

Exports SOURCE as a SavedModel, LiteRT (float32, float16, dynamic) and ONNX in a temporary folder, runs
each in its own runtime (TensorFlow, LiteRT, onnxruntime) on the same z and prints one JSON line per
format and batch size: size_mb, ms_per_image (median over --repeats calls after one warm-up call),
export_s (conversion wall seconds) and max_diff (uint8 levels from vgrow_tf's images, which are the
reference row "vgrow_tf"). Needs the export libraries: pip install -e ".[export]".
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vgrow_tf  # noqa: E402,F401  (first: it quiets TensorFlow's C++ logs)
import tensorflow as tf  # noqa: E402

from vgrow_tf import export, snapshot  # noqa: E402
from vgrow_tf.sampling import latents, modes  # noqa: E402
from vgrow_tf.sampling.images import to_uint8  # noqa: E402

DEFAULT_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                              "msg_stylegan", "network.pkl")
VARIANTS = [("saved_model", None), ("tflite", None), ("tflite", "float16"), ("tflite", "dynamic"), ("onnx", None)]


def runner(fmt, path, threads):
    """call(z) -> uint8 images, in the format's own runtime."""
    if fmt == "saved_model":
        function = tf.saved_model.load(path).signatures["serving_default"]
        return lambda z: function(z=tf.constant(z))["images"].numpy()
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        run = Interpreter(path, num_threads=threads).get_signature_runner("serving_default")
        return lambda z: run(z=z)["images"]
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda z: session.run(None, {"z": z})[0]


def time_per_image(call, z, repeats):
    call(z)  # warm-up: first-call allocation and tracing are not per-image costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(z)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / len(z)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=DEFAULT_SOURCE)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    snap = snapshot.load(args.source)
    gen_kw = modes.generation_kwargs(snap, None, False)
    z_all = latents.latents_for_seeds(snap, list(range(max(args.batch_sizes))))
    reference = to_uint8(snap.generate(z_all, **gen_kw))
    base = dict(source=os.path.basename(args.source), kind=snap.kind, model=export.describe(snap))
    for batch in args.batch_sizes:
        ms = time_per_image(lambda z: snap.generate(z, **gen_kw), z_all[:batch], args.repeats)
        print(json.dumps(dict(base, format="vgrow_tf", batch=batch, ms_per_image=round(ms, 3))), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for fmt, quantize in VARIANTS:
            path = os.path.join(folder, f"model-{fmt}-{quantize}")
            start = time.perf_counter()
            export.export(snap, path, fmt, quantize)
            export_s = time.perf_counter() - start
            call = runner(fmt, path, args.threads)
            diff = int(np.abs(call(z_all).astype(int) - reference).max())
            for batch in args.batch_sizes:
                ms = time_per_image(call, z_all[:batch], args.repeats)
                print(json.dumps(dict(base, format=fmt if quantize is None else f"{fmt}-{quantize}", batch=batch,
                                      size_mb=round(export.size_on_disk(path) / 1e6, 3), export_s=round(export_s, 1),
                                      ms_per_image=round(ms, 3), max_diff=diff)), flush=True)


if __name__ == "__main__":
    main()

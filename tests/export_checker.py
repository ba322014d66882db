"""Runs exported files with TensorFlow / LiteRT / onnxruntime only, in a process where vgrow_tf cannot be
imported (tests/test_export.py starts it as `python -I export_checker.py jobs.json results.npz`).

jobs.json: [{"name", "format", "path", "signature", "inputs": {input name: .npy file}}]; each output
array is stored in results.npz as "<name>/<output name>", metadata as "<name>/meta/<key>".
"""
import json
import os
import sys

sys.modules["vgrow_tf"] = None  # an installed (editable) vgrow_tf must stay out of reach, not just off the path


def vgrow_tf_importable():
    try:
        import vgrow_tf  # noqa: F401
        return True
    except ImportError:
        return False


def run_saved_model(job, inputs, results):
    import tensorflow as tf
    model = tf.saved_model.load(job["path"])
    outputs = model.signatures[job["signature"]](**{k: tf.constant(v) for k, v in inputs.items()})
    results.update({k: v.numpy() for k, v in outputs.items()})
    for key, value in model.signatures["metadata"]().items():
        results[f"meta/{key}"] = value.numpy()
    with open(os.path.join(job["path"], "assets", "vgrow_tf_metadata.json")) as f:
        results["meta/assets_json"] = f.read()


def run_tflite(job, inputs, results):
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(job["path"]).get_signature_runner(job["signature"])
    first = {k: v[:1] for k, v in inputs.items()}  # a batch of 1 first: the batch size is chosen per call
    results.update({f"first/{k}": v for k, v in runner(**first).items()})
    results.update(runner(**inputs))


def run_onnx(job, inputs, results):
    import onnxruntime
    session = onnxruntime.InferenceSession(job["path"], providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results.update(zip(names, session.run(None, inputs)))
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        results[f"meta/{key}"] = value


RUNNERS = {"saved_model": run_saved_model, "tflite": run_tflite, "onnx": run_onnx}


def main(jobs_file, results_file):
    import numpy as np
    with open(jobs_file) as f:
        jobs = json.load(f)
    stored = {"vgrow_tf_importable": np.asarray(vgrow_tf_importable())}
    for job in jobs:
        inputs = {k: np.load(v) for k, v in job["inputs"].items()}
        results = {}
        RUNNERS[job["format"]](job, inputs, results)
        stored.update({f"{job['name']}/{k}": np.asarray(v) for k, v in results.items()})
    stored["vgrow_tf_modules_loaded"] = np.asarray(
        [name for name, module in sys.modules.items() if name.split(".")[0] == "vgrow_tf" and module is not None],
        dtype=str)
    np.savez(results_file, **stored)


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Exports of a snapshot's generator that need nothing of vgrow_tf to run: one module per format.

    export(snap, out, "saved_model" | "tflite" | "onnx", quantize=None, overwrite=False)

Every format is built from the same serving functions (`serving.py`): z [N, z_dim] float32 in,
uint8 images [N, H, W, C] out, the images generate_samples.py writes for the same z. The file or
folder is written under a temporary name and renamed when complete.
"""
import importlib
import importlib.util
import os
import shutil

from vgrow_tf.errors import UserError

# format -> (module, what it writes, the packages its conversion imports: (import name, pip name))
FORMATS = {
    "saved_model": ("vgrow_tf.export.saved_model", "a SavedModel folder", ()),
    "tflite": ("vgrow_tf.export.tflite", "one .tflite file", ()),
    "onnx": ("vgrow_tf.export.onnx", "one .onnx file", (("tf2onnx", "tf2onnx"), ("onnx", "onnx"))),
}
QUANTIZE = ("float16", "dynamic")
INSTALL_HINT = "pip install 'vgrow_tf[export]'"


def check_request(fmt, out, quantize=None, overwrite=False):
    """Everything that can be refused before loading the model: format, quantisation, OUT, libraries."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if quantize is not None:
        if fmt != "tflite":
            raise UserError(f"--quantize applies to --format=tflite only, not to {fmt}")
        if quantize not in QUANTIZE:
            raise UserError(f"unknown --quantize {quantize!r}; choose {' or '.join(QUANTIZE)}")
    if os.path.lexists(out) and not overwrite:
        raise UserError(f"{out} already exists; choose another name or pass --overwrite")
    missing = [pip_name for name, pip_name in FORMATS[fmt][2] if not _importable(name)]
    if missing:
        raise UserError(f"--format={fmt} needs {', '.join(missing)}: {INSTALL_HINT}")


def _importable(name):
    return importlib.util.find_spec(name) is not None


def export(snap, out, fmt="saved_model", quantize=None, overwrite=False, source=None):
    """Writes `snap`'s generator to `out` in format `fmt`; returns `out`."""
    from vgrow_tf.export import serving
    check_request(fmt, out, quantize, overwrite)
    writer = importlib.import_module(FORMATS[fmt][0])
    module = serving.serving_module(snap, source)
    tmp = _temporary_name(out)
    try:
        writer.write(module, tmp, quantize=quantize)
        _replace(tmp, out)
    finally:
        _remove(tmp)
    return out


def _temporary_name(out):
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    return os.path.join(parent, f".{os.path.basename(os.path.normpath(out))}.tmp-{os.getpid()}")


def _replace(tmp, out):
    if os.path.lexists(out):  # --overwrite; a folder cannot be replaced by os.replace in one step
        _remove(out)
    os.replace(tmp, out)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)

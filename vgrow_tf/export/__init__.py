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

# format -> (its module, the packages its conversion imports beyond TensorFlow)
FORMATS = {
    "saved_model": ("vgrow_tf.export.saved_model", ()),
    "tflite": ("vgrow_tf.export.tflite", ()),
    "onnx": ("vgrow_tf.export.onnx", ("tf2onnx", "onnx")),
}
QUANTIZE = ("float16", "dynamic")
INSTALL_HINT = 'pip install -e ".[export]" (tf2onnx, onnx, onnxruntime, ai-edge-litert)'


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
    missing = [name for name in FORMATS[fmt][1] if not _importable(name)]
    if missing:
        raise UserError(f"--format={fmt} needs {', '.join(missing)}: {INSTALL_HINT}")


def _importable(name):
    return importlib.util.find_spec(name) is not None


def check_model(snap):
    """A model the exports can serve: one with a generator of latents (not a classifier or corrector)."""
    if not hasattr(snap.family, "generator_tensor") or int(snap.latent_dim) <= 0:
        raise UserError(f"a {snap.kind} model has no generator of latents; export_model.py exports generators "
                        "(vgrow_pg, msg_stylegan, msg_progan, glo, cogan, scogan)")


def describe(snap):
    from vgrow_tf.export import serving
    info = serving.metadata(snap)
    return f"{info['resolution']}x{info['resolution']}x{info['channels']}, z_dim {info['z_dim']}"


def export(snap, out, fmt="saved_model", quantize=None, overwrite=False, source=None, verbose=False):
    """Writes `snap`'s generator to `out` in format `fmt`; returns `out`. A converter's failure is a
    UserError naming the model and the format (an unsupported combination)."""
    from vgrow_tf.export import serving
    out = os.path.normpath(out)
    check_request(fmt, out, quantize, overwrite)
    check_model(snap)
    writer = importlib.import_module(FORMATS[fmt][0])
    module = serving.serving_module(snap, source)
    new_folders = _make_parents(out)
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp-{os.getpid()}")
    try:
        writer.write(module, tmp, quantize=quantize, verbose=verbose)
        _replace(tmp, out)
    except BaseException as e:
        _remove(tmp)
        for folder in new_folders:  # a failed export leaves no folder it created behind
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        if verbose or isinstance(e, (UserError, OSError, MemoryError, KeyboardInterrupt, SystemExit)):
            raise
        # the converters raise many types (ConverterError, tf2onnx's); the user needs one line
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"cannot export this {snap.kind} model as {fmt} ({type(e).__name__}: {detail}); "
                        "--verbose shows the converter's traceback") from None
    finally:
        _remove(tmp)
    return out


def size_on_disk(path):
    """Bytes of a file, or of every file under a folder (a SavedModel)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def _make_parents(out):
    """Creates OUT's missing parent folders; returns them deepest first."""
    missing, parent = [], os.path.dirname(os.path.abspath(out))
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return missing


def _replace(tmp, out):
    if os.path.lexists(out):  # --overwrite; a folder cannot be replaced by os.replace in one step
        _remove(out)
    os.replace(tmp, out)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)

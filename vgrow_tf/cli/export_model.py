"""Exports a model's generator as a SavedModel, a LiteRT (.tflite) or an ONNX file that needs nothing of
vgrow_tf: z [N, z_dim] float32 in, uint8 images [N, H, W, C] out (what generate_samples.py writes).

    python export_model.py run/network-final.h5 exported/gen                          (SavedModel folder)
    python export_model.py run/ gen.tflite --format=tflite [--quantize=float16|dynamic]   (latest snapshot)
    python export_model.py ffhq/best_model.pkl gen.onnx --format=onnx              (an original's model)

SOURCE is anything --snapshot takes: a network-*.h5, a run directory (its latest snapshot), or a model
saved by an original code (msg-stylegan-tf pickle, PGVGrow / GLO-TF checkpoint, SCoGAN folders).
LiteRT and ONNX need the export libraries: pip install -e ".[export]".

Installed as vgrow-export-model; the work is in vgrow_tf.export.
"""
from absl import flags

from vgrow_tf.cli import common
from vgrow_tf.errors import UserError
from vgrow_tf.interop import FORMAT_MODULES

FORMATS = ("saved_model", "tflite", "onnx")  # vgrow_tf.export.FORMATS (kept here so --help needs no TF)

flags.DEFINE_string("format", "saved_model", f"Output format: {', '.join(FORMATS)}.")
flags.DEFINE_string("quantize", None, "LiteRT only: float16 (half-size weights) or dynamic (int8 weights, "
                    "float activations). Unset = float32.")
flags.DEFINE_string("kind", None, "Format of a model saved by an original code given as SOURCE: "
                    f"{', '.join(FORMAT_MODULES)} (default: detected from the file).")
flags.DEFINE_string("data_file", None, "GLO-TF checkpoint: its data.hdf5 of learned codes (default: found in "
                    "the original's layout).")
flags.DEFINE_boolean("overwrite", False, "Replace an existing OUT.")
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's start-up log lines, the converters' notes and "
                     "Python tracebacks of user errors (also VGROW_VERBOSE=1).")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 3:
        raise UserError("give SOURCE and OUT, e.g. python export_model.py run/network-final.h5 gen.onnx "
                        "--format=onnx")
    source, out = argv[1], argv[2]
    from vgrow_tf import export, snapshot
    export.check_request(FLAGS.format, out, FLAGS.quantize, FLAGS.overwrite)
    resolved = snapshot.resolve(source, "SOURCE", source_format=FLAGS.kind)
    import_options = {"data_file": FLAGS.data_file} if FLAGS.data_file else {}
    snap = snapshot.load(resolved.path, source_format=resolved.source_format, **import_options)
    export.export(snap, out, FLAGS.format, FLAGS.quantize, FLAGS.overwrite, source=resolved.path,
                  verbose=FLAGS.verbose)
    size = export.size_on_disk(out)
    print(f"wrote {out} ({FLAGS.format}, {snap.kind} {export.describe(snap)}, {size / 1e6:.2f} MB)")
    return 0


def run(argv=None):
    common.run_absl_program(__name__, __doc__, main, argv)


if __name__ == "__main__":
    run()

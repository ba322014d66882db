"""Converts a model saved by an original code into a vgrow_tf snapshot (installed as vgrow-convert-snapshot).

    python convert_snapshot.py ffhq/best_model.pkl ffhq.h5                  (msg-stylegan-tf pickle)
    python convert_snapshot.py pgvgrow_run/networks-02400256.ckpt pg.h5     (PGVGrow checkpoint, or its run dir)
    python convert_snapshot.py glo_train_dir/ glo.h5 --data_file=datasets/mnist/data.hdf5   (GLO-TF + codes)
    python convert_snapshot.py scogan_run/ scogan.h5                        (SCoGAN's five model folders)

Every tool that takes --snapshot also reads these files directly; converting once saves the conversion at
each later run. The detected format and architecture are printed.
"""
import argparse
import os

from vgrow_tf.cli import common
from vgrow_tf.errors import UserError, run_cli
from vgrow_tf.interop import FORMAT_MODULES

FORMATS = list(FORMAT_MODULES)


def build_parser(argv=("convert_snapshot.py",)):
    doc = common.for_program(__doc__, argv)
    parser = argparse.ArgumentParser(description=doc.split("\n")[0], epilog="\n".join(doc.split("\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the original model: a .pkl, a checkpoint prefix / file / run "
                        "directory, or a SCoGAN run folder")
    parser.add_argument("output", help="the snapshot to write (.h5)")
    parser.add_argument("--kind", choices=FORMATS, help="the source's format (default: detected)")
    parser.add_argument("--lod", type=float, help="PGVGrow: level of detail to use (default: from the "
                        "checkpoint's image count and the original schedule)")
    parser.add_argument("--data_file", help="GLO-TF: its data.hdf5 of learned codes (default: found in the "
                        "original's layout beside the checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    return parser


def describe_config(config):
    """Every architecture setting of a config, `key=value` (what train.py --resume_from takes from it)."""
    return " ".join(f"{k}={v}" for k, v in sorted(config.items()) if not isinstance(v, (dict, list)) or len(str(v)) < 80)


def main(argv):
    args = build_parser(argv).parse_args(argv[1:])
    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    if os.path.dirname(args.output) and not os.path.isdir(os.path.dirname(args.output)):
        raise UserError(f"the directory of {args.output} does not exist")
    common.quiet_start(argv)
    from vgrow_tf import snapshot
    from vgrow_tf.interop import convert

    source = snapshot.resolve(args.source, None, args.kind)
    if source.source_format is None:
        kind, config = snapshot.read_header(source.path)
        raise UserError(f"{source.path} is already a vgrow_tf snapshot ({kind}, {describe_config(config)}); "
                        "every program reads it as it is, there is nothing to convert")
    source_format = source.source_format
    options = {k: v for k, v in (("lod", args.lod), ("data_file", args.data_file)) if v is not None}
    imported = convert.convert_to_snapshot(source.path, args.output, source_format, **options)
    print(f"{args.source}: {source_format} -> {imported.kind} ({imported.summary})")
    print(f"architecture: {describe_config(imported.config)}")
    print(f"wrote {args.output}")
    return 0


def run(argv=None):
    common.exit_now(run_cli(main, argv))


if __name__ == "__main__":
    run()

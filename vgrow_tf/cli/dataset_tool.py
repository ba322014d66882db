"""Converts image collections to vgrow_tf / ProGAN / StyleGAN tfrecord datasets, and inspects them.

    python dataset_tool.py <command> <tfrecord_dir> <source> [options]
    python dataset_tool.py create_digits datasets/digits --resolution 16
    python dataset_tool.py info datasets/digits

Installed as vgrow-dataset-tool; the work is in vgrow_tf.data.tool.
"""
import argparse
import json

from vgrow_tf.cli import common
from vgrow_tf.errors import UserError, run_cli

FILTERS = ["box", "lanczos", "bicubic", "bilinear", "nearest"]


def _flag(value):
    return bool(int(value))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines and "
                        "tracebacks of errors (also VGROW_VERBOSE=1)")
    commands = parser.add_subparsers(dest="command", metavar="<command>")

    def command(name, help, source=None):
        p = commands.add_parser(name, help=help)
        p.add_argument("tfrecord_dir", help="dataset directory")
        if source:
            p.add_argument("source", help=source)
        if name.startswith("create_"):
            p.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
        p.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
        return p

    def shuffle_option(p):
        p.add_argument("--shuffle", type=_flag, default=True, help="shuffle with RandomState(123) (default 1)")

    def resize_options(p, default_filter="lanczos", resolution_default=None):
        p.add_argument("--resolution", type=int, default=resolution_default,
                       help="centre-crop to a square and resize to this power of two")
        p.add_argument("--resize_filter", choices=FILTERS, default=default_filter)

    p = command("create_from_images", "a folder of images (recursive)", "image directory")
    shuffle_option(p)
    resize_options(p)
    p.add_argument("--channels", type=int, choices=[1, 3], help="force grayscale (1) or RGB (3)")
    p.add_argument("--skip_bad", action="store_true", help="skip unreadable files instead of stopping")

    p = command("create_mnist", "MNIST / Fashion-MNIST idx .gz files (28 -> 32 padded)", "directory of idx files")
    p.add_argument("--split", choices=["train", "test"], default="train")
    shuffle_option(p)

    for name in ("create_cifar10", "create_cifar100"):
        p = command(name, f"{name[7:].upper()} python version (directory or .tar.gz)", "directory or archive")
        shuffle_option(p)

    p = command("create_svhn", "SVHN <split>_32x32.mat", ".mat file or its directory")
    p.add_argument("--split", choices=["train", "test", "extra"], default="train")
    shuffle_option(p)

    p = command("create_celeba", "aligned CelebA, 128x128 crop centred at (cx, cy)", "CelebA directory")
    p.add_argument("--cx", type=int, default=89)
    p.add_argument("--cy", type=int, default=121)
    resize_options(p, "box", 128)
    shuffle_option(p)
    p.add_argument("--attribute", help="CoGAN/SCoGAN pair: write <dir>-a (attribute on) and <dir>-b (off), "
                   "central 70%% crop (vgrow_tf.data.pairs)")

    # Two-domain pairs for CoGAN / SCoGAN: each writes <tfrecord_dir>-a and <tfrecord_dir>-b.
    p = command("create_mnist_edge", "pair: MNIST halves, the second as edges", "directory of idx files")
    shuffle_option(p)
    p = command("create_digits_edge", "pair: scikit-learn digits halves, the second as edges (no download)")
    p.add_argument("--resolution", type=int, default=16)
    shuffle_option(p)
    p = command("create_cyclegan", "pair: a CycleGAN folder with trainA/ and trainB/", "pair directory")
    resize_options(p, "lanczos", 128)
    shuffle_option(p)

    p = command("create_lsun", "an LSUN category LMDB (needs the lmdb package)", "LMDB directory")
    resize_options(p, "lanczos", 256)
    p.add_argument("--max_images", type=int)

    p = command("create_from_hdf5", "ProGAN HDF5 (data<R>x<R>) or GLO data.hdf5", "HDF5 file")
    shuffle_option(p)

    p = command("create_from_tfds", "any tensorflow-datasets image dataset", "tfds name, e.g. mnist")
    p.add_argument("--split", default="train")
    p.add_argument("--image_key", default="image")
    p.add_argument("--label_key")
    p.add_argument("--data_dir", help="tfds data directory")
    p.add_argument("--max_images", type=int)
    resize_options(p)

    p = command("create_digits", "scikit-learn's bundled 8x8 digits (no download)")
    p.add_argument("--resolution", type=int, default=8, help="upsample (nearest) to this power of two")
    shuffle_option(p)

    p = command("info", "print resolution, channels, count, levels, labels and metadata")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--data_root", default="datasets", help="where a bare dataset name is looked up, as train.py "
                   "--dataset does (default: datasets)")

    p = command("check", "read every record of every level: shapes, sizes and counts against dataset.json")
    p.add_argument("--data_root", default="datasets", help="where a bare dataset name is looked up")

    p = command("display", "not provided: NVIDIA's opens an OpenCV window; use extract and an image viewer")

    p = command("extract", "write the images of one level as PNGs", "output directory")
    p.add_argument("--resolution", type=int, help="level to extract (default: the top)")

    p = command("compare", "count identical images and labels of two datasets", "second dataset directory")
    p.add_argument("--ignore_labels", type=_flag, default=False)
    return parser


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv[1:])
    if not args.command:
        parser.print_help()
        return 1
    if args.command == "display":  # NVIDIA's tool shows records in an OpenCV window, one at a time
        raise UserError("display is not provided: it needs a desktop window and OpenCV, which training "
                        "machines rarely have; write the images with `dataset_tool.py extract "
                        f"{args.tfrecord_dir} OUT_DIR` and open them with any image viewer")
    common.quiet_start(argv)
    from vgrow_tf.data import tool
    kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "verbose", "tfrecord_dir", "source",
                                                               "json", "data_root")}
    if args.command == "info":
        summary = tool.info(args.tfrecord_dir, args.data_root)
        if args.json:
            print(json.dumps(summary))
        else:
            for key, value in summary.items():
                print(f"{key:12s} {value}")
        return 0
    if args.command == "check":
        counts = tool.check(args.tfrecord_dir, args.data_root)
        print(f"{args.tfrecord_dir}: every record reads; images per level: "
              + ", ".join(f"{r}x{r} {n}" for r, n in counts.items()))
        return 0
    if args.command == "create_digits":
        tool.create_digits(args.tfrecord_dir, **kwargs)
        return 0
    if args.command == "create_from_tfds":
        tool.create_from_tfds(args.tfrecord_dir, args.source, **kwargs)
        return 0
    if args.command == "compare":
        result = tool.compare(args.tfrecord_dir, args.source, **kwargs)
        print(json.dumps(result))
        return 0 if result["identical_images"] == result["compared"] == result["count_a"] == result["count_b"] else 1
    from vgrow_tf.data import pairs
    if args.command == "create_celeba" and kwargs.pop("attribute", None):
        pairs.create_celeba_pairs(args.tfrecord_dir, args.source, args.attribute, args.resolution,
                                  "bilinear" if args.resize_filter == "box" else args.resize_filter,
                                  shuffle=args.shuffle, overwrite=args.overwrite)
        return 0
    if args.command == "create_digits_edge":
        pairs.create_digits_edge(args.tfrecord_dir, **kwargs)
        return 0
    if args.command in ("create_mnist_edge", "create_cyclegan"):
        getattr(pairs, args.command)(args.tfrecord_dir, args.source, **kwargs)
        return 0
    getattr(tool, args.command)(args.tfrecord_dir, args.source, **kwargs)
    return 0


def run(argv=None):
    common.exit_now(run_cli(main, argv))


if __name__ == "__main__":
    run()

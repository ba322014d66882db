"""FID, KID, IS, precision/recall and PPL of vgrow_tf snapshots.

    python run_metrics.py --snapshot=run/network-final.h5 --dataset=datasets/cifar10 --metrics=fid50k,kid50k
    python run_metrics.py --run_dir=run --dataset=datasets/cifar10 --metrics=fid10k --repeats=5   (VGrow)
    python run_metrics.py --run_dir=run --snapshot_kimg=600 --dataset=... --metrics=fid50k_full,pr50k3

Installed as vgrow-run-metrics; the work is in vgrow_tf.metrics.runner.
"""
import os

from absl import flags

from vgrow_tf.cli import common
from vgrow_tf.errors import UserError
from vgrow_tf.interop import FORMAT_MODULES

flags.DEFINE_string("snapshot", None, "One snapshot file (network-*.h5), or a model saved by an original code "
                    "(an msg-stylegan-tf .pkl, a PGVGrow / GLO-TF checkpoint, a SCoGAN run folder).")
flags.DEFINE_string("kind", None, "Format of an original model given as --snapshot: "
                    f"{', '.join(FORMAT_MODULES)} (default: detected from the file).")
flags.DEFINE_string("run_dir", None, "A training run directory: every network-snapshot-*.h5 then network-final.h5 "
                    "(or only --snapshot_kimg). Results are appended to its metric-<name>.txt and metrics.jsonl.")
flags.DEFINE_integer("snapshot_kimg", None, "With --run_dir: only network-snapshot-<kimg>.h5.")
flags.DEFINE_string("dataset", None, "Dataset directory of the real images (default: the run's --dataset).")
flags.DEFINE_string("data_root", "datasets", "Where bare dataset names are looked up.")
flags.DEFINE_list("metrics", ["fid50k"], "Metrics, e.g. fid50k,kid50k,is50k,pr50k3,fid50k_full,fid10k,ppl_zend "
                  "(any count: fid2k, kid500).")
flags.DEFINE_string("feature_net", None, "FID/KID/IS network: inception_pb (the default; TTUR graph, "
                    "comparable with published numbers), inception_keras (keras ImageNet weights; different "
                    "numbers), or a Keras model file / SavedModel directory, optionally path:layer. Metric names "
                    "stay fid50k, kid50k, ...; the network is recorded in the feature_net field. KID is printed "
                    "x10^3 (as StyleGAN2-ADA reports it); files keep the plain value.")
flags.DEFINE_string("inception_path", None, "classify_image_graph_def.pb (or its directory) for inception_pb; "
                    "the keras weights .h5 for inception_keras. Default: the cache dir ($VGROW_CACHE_DIR or "
                    "~/.cache/vgrow_tf).")
flags.DEFINE_string("pr_feature_net", None, "Precision/recall network: vgg16 (keras VGG16 fc2) or a model "
                    "path as for --feature_net. Default: the --feature_net you gave, else vgg16.")
flags.DEFINE_string("vgg16_path", None, "Keras VGG16 weights file for --pr_feature_net=vgg16.")
flags.DEFINE_string("lpips_path", None, "PPL: Keras LPIPS model file ([img0, img1] in [-1, 1] -> distance).")
flags.DEFINE_string("ref_stats", None, "FID: precomputed real statistics (.npz with mu, sigma; TTUR and "
                    "pytorch-fid files work) instead of the dataset.")
flags.DEFINE_string("cache_dir", None, "Where real statistics are cached (default $VGROW_CACHE_DIR or "
                    "~/.cache/vgrow_tf).")
flags.DEFINE_boolean("mirror_augment", None, "Mirror the reals at random (StyleGAN); default: the run's setting, "
                     "else off. Never for *_full.")
flags.DEFINE_integer("repeats", 1, "Repeat with fresh fakes (seeds seed, seed+1000, ...) and report mean ± std "
                     "(the VGrow protocol: --metrics=fid10k --repeats=5).")
flags.DEFINE_integer("seed", 1000, "Seed of the first repeat's latents.")
flags.DEFINE_float("truncation_psi", None, "Truncation (StyleGAN-type models); unset = none, as published metrics.")
flags.DEFINE_string("domain", "a", "CoGAN/SCoGAN: the generator domain, a or b.")
flags.DEFINE_integer("batch_size", 64, "Images per generation / feature batch.")
flags.DEFINE_integer("num_gpus", None, "Use this many GPUs (a MirroredStrategy over them).")
flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored"], "Distribution strategy for feature "
                  "extraction.")
flags.DEFINE_string("output", None, "Write results here (default: --run_dir, else the snapshot's directory).")
flags.DEFINE_boolean("progress", True, "Show progress bars.")
flags.DEFINE_enum("refine", None, ["dgflow"], "Score samples refined by DGflow (metric names get -dgflow).")
flags.DEFINE_float("dgflow_eta", 0.1, "DGflow step size.")
flags.DEFINE_float("dgflow_gamma", 0.01, "DGflow noise level (entropy weight).")
flags.DEFINE_integer("dgflow_steps", 25, "DGflow steps.")
flags.DEFINE_string("dgflow_divergence", "KL", "DGflow f-divergence: KL, JS, LogD or Jef.")
flags.DEFINE_integer("dgflow_batch", 64, "DGflow refinement batch: latents refined together (minibatch-stddev "
                     "discriminators make each result depend on its batch; recorded with the results).")
flags.DEFINE_string("corrector", None, "DGflow: a dgflow_corrector snapshot for generators without a discriminator.")
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's start-up log lines and Python tracebacks of user "
                     "errors (also VGROW_VERBOSE=1).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {' '.join(argv[1:])}; all options are --flags")
    from vgrow_tf.metrics import registry, runner
    registry.parse_metrics(FLAGS.metrics)  # bad names fail before anything is loaded
    if bool(FLAGS.snapshot) == bool(FLAGS.run_dir):
        raise UserError("give exactly one of --snapshot=FILE or --run_dir=DIR")
    if FLAGS.snapshot_kimg is not None and not FLAGS.run_dir:
        raise UserError("--snapshot_kimg needs --run_dir")
    if FLAGS.snapshot:
        from vgrow_tf import snapshot
        source = snapshot.resolve(FLAGS.snapshot, "--snapshot", FLAGS.kind)
        snapshots = [source.path]
        out_dir = FLAGS.output or os.path.dirname(os.path.abspath(source.path))
    else:
        snapshots = runner.list_snapshots(FLAGS.run_dir, FLAGS.snapshot_kimg)
        out_dir = FLAGS.output or FLAGS.run_dir
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--output {out_dir} is a file, not a directory; choose a directory name")
    run_options = runner._read_run_options(out_dir)
    dataset = FLAGS.dataset or run_options.get("dataset")
    if dataset:
        from vgrow_tf import data as data_lib
        dataset = data_lib.resolve_dataset(dataset, FLAGS.data_root)
    mirror = FLAGS.mirror_augment if FLAGS.mirror_augment is not None else bool(run_options.get("mirror_augment"))
    strategy = None
    if FLAGS.num_gpus or FLAGS.strategy != "auto":
        import tensorflow as tf
        from vgrow_tf.training.strategy import make_strategy
        if FLAGS.num_gpus:
            gpus = tf.config.list_logical_devices("GPU")
            if len(gpus) < FLAGS.num_gpus:
                raise UserError(f"--num_gpus={FLAGS.num_gpus} but {len(gpus)} GPU(s) are visible")
            strategy = tf.distribute.MirroredStrategy([d.name for d in gpus[:FLAGS.num_gpus]])
        else:
            strategy = make_strategy(FLAGS.strategy)
    import tensorflow as tf
    try:
        results = evaluate(snapshots, dataset, out_dir, mirror, strategy)
    except tf.errors.DataLossError as e:
        from vgrow_tf.data import reader
        raise reader.data_loss_error([dataset], e) from None
    print(runner.format_table(results))
    print(f"results appended to {os.path.join(out_dir, 'metric-<name>.txt')} and metrics.jsonl")


def evaluate(snapshots, dataset, out_dir, mirror, strategy):
    from vgrow_tf.metrics import runner
    return runner.evaluate_snapshots(
        snapshots, dataset, FLAGS.metrics, run_dir=out_dir, feature_net=FLAGS.feature_net,
        inception_path=FLAGS.inception_path, pr_feature_net=FLAGS.pr_feature_net, vgg16_path=FLAGS.vgg16_path,
        lpips_path=FLAGS.lpips_path, mirror_augment=mirror, repeats=FLAGS.repeats, batch_size=FLAGS.batch_size,
        seed=FLAGS.seed, truncation_psi=FLAGS.truncation_psi, ref_stats=FLAGS.ref_stats,
        cache_dir=FLAGS.cache_dir, strategy=strategy, progress=FLAGS.progress, domain=FLAGS.domain,
        refine=dict(steps=FLAGS.dgflow_steps, eta=FLAGS.dgflow_eta, gamma=FLAGS.dgflow_gamma,
                    divergence=FLAGS.dgflow_divergence, group_size=FLAGS.dgflow_batch,
                    corrector=FLAGS.corrector) if FLAGS.refine else None, source_format=FLAGS.kind)


def run(argv=None):
    common.run_absl_program(__name__, __doc__, main, argv)


if __name__ == "__main__":
    run()

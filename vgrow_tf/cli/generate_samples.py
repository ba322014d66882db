"""Images, grids, multi-scale sheets, videos, interpolations, latent directions and DGflow-refined
samples from any vgrow_tf snapshot.

    python generate_samples.py --snapshot=run/network-final.h5 --out_dir=out --seeds=0-99
    python generate_samples.py --snapshot=S --out_dir=out --mode=grid --num_samples=64 --seed=7
    python generate_samples.py --snapshot=S --out_dir=out --mode=multiscale --seeds=0-9      (MSG models)
    python generate_samples.py --snapshot=S --out_dir=out --mode=video --video_file=walk.mp4 --resize=256,512
    python generate_samples.py --snapshot=S --out_dir=out --mode=interpolate --seeds=0-4 --interp_method=slerp
    python generate_samples.py --snapshot=S --out_dir=out --mode=direction --labels=labels.csv
    python generate_samples.py --snapshot=S --out_dir=out --mode=grid --refine=dgflow   (DGflow, paper defaults)
    python generate_samples.py --snapshot=glo.h5 --out_dir=out --mode=reconstruct|generate|interpolate (GLO)

Installed as vgrow-generate-samples; the work is in vgrow_tf.sampling.modes.
"""
import os

from absl import flags

from vgrow_tf.cli import common
from vgrow_tf.errors import UserError
from vgrow_tf.interop import FORMAT_MODULES

MODES = ["samples", "grid", "multiscale", "video", "interpolate", "direction", "reconstruct", "generate"]

flags.DEFINE_string("snapshot", None, "Snapshot file (network-*.h5) to sample from, a run directory "
                    "(its newest network-*.h5), or a model saved by an original code (an msg-stylegan-tf .pkl, "
                    "a PGVGrow / GLO-TF checkpoint, a SCoGAN run folder or one of its model folders).")
flags.DEFINE_string("kind", None, "Format of a model saved by an original code given as --snapshot: "
                    f"{', '.join(FORMAT_MODULES)} (default: detected from the file).")
flags.DEFINE_string("out_dir", None, "Output directory (created if missing).")
flags.DEFINE_enum("mode", "samples", MODES, "What to write. samples: seedNNNN.png per seed; grid: one "
                  "rows x cols grid; multiscale: every scale of MSG models; video: a looping latent walk; "
                  "interpolate: lerp/slerp rows between consecutive seeds (GLO: between training latents); "
                  "direction: fit a latent direction from labels and move samples along it; "
                  "reconstruct / generate: GLO reconstructions / Gaussian samples.")
flags.DEFINE_string("seeds", None, "Seeds, e.g. 0-99 or 1,5,7 or 0-3,10; the latent of seed s is the "
                    "model's latent sampler seeded with s. --mode=grid without seeds: --seed .. --seed + "
                    "rows*cols - 1 (8 x 8 by default).")
flags.DEFINE_integer("num_samples", None, "Without --seeds: this many consecutive seeds from --seed.")
flags.DEFINE_integer("seed", 0, "First seed for --num_samples; the random seed of the video walk, GLO "
                     "modes and DGflow noise.")
flags.DEFINE_float("truncation_psi", None, "Truncation psi (StyleGAN-type models; the original "
                   "MSG-StyleGAN scripts used 0.6; other models ignore it with a notice). Unset = no truncation.")
flags.DEFINE_boolean("randomize_noise", False, "StyleGAN noise inputs: random per call (true) or the "
                     "stored constants (false, deterministic per seed).")
flags.DEFINE_integer("batch_size", 32, "Generation batch size.")
# grids
flags.DEFINE_integer("rows", None, "Grid rows (default: square-ish).")
flags.DEFINE_integer("cols", None, "Grid columns (default: square-ish).")
flags.DEFINE_integer("padding", 2, "Pixels of mid-grey between grid cells (2, as the training grids).")
# multiscale / video
flags.DEFINE_list("scales", None, "Scale indices for multiscale / a multi-scale video, 0 = 4x4 (default "
                  "all for multiscale; unset = top output only for video).")
flags.DEFINE_integer("num_cols", None, "Columns of a multi-scale tile (default: all scales in one row).")
flags.DEFINE_string("video_file", None, "Video file name (in --out_dir unless absolute); .mp4 or .gif. "
                    "Default latent_walk.mp4 (video) / direction.gif (direction).")
flags.DEFINE_integer("num_points", 12, "Video: independent latent points (the walk's length in points).")
flags.DEFINE_integer("transition_points", 60, "Video: frames per point.")
flags.DEFINE_float("smoothing", 1.0, "Video: Gaussian sigma over time, in units of transition_points.")
flags.DEFINE_float("fps", 24.0, "Video frames per second.")
flags.DEFINE_list("resize", None, "Video frame size H,W (bicubic), e.g. --resize=800,1920; another aspect "
                  "ratio than the model's is letterboxed (black bars), not stretched.")
# interpolation
flags.DEFINE_enum("interp_method", "slerp", ["slerp", "lerp"], "Interpolation between seeds.")
flags.DEFINE_integer("interp_steps", 8, "Images per interpolation row, both ends included.")
# direction
flags.DEFINE_string("labels", None, "Direction: CSV of seed,label rows (two classes).")
flags.DEFINE_string("classifier", None, "Direction: classifier snapshot or Keras model file that labels "
                    "the samples of --seeds / --num_samples.")
flags.DEFINE_integer("direction_class", None, "Direction: with a multi-class classifier, the class that is "
                     "label 1 (others 0).")
flags.DEFINE_float("direction_amount", 3.0, "Direction: move from -amount to +amount along the unit direction.")
flags.DEFINE_integer("direction_steps", 7, "Direction: images per strip.")
flags.DEFINE_string("show_seeds", None, "Direction: seeds to show (default: the first 8 labelled ones).")
# GLO
flags.DEFINE_string("dataset", None, "GLO reconstruct: the training dataset directory (default: the one "
                    "recorded in the snapshot); for a GLO reference checkpoint, its data.hdf5 of latent codes "
                    "(default: found in the reference's layout).")
flags.DEFINE_enum("bn_mode", "moving", ["moving", "batch"], "GLO: BatchNorm at generation: moving statistics "
                  "(default) or each batch's own statistics, as the GLO reference code evaluates.")
flags.DEFINE_integer("count", 32, "GLO reconstruct: images shown; GLO interpolate: pairs.")
flags.DEFINE_integer("fit_steps", 300, "GLO reconstruct: latent-fitting steps for held-out images.")
# DGflow
flags.DEFINE_enum("refine", "none", ["none", "dgflow"], "Refine samples/grid latents with DGflow.")
flags.DEFINE_float("dgflow_eta", 0.1, "DGflow step size eta.")
flags.DEFINE_float("dgflow_gamma", 0.01, "DGflow entropy weight gamma (noise sqrt(2 eta gamma)).")
flags.DEFINE_integer("dgflow_steps", 25, "DGflow steps.")
flags.DEFINE_enum("dgflow_divergence", "KL", ["KL", "JS", "LogD", "Jef"], "DGflow f-divergence s(d).")
flags.DEFINE_integer("dgflow_save_every", 5, "Write the samples every this many DGflow steps.")
flags.DEFINE_integer("dgflow_batch", 64, "DGflow refinement batch: seed s is refined with the seeds of its block "
                     "G*(s//G) .. G*(s//G)+G-1 (G = this), whatever else is generated; recorded in dgflow.npz.")
flags.DEFINE_string("corrector", None, "DGflow: a dgflow_corrector snapshot, for generators without a "
                    "discriminator (its logit is D + C).")
flags.DEFINE_string("domain", "a", "CoGAN/SCoGAN: domain a, b (or both for plain sampling).")
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's start-up log lines and Python tracebacks of user "
                     "errors (also VGROW_VERBOSE=1).")

FLAGS = flags.FLAGS


GRID_DEFAULT = 8  # --mode=grid without seeds: an 8 x 8 grid of seeds 0..63 (or --rows x --cols)


def _seeds(required=True):
    from vgrow_tf.sampling import latents
    if not FLAGS.seeds and FLAGS.num_samples is None:
        if FLAGS.mode == "grid":
            rows, cols = FLAGS.rows or GRID_DEFAULT, FLAGS.cols or GRID_DEFAULT
            return latents.resolve_seeds(None, rows * cols, FLAGS.seed)
        if required:
            raise UserError("give --seeds (e.g. 0-99) or --num_samples N [--seed S]")
        return None
    return latents.resolve_seeds(FLAGS.seeds, FLAGS.num_samples, FLAGS.seed)


def _resize():
    if not FLAGS.resize:
        return None
    try:
        size = [int(v) for v in FLAGS.resize]
    except ValueError:
        size = []
    if len(size) != 2 or min(size) <= 0:
        raise UserError(f"--resize needs two positive integers H,W (e.g. --resize=800,1920), not {FLAGS.resize}")
    return size


def _check_refine_flags():
    if FLAGS.refine == "none":
        if FLAGS.corrector:
            raise UserError("--corrector is only used with --refine=dgflow")
    elif FLAGS.mode not in ("samples", "grid"):
        raise UserError(f"--refine=dgflow works with --mode samples or grid, not {FLAGS.mode}")


def _refine_options():
    if FLAGS.refine == "none":
        return None
    from vgrow_tf import snapshot
    options = dict(eta=FLAGS.dgflow_eta, gamma=FLAGS.dgflow_gamma, steps=FLAGS.dgflow_steps,
                   divergence=FLAGS.dgflow_divergence, save_every=FLAGS.dgflow_save_every, seed=FLAGS.seed,
                   group_size=FLAGS.dgflow_batch)
    if FLAGS.domain != "a":
        options["domain"] = FLAGS.domain
    if FLAGS.corrector:
        options["corrector"] = snapshot.load(FLAGS.corrector, expect_kind="dgflow_corrector", flag="--corrector")
    return options


def _check_flags():
    """Everything that can be checked without the snapshot, so a typo fails at once."""
    from vgrow_tf.sampling import latents
    if not FLAGS.snapshot:
        raise UserError("--snapshot is required (a network-*.h5 file written by train.py, or its run directory)")
    if not FLAGS.out_dir:
        raise UserError("--out_dir is required")
    if os.path.exists(FLAGS.out_dir) and not os.path.isdir(FLAGS.out_dir):
        raise UserError(f"--out_dir {FLAGS.out_dir} is a file, not a directory; choose a directory name")
    if FLAGS.seeds:
        latents.parse_seeds(FLAGS.seeds)
    elif FLAGS.num_samples is None and FLAGS.mode in ("samples", "multiscale"):
        raise UserError(f"--mode={FLAGS.mode} needs --seeds (e.g. 0-99) or --num_samples N [--seed S]")
    if FLAGS.show_seeds:
        latents.parse_seeds(FLAGS.show_seeds)
    if FLAGS.batch_size < 1:
        raise UserError("--batch_size must be positive")
    _check_refine_flags()
    return _resize()


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
    from vgrow_tf import snapshot
    resize = _check_flags()
    source = snapshot.resolve(FLAGS.snapshot, "--snapshot", FLAGS.kind)
    out_dir_existed = os.path.isdir(FLAGS.out_dir)
    try:
        paths = _generate(source, resize)
    except BaseException:
        if not out_dir_existed and os.path.isdir(FLAGS.out_dir) and not os.listdir(FLAGS.out_dir):
            os.rmdir(FLAGS.out_dir)  # a refusal leaves no empty directory behind
        raise
    print(f"wrote {len(paths)} file(s) to {FLAGS.out_dir}")
    return 0


def _generate(source, resize):
    from vgrow_tf import snapshot
    from vgrow_tf.sampling import latents, modes

    mode = FLAGS.mode
    import_options = {"data_file": FLAGS.dataset} if FLAGS.dataset and os.path.isfile(FLAGS.dataset) else {}
    snap = snapshot.load(source.path, source_format=source.source_format, **import_options)
    glo_mode = mode in ("reconstruct", "generate") or (mode == "interpolate" and snap.kind == "glo")
    seeds = _seeds(required=not glo_mode and (mode in ("samples", "grid", "multiscale", "interpolate") or
                                              (mode == "direction" and bool(FLAGS.classifier))))
    refine = _refine_options()
    if glo_mode:
        return modes.save_glo(snap, FLAGS.out_dir, mode, dataset=FLAGS.dataset, count=FLAGS.count,
                              rows=FLAGS.rows or 10, cols=FLAGS.cols or 10, seed=FLAGS.seed,
                              steps=FLAGS.interp_steps, pairs=FLAGS.count, fit_steps=FLAGS.fit_steps,
                              bn_mode=FLAGS.bn_mode)
    gen_kw = modes.generation_kwargs(snap, FLAGS.truncation_psi, FLAGS.randomize_noise)
    if FLAGS.bn_mode != "moving":
        if not modes.supports(snap, "bn_mode"):
            raise UserError(f"--bn_mode applies to GLO models; a {snap.kind} model has no such choice")
        gen_kw["bn_mode"] = FLAGS.bn_mode
    if modes.supports(snap, "domain"):
        gen_kw["domain"] = FLAGS.domain
    if mode == "samples":
        return modes.save_samples(snap, FLAGS.out_dir, seeds, gen_kw, refine, FLAGS.batch_size)
    if mode == "grid":
        return modes.save_grid_images(snap, FLAGS.out_dir, seeds, FLAGS.rows, FLAGS.cols, gen_kw, refine,
                                      FLAGS.padding)
    if mode == "multiscale":
        return modes.save_multiscale(snap, FLAGS.out_dir, seeds, gen_kw, FLAGS.scales, FLAGS.num_cols,
                                     FLAGS.padding)
    if mode == "video":
        name = FLAGS.video_file or "latent_walk.mp4"
        path = name if os.path.isabs(name) else os.path.join(FLAGS.out_dir, name)
        return modes.save_video(snap, path, FLAGS.num_points, FLAGS.transition_points, FLAGS.smoothing,
                                FLAGS.seed, FLAGS.fps, resize, FLAGS.scales, FLAGS.num_cols, gen_kw,
                                min(FLAGS.batch_size, 16))
    if mode == "interpolate":
        return modes.save_interpolation(snap, FLAGS.out_dir, seeds, FLAGS.interp_steps, FLAGS.interp_method,
                                        gen_kw, FLAGS.padding)
    if mode == "direction":
        show = latents.parse_seeds(FLAGS.show_seeds) if FLAGS.show_seeds else None
        return modes.save_direction(snap, FLAGS.out_dir, seeds, FLAGS.labels, FLAGS.classifier,
                                    FLAGS.direction_class, show, FLAGS.direction_amount,
                                    FLAGS.direction_steps, FLAGS.video_file or "direction.gif",
                                    FLAGS.fps, gen_kw)
    raise UserError(f"unknown mode {mode}")


def run(argv=None):
    common.run_absl_program(__name__, __doc__, main, argv)


if __name__ == "__main__":
    run()

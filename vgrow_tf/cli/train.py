"""Trains a model: `python train.py --model=vgrow_pg --dataset=datasets/digits` (or --flagfile=configs/...).

Installed as vgrow-train; the work is in vgrow_tf.training.loop.
"""
import sys

from vgrow_tf.cli import common
from vgrow_tf.training import options as options_lib

USAGE = """usage: {prog} --model=MODEL --dataset=DIR [options]
       {prog} --flagfile=configs/<model>/<dataset>.cfg [options]
       {prog} --config=<model>/<dataset> [options]   (a config shipped with the package)
       {prog} --model=MODEL --help      (that model's own options)

Trains a model; tick lines, grids, snapshots and checkpoints go to the run directory
(default results/<dataset>-<suffix>; a new run next to an old one gets a numbered directory,
--resume continues the latest). Ctrl-C writes a checkpoint and exits with code 130."""


def _model_from_argv(argv):
    """The --model the command line names (directly or in a --flagfile), for help."""
    model = None
    for i, arg in enumerate(argv[1:], 1):
        value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
        if arg.startswith("--flagfile") or arg.startswith("--config"):
            try:
                with open(common.packaged_config(value) or value, encoding="utf-8") as f:
                    model = _model_from_argv(["", *(line.strip() for line in f)]) or model
            except OSError:
                pass
        elif arg.startswith("--model"):
            model = value
    return model


def print_help(argv):
    model = _model_from_argv(argv)
    rows = lambda options: [(o.name, o.default, o.help + (f" One of: {', '.join(o.choices)}."  # noqa: E731
                                                          if o.choices else "")) for o in options]
    prog = common.program_name(argv)
    print(USAGE.format(prog=prog) + "\n\nCommon options:\n"
          + common.format_flag_help(rows(options_lib.COMMON_OPTIONS)))
    common_names = {o.name for o in options_lib.COMMON_OPTIONS}
    if model:
        own = [o for o in options_lib.model_options(model) if o.name not in common_names]
        print(f"\nOptions of --model={model}:\n" + (common.format_flag_help(rows(own)) or "  (none)"))
    else:
        print(f"\nEach model has its own options: {prog} --model=MODEL --help")


def main(argv):
    from absl import flags

    from vgrow_tf.errors import UserError
    from vgrow_tf.training import loop

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
    options = options_lib.options_from_absl(flags.FLAGS)
    if getattr(options, "resume_training", False):  # the original VGrow spelling
        options.resume = True
    loop.train(options)


def run(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if common.wants_help(argv):
        print_help(argv)
        sys.exit(0)
    from absl import flags

    from vgrow_tf.errors import UserError, report_and_exit
    try:
        argv = common.expand_config_flags(argv)
    except UserError as e:
        report_and_exit(str(e))
    options_lib.define_absl_flags(flags)
    common.absl_main(main, argv)


if __name__ == "__main__":
    run()

"""Trains a model: `python train.py --model=vgrow_pg --dataset=datasets/digits` (or --flagfile=configs/...).

Flags only; the work is in vgrow_tf.training.loop.train.
"""
from absl import app, flags

from vgrow_tf.errors import run_cli
from vgrow_tf.training import options as options_lib

options_lib.define_absl_flags(flags)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from vgrow_tf.training import loop

    options = options_lib.options_from_absl(FLAGS)
    if getattr(options, "resume_training", False):  # the original VGrow spelling
        options.resume = True
    loop.train(options)


if __name__ == "__main__":
    run_cli(lambda argv: app.run(main, argv))

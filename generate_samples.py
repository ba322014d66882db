"""Samples, grids, multi-scale sheets, videos, interpolations, latent directions and DGflow
refinement from any vgrow_tf snapshot. (Work in progress.)"""
import sys

from absl import app, flags

from vgrow_tf.errors import UserError, run_cli


def main(argv):
    raise UserError("generate_samples.py is not implemented yet")


if __name__ == "__main__":
    run_cli(lambda argv: app.run(main, argv))

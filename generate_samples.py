"""Images, grids, videos, DGflow from snapshots (installed as vgrow-generate-samples): python generate_samples.py --help

The program is vgrow_tf/cli/generate_samples.py; this file runs it from a checkout."""
from vgrow_tf.cli import launch

launch(__file__)

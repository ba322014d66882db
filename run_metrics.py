"""FID, KID, IS, precision/recall, PPL of snapshots (installed as vgrow-run-metrics): python run_metrics.py --help

The program is vgrow_tf/cli/run_metrics.py; this file runs it from a checkout."""
from vgrow_tf.cli import launch

launch(__file__)

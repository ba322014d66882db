"""Trains a model (installed as vgrow-train): python train.py --help

The program is vgrow_tf/cli/train.py; this file runs it from a checkout."""
from vgrow_tf.cli import launch

launch(__file__)

"""Trained models -> SavedModel, LiteRT and ONNX files (installed as vgrow-export-model): python export_model.py --help

The program is vgrow_tf/cli/export_model.py; this file runs it from a checkout."""
from vgrow_tf.cli import launch

launch(__file__)

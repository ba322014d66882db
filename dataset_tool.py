"""Creates and inspects datasets (installed as vgrow-dataset-tool): python dataset_tool.py --help

The program is vgrow_tf/cli/dataset_tool.py; this file runs it from a checkout."""
from vgrow_tf.cli import launch

launch(__file__)

"""Original models -> vgrow_tf snapshots (installed as vgrow-convert-snapshot): python convert_snapshot.py --help

The program is vgrow_tf/cli/convert_snapshot.py; this file runs it from a checkout."""
from vgrow_tf.cli import launch

launch(__file__)

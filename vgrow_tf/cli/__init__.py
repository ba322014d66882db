"""The command-line programs. Each is a module here with a `run(argv=None)` that never returns.

They are installed as console commands (`[project.scripts]` in pyproject.toml: `vgrow-train` runs
`vgrow_tf.cli.train:run`, ...), and the scripts at the repository root (`python train.py ...`) are
three-line wrappers calling `launch(__file__)`. A new program is one module here with a `run()`,
one line in `[project.scripts]`, and, to run it from a checkout as `python <name>.py`, a copy of
a root wrapper under its name.
"""
import importlib
import os


def launch(script_file):
    """Runs the program named like `script_file` (`train.py` -> vgrow_tf.cli.train)."""
    name = os.path.splitext(os.path.basename(script_file))[0]
    importlib.import_module(f"vgrow_tf.cli.{name}").run()

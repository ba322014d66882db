"""What every program does around its work: a quiet TensorFlow start, help without TensorFlow,
user errors as one line (vgrow_tf.errors.run_cli)."""
import os
import re
import sys
import tempfile

from vgrow_tf.errors import UserError, run_cli, verbose_requested

# TensorFlow's C++ log lines (absl format) and the notes that come with them.
_CPP_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                           r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\]"
                           r"|To enable the following instructions:)")
HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")


def quiet_start(argv):
    """Imports TensorFlow without its C++ start-up lines, unless the user asked for them.

    `--verbose` (or VGROW_VERBOSE=1) shows everything, and a TF_CPP_MIN_LOG_LEVEL set by the user
    is left alone. Measured on TF 2.21: its first lines (oneDNN, CUDA stub, CPU features) are
    printed while the shared libraries load, before TF_CPP_MIN_LOG_LEVEL is read, so no variable
    hides them; file descriptor 2 is therefore sent to a temporary file during the import and
    copied back without them. TF_CPP_MIN_LOG_LEVEL=3 then hides the later ones ("failed call to
    cuInit" on machines without a GPU, grappler's remapper notes).
    """
    if verbose_requested(argv) or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            sys.stderr.write("".join(line for line in text.splitlines(True) if not _CPP_LOG_LINE.match(line)))
            sys.stderr.flush()


def quiet_python_logs(argv):
    """TensorFlow's Python INFO lines (checkpoint "Sharding callback duration") only with --verbose."""
    if not verbose_requested(argv):
        from absl import logging
        logging.set_verbosity(logging.WARNING)


def program_name(argv):
    """How the user called the program: `python train.py` or the installed `vgrow-train`."""
    name = os.path.basename(argv[0]) if argv and argv[0] else "train.py"
    return f"python {name}" if name.endswith(".py") else name


PROGRAMS = ("train", "dataset_tool", "run_metrics", "generate_samples", "convert_snapshot")


def for_program(text, argv):
    """`text` (a help text) with `python <program>.py` spelled as the user runs the programs: the installed
    `vgrow-<program>` commands when this one was started as one."""
    if program_name(argv).startswith("python "):
        return text
    for name in PROGRAMS:
        text = text.replace(f"python {name}.py", "vgrow-" + name.replace("_", "-"))
    return text


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def packaged_config(value):
    """The file a --flagfile / --config value names: itself when it is a file, else the config shipped with
    the package (`configs/vgrow_pg/digits.cfg`, `vgrow_pg/digits.cfg` or `vgrow_pg/digits`); None if neither."""
    if os.path.isfile(value):
        return value
    name = value.replace(os.sep, "/").removeprefix("./").removeprefix("configs/")
    candidate = os.path.join(CONFIG_DIR, *(name if name.endswith(".cfg") else name + ".cfg").split("/"))
    return candidate if os.path.isfile(candidate) else None


def packaged_config_names():
    import glob
    return sorted(os.path.relpath(p, CONFIG_DIR)[:-len(".cfg")].replace(os.sep, "/")
                  for p in glob.glob(os.path.join(CONFIG_DIR, "*", "*.cfg")))


def expand_config_flags(argv):
    """argv with each `--flagfile` that is not a file, and each `--config=NAME`, pointing at the packaged
    config, so installed commands find `configs/<model>/<dataset>.cfg` from any directory."""
    out, i = [argv[0]], 1
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in ("--flagfile", "--config"):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                i, value = i + 1, argv[i + 1]
            else:
                raise UserError(f"{name} needs a value, e.g. {name}=configs/vgrow_pg/digits.cfg")
            path = packaged_config(value)
            if path is None:
                raise UserError(f"{name} {value} is neither a file nor a packaged config; the packaged ones: "
                                f"{', '.join(packaged_config_names())}")
            arg = f"--flagfile={path}"
        out.append(arg)
        i += 1
    return out


def wants_help(argv):
    return any(arg in HELP_FLAGS for arg in argv[1:])


def absl_main(main, argv=None):
    """Runs an absl `main(argv)`: quiet start, absl flag parsing, one-line user errors; exits."""
    from absl import app
    argv = list(sys.argv if argv is None else argv)

    def start(parsed_argv):
        quiet_python_logs(argv)
        return main(parsed_argv)

    quiet_start(argv)
    try:
        run_cli(lambda a: app.run(start, a), argv)
        code = 0
    except SystemExit as e:
        code = e.code
    exit_now(code)


def run_absl_program(module_name, usage, main, argv=None):
    """An absl program's run(): its own help (fast, without TensorFlow), else absl_main(main)."""
    argv = list(sys.argv if argv is None else argv)
    if wants_help(argv):
        print_absl_help(module_name, for_program(usage, argv))
        sys.exit(0)
    absl_main(main, argv)


def exit_now(code):
    """sys.exit(code) without the interpreter's last garbage collection over everything still alive.

    After training, that collection walks TensorFlow's and Keras's object graph (traced functions,
    graphs, layers): 4-19 s of idle shutdown in the measured runs, with only the main thread left.
    Freezing the heap first (gc.freeze) skips the walk; atexit handlers, flushing and the normal
    shutdown still run (measured: 0.3-0.4 s from the last line to the exit).
    """
    import gc
    gc.freeze()
    sys.exit(code)


def format_flag_help(rows, width=24):
    """'  --name  help (default: x)' lines for (name, default, help) rows, wrapped to 100 columns."""
    import textwrap
    lines = []
    for name, default, text in rows:
        suffix = "" if default in (None, "", []) else f" (default: {default})"
        head = f"  --{name}".ljust(width)
        body = textwrap.wrap(text + suffix, 100 - width) or [""]
        if len(head) > width:
            lines.append(head.rstrip())
            head = " " * width
        lines.append(head + body[0])
        lines.extend(" " * width + more for more in body[1:])
    return "\n".join(lines)


def print_absl_help(module_name, usage):
    """Help for the flags an absl program defines itself (not absl's or TensorFlow's own)."""
    from absl import flags
    if module_name == "__main__":  # absl files a script's flags under its path
        module_name = sys.argv[0]
    defined = flags.FLAGS.get_flags_for_module(module_name)
    rows = [(f.name, f.default_as_str.strip("'") if f.default is not None else None, f.help)
            for f in defined]
    print(usage.rstrip() + "\n\nOptions:\n" + format_flag_help(rows))

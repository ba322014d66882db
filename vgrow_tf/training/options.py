"""Command-line options as data, so train.py stays thin and tests need no absl parsing.

Each model family lists its options as `Option`s (`OPTIONS` in its module); `COMMON_OPTIONS` are
shared by every model. `define_absl_flags()` turns all of them into absl flags (train.py), and
`make_options(model, **overrides)` builds the same namespace directly (tests, scripts).
An option may appear in several families only with the same kind and default.
"""
import dataclasses
import types
from typing import Any, Sequence

from vgrow_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str
    kind: str = "string"          # string | integer | float | bool | enum | list
    choices: Sequence[str] = ()


def _opt(name, default, help, kind=None, choices=()):
    if kind is None:
        kind = {bool: "bool", int: "integer", float: "float"}.get(type(default), "string")
    return Option(name, default, help, kind, tuple(choices))


COMMON_OPTIONS = [
    _opt("model", "vgrow_pg", "Model family to train.", "enum",
         ["vgrow_pg", "msg_stylegan", "msg_progan", "glo", "cogan", "scogan", "classifier",
          "dgflow_corrector"]),
    _opt("dataset", None, "Dataset directory, or a bare name resolved under --data_root."),
    _opt("data_root", "datasets", "Where bare --dataset names are looked up."),
    _opt("run_dir", None, "Run directory (default: <path>/<dataset>-<model-specific suffix>)."),
    _opt("path", "results", "Parent of the default run directory (the original VGrow flag)."),
    _opt("resolution", None, "Training resolution (default: the dataset's highest level).", "integer"),
    _opt("batch_size", None, "Global minibatch (default: the model's own schedule).", "integer"),
    _opt("total_kimg", None, "Training length in thousands of real images.", "float"),
    _opt("total_nimg", None, "Training length in real images (the original VGrow flag).", "integer"),
    _opt("tick_kimg", None, "Print a tick line, write TensorBoard scalars and a grid every this many kimg.",
         "float"),
    _opt("snapshot_kimg", None, "Write a snapshot and a checkpoint every this many kimg.", "float"),
    _opt("resume", False, "Continue the latest run in --run_dir (or its numbered siblings) from its latest "
         "checkpoint. Without it, a run dir that holds a run gets a fresh numbered sibling."),
    _opt("resume_from", None, "Start a new run from a trained model: one of our snapshots, a run directory or a "
         "model saved by an original code (an msg-stylegan-tf pickle, a PGVGrow checkpoint, a SCoGAN run folder). "
         "Architecture flags you leave out come from the model; one that contradicts it is refused. A PGVGrow "
         "checkpoint also brings its Adam state and image count."),
    _opt("strategy", "auto", "Distribution strategy.", "enum",
         ["auto", "one_device", "mirrored", "multi_worker"]),
    _opt("seed", 1234, "Random seed for weights, latents and data order."),
    _opt("num_row", 10, "Rows of the image grids."),
    _opt("num_line", 10, "Columns of the image grids."),
    _opt("max_nonfinite", 10, "Stop after this many consecutive steps with non-finite values."),
    _opt("deterministic", False, "Enable TensorFlow op determinism (exact resume; slower)."),
    _opt("mixed_precision", False, "Compute in mixed_float16 (GPU) or mixed_bfloat16 (CPU)."),
    _opt("jit_compile", False, "XLA-compile the training steps."),
    _opt("metrics", "", "Metrics to compute on each snapshot, e.g. fid10k (see run_metrics.py).", "list"),
    _opt("keep_checkpoints", 3, "How many recent checkpoints to keep."),
    _opt("verbose", False, "Show TensorFlow's start-up log lines and Python tracebacks of user errors "
         "(also VGROW_VERBOSE=1)."),
]


def family_options(module_name):
    """The OPTIONS list of a family module, read from its source without importing it.

    Importing a family imports TensorFlow (seconds); `train.py --help` and flag parsing need only
    the list. It is evaluated from the module's source with its literal module-level constants in
    scope; a list built any other way is taken by importing the module.
    """
    import ast
    import importlib
    import importlib.util
    spec = importlib.util.find_spec(module_name)
    try:
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        constants, expression = {}, None
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if name == "OPTIONS":
                    expression = node.value
                    continue
                try:
                    constants[name] = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    pass
        if expression is not None:
            scope = {"__builtins__": {}, "Option": Option, **constants}
            return list(eval(compile(ast.Expression(expression), spec.origin, "eval"), scope))  # noqa: S307
    except Exception:  # noqa: BLE001 - anything unusual: import the module instead
        pass
    return list(getattr(importlib.import_module(module_name), "OPTIONS", []))


def model_options(model):
    """The options of one model (--model=X), without the common ones."""
    from vgrow_tf import models  # late import: models import this module
    module_name = models.FAMILY_MODULES.get(model)
    return family_options(module_name) if module_name and models.available(module_name) else []


def _all_option_lists():
    from vgrow_tf import models
    yield COMMON_OPTIONS
    for module_name in dict.fromkeys(models.FAMILY_MODULES.values()):
        if models.available(module_name):
            yield family_options(module_name)


def all_options():
    """Every option of every family, each name once."""
    merged = {}
    for options in _all_option_lists():
        for o in options:
            if o.name in merged and (merged[o.name].kind, merged[o.name].default) != (o.kind, o.default):
                raise ValueError(f"option --{o.name} is declared twice with different kinds or defaults")
            merged.setdefault(o.name, o)
    return list(merged.values())


def define_absl_flags(flags_module):
    """Defines every option as an absl flag (called once by train.py)."""
    definers = {"string": flags_module.DEFINE_string, "integer": flags_module.DEFINE_integer,
                "float": flags_module.DEFINE_float, "bool": flags_module.DEFINE_bool,
                "list": flags_module.DEFINE_list}
    for o in all_options():
        if o.name in flags_module.FLAGS:
            continue
        if o.kind == "enum":
            flags_module.DEFINE_enum(o.name, o.default, list(o.choices), o.help)
        else:
            definers[o.kind](o.name, o.default, o.help)


class Options(types.SimpleNamespace):
    """The options of one run. `explicit` (a slot, so it is not written with the options) names the ones
    the user set, on the command line or in a flagfile; None: any that differs from its default."""

    __slots__ = ("explicit",)


def options_from_absl(flags):
    options = Options(**{o.name: flags[o.name].value for o in all_options()})
    options.explicit = frozenset(o.name for o in all_options() if flags[o.name].present)
    return options


def explicit_options(options):
    """The names of the options the user set (see `Options.explicit`)."""
    explicit = getattr(options, "explicit", None)
    if explicit is not None:
        return set(explicit)
    defaults = {o.name: o.default for o in all_options()}
    return {k for k, v in vars(options).items() if k in defaults and v != defaults[k]}


def adopt_architecture(options, source_name, config, option_of_config=None):
    """Takes a trained model's architecture for a run that starts from it (train.py --resume_from), as
    StyleGAN's resume does: every key of the model's `config` that is also an option of the run
    (`option_of_config` maps the few keys spelled otherwise) becomes that option's value unless the
    user set it; a value the user set that contradicts the model is refused, naming both. Options still
    "auto" or unset count as not set. Returns {option: value} of what was taken.
    """
    option_of_config = option_of_config or {}
    explicit = explicit_options(options)
    taken, contradictions = {}, []
    for key, value in sorted(config.items()):
        name = option_of_config.get(key, key)
        if name == "model" or not hasattr(options, name) or isinstance(value, dict):
            continue
        if isinstance(value, (list, tuple)):  # list-valued options are typed as "1,2,1" (or "none")
            if any(isinstance(v, (list, tuple, dict)) for v in value):
                continue
            value = ",".join(str(v) for v in value) or "none"
        current = getattr(options, name)
        if name in explicit and current not in (None, "auto"):
            if _typed(current) != value:
                contradictions.append(f"--{name}={current} (the model has {name}={value})")
            continue
        if current != value:
            taken[name] = value
        setattr(options, name, value)
    if contradictions:
        raise UserError(f"--resume_from {source_name} was trained with another architecture than "
                        f"{'; '.join(contradictions)}; drop these flags to take the model's")
    return taken


def _typed(value):
    """A list-valued option as adopt_architecture compares it: "1, 2,1" and [1, 2, 1] are both "1,2,1"."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, str) and "," in value:
        return ",".join(part.strip() for part in value.split(","))
    return value


def make_options(model="vgrow_pg", **overrides):
    """The options namespace train.py would build, with `overrides` applied (for tests and scripts)."""
    options = {o.name: o.default for o in all_options()}
    unknown = set(overrides) - set(options)
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(sorted(unknown))}")
    options.update(overrides, model=model)
    if isinstance(options.get("metrics"), str):
        options["metrics"] = [m for m in options["metrics"].split(",") if m]
    namespace = Options(**options)
    namespace.explicit = frozenset(overrides) | {"model"}
    return namespace


def total_nimg(options, default_nimg):
    """Resolves --total_kimg / --total_nimg (either may be given; both must agree)."""
    kimg, nimg = options.total_kimg, options.total_nimg
    if kimg is not None and nimg is not None and int(round(kimg * 1000)) != int(nimg):
        raise UserError(f"--total_kimg={kimg:g} contradicts --total_nimg={nimg}; give only one")
    if nimg is not None:
        return int(nimg)
    if kimg is not None:
        return int(round(kimg * 1000))
    return int(default_nimg)

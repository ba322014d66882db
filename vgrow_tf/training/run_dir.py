"""The run directory: flags.txt, run.json, log.txt, TensorBoard events, grids, snapshots, checkpoints."""
import json
import os
import sys
import time

from vgrow_tf.errors import UserError

# Options that define a run: --resume with a different value would silently train something else.
IDENTITY_OPTIONS = ("model", "dataset", "resolution")


class Tee:
    """Copies everything printed to log.txt."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.stdout = sys.stdout

    def write(self, text):
        self.stdout.write(text)
        self.file.write(text)
        self.file.flush()

    def flush(self):
        self.stdout.flush()
        self.file.flush()

    def isatty(self):
        return False

    def close(self):
        self.file.close()


def _check_writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write to run directory {path} ({e.strerror}); choose another --run_dir") \
            from None


def checkpoint_dir(run_dir):
    return os.path.join(run_dir, "checkpoints")


def has_checkpoint(run_dir):
    ckpt = checkpoint_dir(run_dir)
    return os.path.isfile(os.path.join(ckpt, "checkpoint"))


def _numbered_series(base):
    """`base` and its existing numbered siblings `base-001`, `base-002`, ... as (number, path), in order."""
    base = os.path.normpath(base)
    parent, name = os.path.split(base)
    series = [(0, base)]
    try:
        entries = os.listdir(parent or ".")
    except OSError:
        entries = []
    for entry in entries:
        suffix = entry[len(name) + 1:]
        if entry.startswith(name + "-") and len(suffix) == 3 and suffix.isdigit() and int(suffix) > 0:
            series.append((int(suffix), os.path.join(parent, entry)))
    return sorted(series)


def choose(base, resume):
    """The run directory a run given `base` uses, and a note to print when it is not `base` itself.

    As StyleGAN users expect, a new run never lands on an old one: when `base` already holds a run,
    a fresh run goes to the next numbered sibling `base-NNN`. `--resume` continues the newest run
    of the series (the highest-numbered directory holding a checkpoint).
    """
    series = _numbered_series(base)
    if resume:
        with_checkpoint = [path for _, path in series if has_checkpoint(path)]
        chosen = with_checkpoint[-1] if with_checkpoint else base
        note = f"--resume: continuing the latest run of {base}: {chosen}" if chosen != series[0][1] else None
        return chosen, note
    number, newest = series[-1]
    if not has_checkpoint(newest):  # a run that died before its first checkpoint is reused
        chosen = newest
    else:
        chosen = f"{os.path.normpath(base)}-{number + 1:03d}"
    note = (f"{base} already holds a run; this new run writes to {chosen} "
            "(pass --resume to continue the latest run instead)") if chosen != series[0][1] else None
    return chosen, note


def prepare(run_dir, options, identity, resume, chief=True):
    """Creates or reopens a run directory; checks --resume against the stored run identity.

    `identity` is a dict of everything that must not change on resume (model, dataset, architecture).
    """
    identity = {k: v for k, v in identity.items()}
    run_json = os.path.join(run_dir, "run.json")
    if resume:
        if not has_checkpoint(run_dir):
            raise UserError(f"--resume: {run_dir} has no checkpoint to resume from; "
                            "start a new run without --resume")
        with open(run_json, encoding="utf-8") as f:
            stored = json.load(f)["identity"]
        changed = [f"--{k}={identity.get(k)!r} (run has {stored.get(k)!r})"
                   for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)]
        if changed:
            raise UserError(f"--resume with options that contradict the run in {run_dir}: "
                            f"{'; '.join(changed)}")
    elif has_checkpoint(run_dir):
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it "
                        "or choose another --run_dir")
    if not chief:
        return
    _check_writable(run_dir)
    if not resume:
        _write_atomic(run_json, json.dumps({"identity": identity, "options": vars(options)},
                                           indent=1, sort_keys=True, default=str))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(os.path.join(run_dir, "flags.txt"), "a", encoding="utf-8") as f:
        f.write(f"# {'resumed' if resume else 'started'} {stamp}\n")
        for k, v in sorted(vars(options).items()):
            if v is not None:
                f.write(f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}\n")


def _write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)

"""The run directory: flags.txt, run.json, log.txt, TensorBoard events, grids, snapshots, checkpoints.

One trainer at a time: the chief holds an exclusive lock on `<run_dir>/lock` (PID and host inside, for the
message a second trainer gets). The kernel drops the lock when its holder dies, even by SIGKILL, so a lock
file left by a dead process never blocks `--resume`.
"""
import fcntl
import json
import os
import re
import shutil
import socket
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


def holds_run(run_dir):
    """Whether a run started in `run_dir` (finished, running, or killed before its first checkpoint)."""
    return has_checkpoint(run_dir) or os.path.isfile(os.path.join(run_dir, "run.json"))


LOCK_FILE = "lock"


class RunLock:
    """An exclusive lock on a run directory for the life of this process (see the module docstring)."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.fd = None

    def acquire(self):
        """Takes the lock or raises UserError naming its holder; returns a note about a dead holder's
        leftover lock file, or None."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{os.path.dirname(self.path)} is in use by another trainer "
                            f"({holder or 'holder unknown'}); wait for it to finish or stop it first") from None
        previous = _read_holder(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return f"{self.path}: the previous trainer ({previous}) is no longer running" if previous else None

    def release(self):
        if self.fd is None:
            return
        try:  # unlinked while still held, so no newcomer can lock the file being removed
            os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _read_holder(fd):
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()


# Temporary names of our writes (`<file>.tmp-<pid>`, `.write-test-<pid>`) and of TensorFlow's checkpoint
# writer (`ckpt-N_temp/`, `<file>.tempstate<n>`).
_OUR_TEMP = re.compile(r"(\.tmp-|^\.write-test-)(\d+)(\.\w+)?$")
_TF_TEMP = re.compile(r"^ckpt-\d+_temp$|\.tempstate\d+$")


def _process_runs(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(run_dir):
    """Deletes temporary files and folders that killed processes left in `run_dir` and its checkpoints;
    returns their paths. Call it holding the run's lock: then no live trainer owns TensorFlow's temporaries."""
    removed = []
    for folder in (run_dir, checkpoint_dir(run_dir)):
        for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, entry)
            ours = _OUR_TEMP.search(entry)
            if ours and not _process_runs(int(ours.group(2))) or _TF_TEMP.search(entry):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                removed.append(path)
    return removed


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


def choose(base, resume, reuse_unfinished=False):
    """The run directory a run given `base` uses, and a note to print when it is not `base` itself.

    As StyleGAN users expect, a new run never lands on an old one: when `base` already holds a run,
    a fresh run goes to the next numbered sibling `base-NNN`. `--resume` continues the newest run
    of the series (the highest-numbered directory holding a checkpoint).

    A run killed before its first checkpoint keeps its directory; the next run gets a new one. Workers
    of one multi-worker run decide alone, some after the chief has started writing, so they pass
    `reuse_unfinished`: a directory without a checkpoint is then reused, as their first checkpoint
    needs them all.
    """
    series = _numbered_series(base)
    if resume:
        with_checkpoint = [path for _, path in series if has_checkpoint(path)]
        chosen = with_checkpoint[-1] if with_checkpoint else base
        note = f"--resume: continuing the latest run of {base}: {chosen}" if chosen != series[0][1] else None
        return chosen, note
    number, newest = series[-1]
    if not (has_checkpoint(newest) if reuse_unfinished else holds_run(newest)):  # e.g. empty, made by hand
        chosen = newest
    else:  # even a run killed before its first checkpoint keeps its logs; the new one gets its own
        chosen = f"{os.path.normpath(base)}-{number + 1:03d}"
    note = (f"{base} already holds a run; this new run writes to {chosen} "
            "(pass --resume to continue the latest run instead)") if chosen != series[0][1] else None
    return chosen, note


def prepare(run_dir, options, identity, resume, chief=True):
    """Creates or reopens a run directory; checks --resume against the stored run identity.

    `identity` is a dict of everything that must not change on resume (model, dataset, architecture).
    Returns the chief's RunLock (None elsewhere) and notes to print (a dead trainer's lock, removed leftovers).
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
        return None, []
    _check_writable(run_dir)
    lock = RunLock(run_dir)
    notes = [lock.acquire()]
    if resume:
        notes += [f"removed {path}, left by a killed process" for path in remove_leftovers(run_dir)]
    if not resume:
        _write_atomic(run_json, json.dumps({"identity": identity, "options": vars(options)},
                                           indent=1, sort_keys=True, default=str))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(os.path.join(run_dir, "flags.txt"), "a", encoding="utf-8") as f:
        f.write(f"# {'resumed' if resume else 'started'} {stamp}\n")
        for k, v in sorted(vars(options).items()):
            if v is not None:
                f.write(f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}\n")
    return lock, [note for note in notes if note]


def entries(run_dir):
    """What a directory holds now (None if it does not exist), to undo a refused run with `undo`."""
    return set(os.listdir(run_dir)) if os.path.isdir(run_dir) else None


def undo(run_dir, before):
    """Removes what a refused run added to `run_dir` (all of it if the run made the directory)."""
    for entry in (entries(run_dir) or set()) - (before or set()):
        path = os.path.join(run_dir, entry)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    if before is None and os.path.isdir(run_dir) and not os.listdir(run_dir):
        os.rmdir(run_dir)


def _write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)

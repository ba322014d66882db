"""User-facing errors: one clear line and a non-zero exit, no traceback.

Library code raises `UserError` for anything a user can cause (bad path, bad image, contradictory
flags, a snapshot of the wrong kind). The four scripts wrap their `main` with `run_cli`, which turns
a `UserError` into `Error: <message>` on stderr and exit code 2. `--verbose` (or VGROW_VERBOSE=1)
re-raises so the traceback is visible.
"""
import errno
import os
import re
import sys


class UserError(Exception):
    """An error the user can fix; its message names the problem and the fix."""


class Interrupted(Exception):
    """Training stopped on a signal after writing its checkpoint; the process exits 128 + signum."""

    def __init__(self, signum):
        super().__init__(f"stopped by signal {signum}")
        self.signum = int(signum)


EXIT_USER_ERROR = 2

_NO_SPACE = "No space left on device"


def is_disk_full(error):
    """Whether `error` is a full disk: OSError ENOSPC/EDQUOT, or TensorFlow's error for one (a
    ResourceExhaustedError that names the file, easily mistaken for running out of memory)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return _NO_SPACE in str(getattr(error, "message", ""))


def file_of_disk_full(error):
    """The file a disk-full error names, if it names one."""
    if isinstance(error, OSError):
        return error.filename
    match = re.search(r"(\S+); " + _NO_SPACE, str(getattr(error, "message", "")))
    return match and match.group(1)


def require_file(path, what, hint=""):
    """A UserError unless `path` is a file: "does not exist" only when nothing is there."""
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a directory; give a file")
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} does not exist{hint}")


def require_dir(path, what):
    """A UserError unless `path` is a directory: "does not exist" only when nothing is there."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path} is a file, not a directory")
    if not os.path.isdir(path):
        raise UserError(f"{what} {path} does not exist")


def verbose_requested(argv):
    return (any(arg.lower() in ("--verbose", "--verbose=true", "--verbose=1") for arg in argv)
            or os.environ.get("VGROW_VERBOSE") == "1")


_verbose = verbose_requested


def report_and_exit(message, code=EXIT_USER_ERROR):
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def run_cli(main_fn, argv=None):
    """Runs `main_fn(argv)`, converting user errors, out-of-memory and a full disk to one line."""
    argv = sys.argv if argv is None else argv
    try:
        return main_fn(argv)
    except Interrupted as e:  # the checkpoint is written and said so; exit as the shell expects
        sys.stdout.flush()
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping, or one outside training
        if _verbose(argv):
            raise
        report_and_exit("interrupted", 130)
    except UserError as e:
        if _verbose(argv):
            raise
        report_and_exit(str(e))
    except OSError as e:
        if _verbose(argv):
            raise
        if is_disk_full(e):
            report_and_exit(f"the disk is full while writing {e.filename or 'output'}; free space and retry")
        if getattr(e, "errno", None) in (13, 30):  # EACCES, EROFS
            report_and_exit(f"cannot write {e.filename}: permission denied; choose a writable directory")
        raise
    except MemoryError:
        report_and_exit("out of memory; try a smaller --batch_size")
    except Exception as e:  # noqa: BLE001 - only to catch TF's OOM class without importing TF here
        if is_disk_full(e) and not _verbose(argv):
            report_and_exit(f"the disk is full while writing {file_of_disk_full(e) or 'output'}; "
                            "free space and retry")
        if type(e).__name__ == "ResourceExhaustedError" and not _verbose(argv):
            report_and_exit("out of device memory (ResourceExhaustedError); try a smaller --batch_size")
        if type(e).__name__ == "DataLossError" and not _verbose(argv):
            detail = str(getattr(e, "message", e)).splitlines()[0]
            report_and_exit(f"a dataset file is truncated or corrupt ({detail}); "
                            "recreate the dataset with dataset_tool.py")
        raise

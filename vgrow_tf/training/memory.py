"""Handing memory that Python and TensorFlow have freed back to the operating system."""
import ctypes
import ctypes.util
import gc


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_TRIM = _malloc_trim()


def return_freed_memory():
    """Collects garbage and asks glibc to return free heap pages (a trace leaves tens of MB of them),
    so later peaks start lower. A no-op where malloc_trim does not exist."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)

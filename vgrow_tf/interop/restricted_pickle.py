"""Reading pickles written by other codes without running anything they reference.

`pickle.load` calls whatever global a file names (`os.system`, `builtins.exec`, ...), so a model
file from the internet must never go through it. `load` here resolves globals only through an
explicit allow-list: numpy's array reconstructors (NumPy 1.x and 2.x spellings) plus the stand-in
classes a format module passes in. Anything else stops the load before it is called, with one
clear line naming the reference.
"""
import codecs
import pickle

import numpy as np

from vgrow_tf.errors import UserError

_core = np._core  # NumPy >= 2; files from NumPy 1.x name the same functions under numpy.core

# (module, name) a pickle may request -> the object it gets. Array and scalar reconstruction only.
NUMPY_GLOBALS = {}
for _prefix in ("numpy.core", "numpy._core"):
    NUMPY_GLOBALS.update({
        (f"{_prefix}.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
        (f"{_prefix}.multiarray", "scalar"): _core.multiarray.scalar,
        (f"{_prefix}.numeric", "_frombuffer"): _core.numeric._frombuffer,
    })
NUMPY_GLOBALS.update({
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python-2-era streams (protocol 2) store bytes as _codecs.encode(text, "latin1").
    ("_codecs", "encode"): codecs.encode,
})


class StateHolder:
    """Stand-in for a class whose pickled state is a plain dict: keeps the dict, runs nothing."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"state of {type(self).__name__} is a {type(state).__name__}, "
                                         "not a dict")
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed, what):
        super().__init__(file, encoding="latin1")
        self.allowed, self.what = allowed, what

    def find_class(self, module, name):
        obj = self.allowed.get((module, name))
        if obj is None:
            raise UserError(f"{self.what} references {module}.{name}, which such a file never does; "
                            "refused without running anything from it (is it the right file?)")
        return obj

    def persistent_load(self, pid):
        raise UserError(f"{self.what} uses persistent references (another program's format); refused")


def load(path, allowed, what=None):
    """Unpickles `path` resolving globals only through NUMPY_GLOBALS and `allowed`.

    `allowed` maps (module, name) -> stand-in class or function. Raises UserError for a reference
    outside the lists, a truncated file and anything that is not a pickle.
    """
    what = what or path
    table = {**NUMPY_GLOBALS, **allowed}
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, table, what).load()
            trailing = f.read(1)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, UnicodeDecodeError) as e:
        raise UserError(f"{what} is truncated or not a pickle ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no detail'}); copy the file again") from None
    if trailing:
        raise UserError(f"{what} has data after the end of its pickle; the file is corrupt, copy it again")
    return obj


def looks_like_pickle(path):
    """True when `path` starts like a binary pickle (protocol 2..5): the PROTO opcode."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5

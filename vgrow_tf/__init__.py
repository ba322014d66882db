"""vgrow_tf: TensorFlow 2 / Keras 3 home of VGrow-PG, MSG-StyleGAN, GLO, SCoGAN/CoGAN and DGflow.

The programs (vgrow_tf.cli) start TensorFlow quietly; importing the package changes no TensorFlow
settings. It does keep Keras from loading scikit-learn for Keras' own scikit-learn wrappers (below).
"""
import importlib.abc
import sys


class _NoSklearnForKerasWrappers(importlib.abc.MetaPathFinder):
    """Keras imports scikit-learn at start-up only for its scikit-learn wrappers (which this package
    never uses, and which Keras disables itself when the import fails): ~60 MB of resident memory
    and ~1 s of start-up per process. Only that import is refused; everyone else gets scikit-learn."""

    def find_spec(self, name, path=None, target=None):
        if name != "sklearn" or "sklearn" in sys.modules:
            return None
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get("__name__", "").startswith("keras.src.wrappers"):
                raise ModuleNotFoundError("scikit-learn is not loaded for Keras' wrappers", name=name)
            frame = frame.f_back
        return None


if not any(isinstance(f, _NoSklearnForKerasWrappers) for f in sys.meta_path):
    sys.meta_path.insert(0, _NoSklearnForKerasWrappers())

__version__ = "0.1.0"

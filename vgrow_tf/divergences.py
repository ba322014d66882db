"""The f-divergence weights s(d) of a variational gradient flow, shared by VGrow-PG and DGflow.

d(x) is the discriminator's logit, an estimate of log(p_data / q). A particle moves by
step * s(d) * grad_x d. The formulas and guards are the original VGrow code's (spec vgrow_pg.md §2):

    KL        s = 1
    JS        s = 1 / (1 + 1 / (1e-6 + e^d))     (the 1e-6 keeps 1/e^d finite for very negative d)
    Jeffreys  s = clip(1 + e^d, 1, 100)         (the clip bounds the step where e^d explodes)
    LogD      s = 1 / (1 + e^d)

They are computed in float64, as e^d overflows float32 for d > 88, then cast back. DGflow's code has
JS without the guard, exactly sigmoid(d): `js_floor=0` gives that (the guard alone would double s at
d = -14).
"""
import numpy as np
import tensorflow as tf

from vgrow_tf.errors import UserError

DIVERGENCES = ("KL", "JS", "Jef", "LogD")
_ALIASES = {"kl": "KL", "js": "JS", "jef": "Jef", "jeffreys": "Jef", "logd": "LogD"}


def canonical_name(name):
    """'kl', 'Jeffreys', ... -> one of DIVERGENCES; a UserError for anything else."""
    try:
        return _ALIASES[str(name).lower()]
    except KeyError:
        raise UserError(f"unknown divergence {name!r}; choose one of {', '.join(DIVERGENCES)}") from None


def _weight(d, name, exp, ones_like, clip, js_floor):
    name = canonical_name(name)
    if name == "KL":
        return ones_like(d)
    if name == "JS":  # with js_floor 0 and e^d = 0 (d < -745): 1 / (1 + inf) = 0
        return 1.0 / (1.0 + 1.0 / (js_floor + exp(d)))
    if name == "Jef":
        return clip(1.0 + exp(d), 1.0, 100.0)
    return 1.0 / (1.0 + exp(d))


def s_weight(d, name, js_floor=1e-6):
    """s(d) for a tensor of logits, in the logits' dtype."""
    d = tf.convert_to_tensor(d)
    s = _weight(tf.cast(d, tf.float64), name, tf.exp, tf.ones_like, tf.clip_by_value, js_floor)
    return tf.cast(s, d.dtype)


def s_weight_np(d, name, js_floor=1e-6):
    """numpy twin of s_weight (float64), for tests and host-side checks."""
    with np.errstate(over="ignore", divide="ignore"):
        return _weight(np.asarray(d, np.float64), name, np.exp, np.ones_like, np.clip, js_floor)

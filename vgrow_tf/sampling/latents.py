"""Latents for generate_samples.py: seed lists, one latent per seed, lerp/slerp, smoothed walks.

Seed convention (every mode): the latent of seed s is row 0 of the model's own latent sampler seeded
with s (`vgrow_tf.models.latent_sampler`): `np.random.RandomState(s).randn(1, latent_dim)` for
Gaussian-prior models, the family's own sampler otherwise (CoGAN/SCoGAN's uniform prior, GLO's
Gaussian fitted to its learned latent table). So `seed0042.png` is always the image of the same
latent, whatever other seeds are generated with it.
"""
import re

import numpy as np

from vgrow_tf.errors import UserError


def parse_seeds(text):
    """'0-99', '1,5,7', '0-3,10' -> list of ints (ranges inclusive, order kept, duplicates kept)."""
    if text is None or not str(text).strip():
        raise UserError("--seeds is empty; give a list such as 0-99 or 1,5,7")
    seeds = []
    for part in str(text).split(","):
        m = re.match(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$", part)
        if not m:
            raise UserError(f"bad --seeds entry {part.strip()!r} in {text!r}; use non-negative integers and "
                            "ranges such as 0-99 or 1,5,7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UserError(f"bad --seeds range {part.strip()!r}: the end is below the start")
        if hi >= 2 ** 32:
            raise UserError(f"seed {hi} is too large; seeds must be below 2**32")
        seeds.extend(range(lo, hi + 1))
    return seeds


def resolve_seeds(seeds=None, num_samples=None, seed=0):
    """--seeds wins; otherwise --num_samples consecutive seeds starting at --seed."""
    if seeds:
        return parse_seeds(seeds)
    if num_samples is None or int(num_samples) < 1:
        raise UserError("give --seeds (e.g. 0-99) or a positive --num_samples")
    if int(seed) < 0:
        raise UserError(f"--seed must be non-negative, not {seed}")
    return list(range(int(seed), int(seed) + int(num_samples)))


class LatentSampler:
    """Draws the latent of a seed (and batches / streams of latents) for one snapshot."""

    def __init__(self, snap):
        from vgrow_tf.models import latent_sampler
        self.snap = snap
        self.dim = int(snap.latent_dim)
        if self.dim <= 0:
            raise UserError(f"a {snap.kind} snapshot has no generator to sample from")
        self._draw, self._standard_normal = latent_sampler(snap.family, snap.config, snap.arrays)

    def draw(self, count, seed):
        """`count` latents from one RandomState(seed) stream, float32 [count, dim]."""
        return self._draw(count, seed)

    def for_seeds(self, seeds):
        """One latent per seed: row 0 of draw(1, seed)."""
        if len(seeds) == 0:
            return np.zeros([0, self.dim], np.float32)
        return np.concatenate([self.draw(1, int(s)) for s in seeds])

    @property
    def gaussian_prior(self):
        """True for the standard normal prior (video walks renormalise to its typical norm)."""
        return self._standard_normal


def latents_for_seeds(snap, seeds):
    return LatentSampler(snap).for_seeds(seeds)


def lerp(a, b, t):
    """(1 - t) a + t b for each t: [len(t), *a.shape]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64).reshape((-1,) + (1,) * a.ndim)
    return ((1.0 - t) * a + t * b).astype(np.float32)


def slerp(a, b, t, eps=1e-7):
    """Spherical interpolation along the great circle through a and b (last axis = vector axis):

        slerp(a, b; t) = sin((1 - t) W) / sin W * a + sin(t W) / sin W * b,  cos W = <a, b> / (|a| |b|)

    Endpoints are exactly a and b; for unit a, b every point has unit norm. Where a and b are
    (anti)parallel the formula is undefined and lerp is used. Returns [len(t), *a.shape].
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64).reshape((-1,) + (1,) * a.ndim)
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    cos = np.clip(np.sum(a * b, axis=-1, keepdims=True) / np.maximum(na * nb, 1e-300), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    degenerate = sin < eps
    safe = np.where(degenerate, 1.0, sin)
    wa = np.where(degenerate, 1.0 - t, np.sin((1.0 - t) * omega) / safe)
    wb = np.where(degenerate, t, np.sin(t * omega) / safe)
    return (wa * a + wb * b).astype(np.float32)


def interpolate(a, b, steps, method="slerp"):
    """`steps` points from a to b inclusive with lerp or slerp: [steps, *a.shape]."""
    if steps < 2:
        raise UserError(f"--interp_steps must be at least 2, not {steps}")
    t = np.linspace(0.0, 1.0, int(steps))
    if method == "lerp":
        return lerp(a, b, t)
    if method == "slerp":
        return slerp(a, b, t)
    raise UserError(f"unknown interpolation {method!r}; choose lerp or slerp")


def smooth_walk(sampler_or_dim, num_points, transition_points, smoothing=1.0, seed=0, renormalize=True):
    """A looping latent walk as in MSG-StyleGAN's interpolation video.

    num_points * transition_points i.i.d. latents are Gaussian-filtered along time with
    sigma = smoothing * transition_points frames and mode='wrap' (so the last frame flows into the
    first), then (for Gaussian priors) each frame is rescaled to norm sqrt(dim), the typical norm of a
    standard normal draw; for other priors each coordinate's spread and range are restored instead.
    Returns float32 [num_points * transition_points, dim].
    """
    from scipy.ndimage import gaussian_filter1d
    if num_points < 1 or transition_points < 1:
        raise UserError("--num_points and --transition_points must be positive")
    frames = num_points * transition_points
    if isinstance(sampler_or_dim, LatentSampler):
        z = sampler_or_dim.draw(frames, seed).astype(np.float64)
        gaussian = sampler_or_dim.gaussian_prior
        dim = sampler_or_dim.dim
    else:
        dim = int(sampler_or_dim)
        z = np.random.RandomState(seed).randn(frames, dim)
        gaussian = True
    sigma = float(smoothing) * transition_points
    if sigma > 0:
        mean = z.mean(axis=0)  # non-centred priors (GLO's fitted Gaussian): smooth around the mean
        std, lo, hi = (z - mean).std(axis=0), z.min(axis=0), z.max(axis=0)
        z = gaussian_filter1d(z - mean, sigma, axis=0, mode="wrap")
        if not gaussian:  # keep the prior's per-coordinate spread (smoothing shrinks it) and range
            z = np.clip(z * (std / np.maximum(z.std(axis=0), 1e-12)) + mean, lo, hi)
        else:
            z = z + mean
    if renormalize and gaussian:
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12) * np.sqrt(dim)
    return z.astype(np.float32)

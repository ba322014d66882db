"""Perceptual path length (Karras et al. 2019), computed when LPIPS weights are given by path.

For each sample: latents z0, z1 ~ prior, t = 0 ("end") or t ~ U(0, 1) ("full"); the generator's images at
t and t + eps along slerp(z0, z1) ("z") or lerp(w0, w1) in the mapping network's output ("w", StyleGAN-type
generators only), with the same noise for both; images larger than 256 are box-downsampled to 256;
d = LPIPS(img_t, img_t+eps) / eps^2. Values outside the 1st..99th percentiles are dropped; the result is
the mean of the rest.

The LPIPS network is a Keras model file (`--lpips_path`) called as `model([img0, img1])` on NHWC images in
[-1, 1] that returns one (squared) distance per pair — e.g. a conversion of Zhang et al.'s VGG16 LPIPS
weights. Nothing is downloaded.
"""
import os

import numpy as np
import tensorflow as tf

from vgrow_tf.errors import UserError
from vgrow_tf.sampling.latents import LatentSampler, slerp


def load_lpips(path):
    if not path:
        raise UserError("PPL needs LPIPS weights: pass --lpips_path=<Keras model file mapping [img0, img1] "
                        "in [-1, 1] to a distance per pair>")
    if not os.path.exists(path):
        raise UserError(f"LPIPS model {path} does not exist")
    import keras
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot load the LPIPS model {path} ({e.__class__.__name__})") from None
    return lambda a, b: np.asarray(model([a, b], training=False)).reshape(len(a))


def _downsample(images, size=256):
    n, h, w, c = images.shape
    if h <= size:
        return images
    f = h // size
    return images.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))


def _top(images):
    return images[-1] if isinstance(images, (list, tuple)) else images


def _generate_pair(snap, a, b, space, noise_seed, gen_kw):
    if space == "z":
        kw = dict(gen_kw)
        if snap.kind == "msg_stylegan":
            kw.update(noise_seed=noise_seed, randomize_noise=True)
        return _top(snap.generate(a, **kw)), _top(snap.generate(b, **kw))
    g = snap.networks.get("Gs")
    if g is None or not hasattr(g, "map") or not hasattr(g, "synthesis"):
        raise UserError(f"ppl in w needs a StyleGAN-type generator (mapping + synthesis); a {snap.kind} "
                        "snapshot has none, use ppl_zend / ppl_zfull")
    seed = tf.constant([int(noise_seed), 7], tf.int64)
    out = []
    for w in (a, b):
        d = g.broadcast(tf.convert_to_tensor(w, tf.float32))
        if gen_kw.get("truncation_psi") is not None:
            d = g.truncate(d, gen_kw["truncation_psi"], gen_kw.get("truncation_cutoff", 8))
        out.append(_top(g.synthesis(d, noise_seed=seed, randomize_noise=True)))
    return [np.asarray(o) for o in out]


def path_length(snap, lpips, num_samples, space="z", sampling="end", epsilon=1e-4, batch_size=32, seed=0,
                gen_kw=None, progress=None):
    gen_kw = dict(gen_kw or {})
    sampler = LatentSampler(snap)
    rng = np.random.RandomState(seed)
    z = sampler.draw(2 * num_samples, seed)
    dist = []
    for i in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - i)
        z0, z1 = z[2 * i:2 * i + 2 * n:2], z[2 * i + 1:2 * i + 2 * n:2]
        t = np.zeros([n]) if sampling == "end" else rng.uniform(size=[n])
        if space == "z":
            a = np.stack([slerp(z0[j], z1[j], [t[j]])[0] for j in range(n)])
            b = np.stack([slerp(z0[j], z1[j], [t[j] + epsilon])[0] for j in range(n)])
        else:
            g = snap.networks.get("Gs")
            if g is None or not hasattr(g, "map"):
                raise UserError(f"ppl in w needs a StyleGAN-type generator; a {snap.kind} snapshot has none")
            w0, w1 = np.asarray(g.map(z0)), np.asarray(g.map(z1))
            tt = t[:, None].astype(np.float32)
            a, b = w0 + (w1 - w0) * tt, w0 + (w1 - w0) * (tt + epsilon)
        img0, img1 = _generate_pair(snap, a.astype(np.float32), b.astype(np.float32), space, seed + i, gen_kw)
        img0, img1 = _downsample(np.asarray(img0)), _downsample(np.asarray(img1))
        dist.append(lpips(img0, img1) / epsilon ** 2)
        if progress is not None:
            progress.update(n)
    dist = np.concatenate(dist)
    lo, hi = np.percentile(dist, 1, method="lower"), np.percentile(dist, 99, method="higher")
    return float(np.mean(dist[(dist >= lo) & (dist <= hi)]))

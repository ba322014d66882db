"""GLO evaluation: reconstructions, held-out latent fitting, Gaussian sampling, interpolation, export.

Everything takes a loaded GLO snapshot (`vgrow_tf.snapshot.load(path, expect_kind="glo")`), whose
`arrays["latents"]` is the learned table (row i = record i of the training dataset) and whose config
names the dataset, its `num_latents` training records and the `holdout` records after them.
Images are NHWC float32 in [-1, 1]; errors are per-pixel mean squared errors in that range.
Decoding takes `bn_mode` ("moving", the default, or "batch", the reference code's BN; see
`vgrow_tf.models.glo.generate`).
"""
import os

import h5py
import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import snapshot as snapshot_lib
from vgrow_tf.errors import UserError
from vgrow_tf.models.glo import fit_gaussian, latent_sampler, read_images, sample_gaussian  # noqa: F401


def load(path):
    return snapshot_lib.load(path, expect_kind="glo")


def learned_latents(snap):
    if "latents" not in snap.arrays:
        raise UserError(f"{snap.path} holds no latent table (arrays/latents); is it a GLO snapshot?")
    return np.asarray(snap.arrays["latents"], np.float32)


def _dataset(snap, dataset_path):
    path = dataset_path or snap.config.get("dataset")
    if not path or not os.path.exists(path):
        raise UserError(f"the dataset of {snap.path} ({path}) is not available; pass its directory "
                        "(or the reference's data.hdf5)")
    return path


def training_rows(snap):
    """Rows of the latent table that were trained, in the order the trainer listed them: the original's
    (shuffled) training split for an imported reference model, 0..num_latents-1 otherwise."""
    if "train_order" in snap.arrays:
        return np.asarray(snap.arrays["train_order"], np.int64)
    return np.arange(len(learned_latents(snap)))


def mse(a, b):
    """Per-image mean squared error."""
    return np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)), axis=(1, 2, 3))


# --- reconstruction ------------------------------------------------------------------------------

def reconstruct_training(snap, dataset_path=None, indices=None, count=64, bn_mode="moving"):
    """Training images and G(z_i) for their learned latents.

    Returns dict(indices, images, reconstructions, mse) with the per-image errors; `indices` defaults
    to the first `count` training records (`training_rows`), decoded as one batch.
    """
    latents = learned_latents(snap)
    indices = training_rows(snap)[:count] if indices is None else np.asarray(indices)
    if indices.size and (indices.min() < 0 or indices.max() >= len(latents)):
        raise UserError(f"training indices must lie in [0, {len(latents)})")
    images = read_images(_dataset(snap, dataset_path), snap.config["resolution"], 0, int(indices.max()) + 1)
    images = images[indices]
    recon = snap.generate(latents[indices], batch_size=max(1, len(indices)), bn_mode=bn_mode)
    return dict(indices=indices, images=images, reconstructions=recon, mse=mse(images, recon))


def fit_latents(snap, images, steps=300, learning_rate=0.05, loss=None, projection=None, init=None,
                seed=0, batch_size=256):
    """Optimises fresh latents for `images` with the generator frozen (BN in inference mode).

    Adam on the summed per-image loss (the snapshot's training loss by default), projecting after
    every step as in training. `init` defaults to projected Gaussian draws. Returns
    (latents [N, z_dim], per-image MSE before [N], per-image MSE after [N]).
    """
    from vgrow_tf.models import glo
    config = snap.config
    loss_fn = glo.reconstruction_loss(loss or config.get("loss", "lap1"))
    projection = projection or config.get("latent_projection", "sphere")
    images = np.asarray(images, np.float32)
    if init is None:
        init = glo.project_np(np.random.RandomState(seed).randn(len(images), config["z_dim"]).astype(np.float32),
                              projection)
    before = mse(images, snap.generate(init))
    g = snap.networks["G"]
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start:start + batch_size])
        z = tf.Variable(np.asarray(init[start:start + batch_size], np.float32))
        opt = keras.optimizers.Adam(learning_rate, epsilon=1e-7)  # our procedure (none in the reference)
        opt.build([z])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                value = tf.reduce_sum(loss_fn(x, g(z, training=False)))
            opt.apply_gradients([(tape.gradient(value, z), z)])
            z.assign(glo.project(z, projection))
            return value

        for _ in range(steps):
            step()
        out.append(z.numpy())
    latents = np.concatenate(out)
    return latents, before, mse(images, snap.generate(latents))


def heldout_images(snap, dataset_path=None, count=None):
    """The held-out records (those after the `num_latents` training records) of the snapshot's dataset."""
    n, holdout = snap.config["num_latents"], snap.config.get("holdout", 0)
    if not holdout:
        raise UserError(f"{snap.path} was trained on the whole dataset (--holdout=0); pass held-out images "
                        "from another dataset directory")
    stop = n + (holdout if count is None else min(count, holdout))
    return read_images(_dataset(snap, dataset_path), snap.config["resolution"], n, stop)


def reconstruct_heldout(snap, images=None, dataset_path=None, count=256, **fit_kw):
    """Fits latents to held-out images (the snapshot's held-out records by default).

    Returns dict(images, reconstructions, latents, mse_random (error of the initial random latents),
    mse (after fitting), mean_mse).
    """
    images = heldout_images(snap, dataset_path, count) if images is None else np.asarray(images, np.float32)
    latents, before, after = fit_latents(snap, images, **fit_kw)
    return dict(images=images, reconstructions=snap.generate(latents), latents=latents, mse_random=before,
                mse=after, mean_mse=float(np.mean(after)))


def pca_baseline_mse(train_images, test_images, dim):
    """Per-image MSE of the best rank-`dim` PCA reconstruction (fitted on train_images), the paper's baseline."""
    from sklearn.decomposition import PCA
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)  # noqa: E731
    pca = PCA(dim).fit(flat(train_images))
    test = flat(test_images)
    recon = pca.inverse_transform(pca.transform(test))
    return np.mean(np.square(test - recon), axis=1)


# --- sampling (fit_gaussian, sample_gaussian: vgrow_tf.models.glo) ---------------------------------

def generate(snap, count, seed=0, bn_mode="moving"):
    """Images decoded from draws of the full-covariance Gaussian fitted to the learned latents."""
    learned_latents(snap)
    return snap.generate(latent_sampler(snap.config, snap.arrays)(count, seed), bn_mode=bn_mode)


# --- interpolation ---------------------------------------------------------------------------------

def slerp(a, b, t):
    """Spherical interpolation between rows of a and b at fractions t (any norms: the angle is taken
    between directions and the norm is interpolated linearly). Returns [len(t), ..., d]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64).reshape((-1,) + (1,) * a.ndim)
    na, nb = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    ua, ub = a / np.maximum(na, 1e-12), b / np.maximum(nb, 1e-12)
    omega = np.arccos(np.clip(np.sum(ua * ub, axis=-1, keepdims=True), -1.0, 1.0))
    sin = np.sin(omega)
    small = sin < 1e-6
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * omega) / np.where(small, 1.0, sin))
    wb = np.where(small, t, np.sin(t * omega) / np.where(small, 1.0, sin))
    direction = wa * ua + wb * ub
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-12)
    return (direction * ((1.0 - t) * na + t * nb)).astype(np.float32)


def interpolate(snap, pairs=None, num_pairs=8, steps=15, seed=0, bn_mode="moving"):
    """Rows of images along the sphere between pairs of training latents (endpoints included).

    `pairs` is [P, 2] training indices (default: random pairs). Returns (images [P, steps, H, W, C], pairs).
    """
    latents = learned_latents(snap)
    if pairs is None:
        rows = training_rows(snap)
        pairs = rows[np.random.RandomState(seed).randint(0, len(rows), size=(num_pairs, 2))]
    pairs = np.asarray(pairs)
    path = slerp(latents[pairs[:, 0]], latents[pairs[:, 1]], np.linspace(0.0, 1.0, steps))  # [steps, P, d]
    path = np.transpose(path, (1, 0, 2)).reshape(-1, latents.shape[1])
    images = snap.generate(path, bn_mode=bn_mode)
    return images.reshape((len(pairs), steps) + images.shape[1:]), pairs


# --- export ------------------------------------------------------------------------------------

def export_hdf5(snap, path, dataset_path=None, extra=None):
    """The learned latents in the reference's data.hdf5 layout: one group per image named str(i) with
    `image` (uint8 H x W x C) and `code` (float64 [z_dim]); an `id.txt` with one id per line is
    written beside it. `extra` = (images, codes) appends more entries (e.g. held-out images with
    fitted latents) after the training ones. Written atomically. Returns the path."""
    from vgrow_tf.sampling.images import to_uint8
    latents = learned_latents(snap)
    images = read_images(_dataset(snap, dataset_path), snap.config["resolution"], 0, len(latents))
    codes = [latents]
    if extra is not None:
        images = np.concatenate([images, np.asarray(extra[0], np.float32)])
        codes.append(np.asarray(extra[1], np.float32))
    codes = np.concatenate(codes)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for i, (image, code) in enumerate(zip(to_uint8(images), codes)):
                group = f.create_group(str(i))
                group["image"] = image
                group["code"] = code.astype(np.float64)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), "id.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in range(len(codes))))
    return path


# --- files (what generate_samples.py --mode reconstruct|generate|interpolate writes) -----------------

PAIRS_PER_ROW = 4


def _save_pairs(path, images, recon):
    """Pairs `original | reconstruction` (1 px of dark grey inside a pair, 4 px of mid-grey between pairs),
    PAIRS_PER_ROW pairs per row."""
    from vgrow_tf.sampling.images import pair_grid, save_image
    return save_image(path, pair_grid(images, recon, PAIRS_PER_ROW))


def save_reconstructions(snap, out_dir, dataset_path=None, count=32, heldout_count=32, steps=300, seed=0,
                         bn_mode="moving"):
    """Writes reconstruct-train.png (each training image, left, beside G(z_i), right) and, when the snapshot
    held images out (or `heldout_count` is 0, skipped), reconstruct-heldout.png with latents fitted with G
    frozen. Returns dict(train_mse, heldout_mse, random_mse, paths); errors are means over the images shown."""
    os.makedirs(out_dir, exist_ok=True)
    result = {"paths": []}
    rec = reconstruct_training(snap, dataset_path, count=count, bn_mode=bn_mode)
    result["paths"].append(_save_pairs(os.path.join(out_dir, "reconstruct-train.png"), rec["images"],
                                       rec["reconstructions"]))
    result["train_mse"] = float(rec["mse"].mean())
    if heldout_count and snap.config.get("holdout", 0):
        held = reconstruct_heldout(snap, dataset_path=dataset_path, count=heldout_count, steps=steps, seed=seed)
        result["paths"].append(_save_pairs(os.path.join(out_dir, "reconstruct-heldout.png"), held["images"],
                                           held["reconstructions"]))
        result["heldout_mse"] = held["mean_mse"]
        result["random_mse"] = float(held["mse_random"].mean())
    return result


def save_samples(snap, path, rows=10, cols=10, seed=0, bn_mode="moving"):
    """A rows x cols grid of samples from the Gaussian fitted to the learned latents."""
    from vgrow_tf.sampling.images import save_grid
    return save_grid(path, generate(snap, rows * cols, seed, bn_mode=bn_mode), rows, cols)


def save_interpolations(snap, path, num_pairs=15, steps=15, seed=0, pairs=None, bn_mode="moving"):
    """One row per pair of training latents: the two endpoints and slerp steps between them."""
    from vgrow_tf.sampling.images import save_grid
    rows, _ = interpolate(snap, pairs=pairs, num_pairs=num_pairs, steps=steps, seed=seed, bn_mode=bn_mode)
    return save_grid(path, rows.reshape((-1,) + rows.shape[2:]), rows.shape[0], steps)

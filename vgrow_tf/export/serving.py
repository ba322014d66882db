"""The serving functions every export format is built from: tf.functions over a loaded snapshot's
generator, with a dynamic batch size, that return uint8 images (what generate_samples.py writes).

`serving_module(snap)` gives a tf.Module whose `functions` dict maps a signature name to a
tf.function with an input signature; `serving_default` (z -> images) is always there, the family
extras only where the model has them:

- `multiscale`     (MSG models): z -> images_4x4 ... images_RxR, every scale;
- `truncation_psi` (MSG-StyleGAN): z, psi -> images, the truncation trick (cutoff 8, as sampling);
- `domain_b`, `both_domains` (CoGAN/SCoGAN): G2's images, and both domains' images for one z;
- `sample_gaussian` (GLO): noise [N, z_dim] ~ N(0, I) -> images of mean + noise @ chol^T, the
  Gaussian fitted to the learned latents (noise = RandomState(s).randn(1, z_dim) gives seed s);
- `discriminate` (models with a discriminator): uint8 images -> logits; CoGAN/SCoGAN: D1 (domain A),
  and `discriminate_b`: D2 (domain B);
- `metadata`: no input -> kind, resolution, channels, z_dim, source, config (JSON strings / ints).
"""
import json
import os

import numpy as np
import tensorflow as tf

from vgrow_tf.sampling import modes


def to_uint8(images):
    """tf twin of sampling.images.to_uint8: clip(rint(x * 127.5 + 127.5)); tf.round rounds half to even
    like np.rint."""
    return tf.cast(tf.clip_by_value(tf.round(images * 127.5 + 127.5), 0.0, 255.0), tf.uint8)


def from_uint8(images):
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def metadata(snap, source=None):
    """What a user of the exported file needs to feed it and to know what it is."""
    size = int(snap.family.image_size(snap.config)) if hasattr(snap.family, "image_size") \
        else int(snap.config["resolution"])
    return {"kind": snap.kind, "resolution": size, "channels": int(snap.config["channels"]),
            "z_dim": int(snap.latent_dim), "source": os.path.basename(os.path.normpath(source or snap.path)),
            "config": snap.config}


def _scales(snap, z, **kw):
    """Every output scale of the generator (one for single-scale models), float32 [-1, 1]."""
    out = snap.family.generator_tensor(snap.networks, snap.config, z, **kw)
    return [tf.cast(s, tf.float32) for s in (out if isinstance(out, (list, tuple)) else [out])]


def _default_kwargs(snap):
    """The generation options generate_samples.py uses by default (stored noise, domain a, BN moving)."""
    return modes.generation_kwargs(snap, None, False)


class ServingModule(tf.Module):
    """The snapshot's networks plus the signature functions; saving it saves only what they use."""

    def __init__(self, snap, source=None):
        super().__init__(name="vgrow_tf_export")
        # The networks' tf.Variables, tracked so that the functions' captures are saved with them (tracking
        # the Keras models themselves would also save Keras's own per-model serving functions).
        self.weights = {name: [w.value for w in net.weights] for name, net in snap.networks.items()}
        self.metadata_json = json.dumps(metadata(snap, source), sort_keys=True)  # a str: not wrapped by tracking
        z_spec = tf.TensorSpec([None, self.info["z_dim"]], tf.float32, name="z")
        kw = _default_kwargs(snap)
        self.functions = {"serving_default": self._function(
            lambda z: {"images": to_uint8(_scales(snap, z, **kw)[-1])}, z_spec)}
        self._add_family_extras(snap, z_spec, kw)
        self.functions["metadata"] = self._metadata_function()

    @property
    def info(self):
        return json.loads(self.metadata_json)

    def _function(self, fn, *specs):
        return tf.function(fn, input_signature=list(specs), autograph=False)

    def _add_family_extras(self, snap, z_spec, kw):
        sig = self.functions
        if modes.supports(snap, "all_scales"):
            sig["multiscale"] = self._function(lambda z: {
                f"images_{s.shape[1]}x{s.shape[2]}": to_uint8(s) for s in _scales(snap, z, **kw)}, z_spec)
        if modes.supports(snap, "truncation_psi"):
            psi_spec = tf.TensorSpec([], tf.float32, name="psi")
            sig["truncation_psi"] = self._function(lambda z, psi: {
                "images": to_uint8(_scales(snap, z, **dict(kw, truncation_psi=psi))[-1])}, z_spec, psi_spec)
        if modes.supports(snap, "domain"):
            sig["domain_b"] = self._function(lambda z: {
                "images": to_uint8(_scales(snap, z, **dict(kw, domain="b"))[-1])}, z_spec)
            sig["both_domains"] = self._function(lambda z: {
                "images_a": to_uint8(_scales(snap, z, **dict(kw, domain="a"))[-1]),
                "images_b": to_uint8(_scales(snap, z, **dict(kw, domain="b"))[-1])}, z_spec)
        if hasattr(snap.family, "gaussian_prior"):
            mean, chol = (tf.constant(a, tf.float32) for a in snap.family.gaussian_prior(snap.config, snap.arrays))
            noise_spec = tf.TensorSpec([None, self.info["z_dim"]], tf.float32, name="noise")
            sig["sample_gaussian"] = self._function(lambda noise: {
                "images": to_uint8(_scales(snap, mean + tf.matmul(noise, chol, transpose_b=True), **kw)[-1])},
                noise_spec)
        if snap.has_discriminator():
            size, channels = self.info["resolution"], self.info["channels"]
            image_spec = tf.TensorSpec([None, size, size, channels], tf.uint8, name="images")
            sig["discriminate"] = self._function(lambda images: {
                "logits": tf.reshape(tf.cast(snap.discriminator_logit(from_uint8(images)), tf.float32), [-1])},
                image_spec)
            if modes.supports(snap, "domain"):  # CoGAN/SCoGAN: D1 above judges domain A, D2 domain B
                sig["discriminate_b"] = self._function(lambda images: {
                    "logits": tf.reshape(tf.cast(snap.discriminator_logit(from_uint8(images), domain="b"),
                                                 tf.float32), [-1])}, image_spec)

    def _metadata_function(self):
        info = self.info
        values = {"kind": info["kind"], "source": info["source"], "config": json.dumps(info["config"]),
                  "resolution": np.int32(info["resolution"]), "channels": np.int32(info["channels"]),
                  "z_dim": np.int32(info["z_dim"])}
        return self._function(lambda: {k: tf.constant(v) for k, v in values.items()})


def serving_module(snap, source=None):
    return ServingModule(snap, source)

"""DGflow (Ansari et al., ICLR 2021): refining samples with a discriminator-guided gradient flow.

The flow of F(rho) = D_f(rho || mu) - gamma H(rho) toward the data density mu is simulated in latent
space with a fixed ("stale") discriminator, whose logit d(x) estimates log(mu / rho) at x:

    z_{k+1} = z_k + eta * s(d(G(z_k))) * grad_z d(G(z_k)) + sqrt(2 eta gamma) * xi_k,   xi_k ~ N(0, I)

s(d) = r f''(r) with r = e^-d is the f-divergence's weight, taken from `vgrow_tf.divergences`
(KL: 1, JS: sigmoid(d), LogD: sigmoid(-d) — as in the paper — and Jeffreys, which the paper lacks).
As in the reference code, s is computed from d and held constant in the gradient (stop_gradient), the
gradient is that of the batch-summed logit (so each latent gets its own sample's gradient), and there
is no prior term, clipping or projection. Paper defaults: eta 0.1, gamma 0.01, 25 steps, saving
every 5; all its configs use KL. With gamma = 0 and KL the update is plain gradient ascent on d(G(z)).

Snapshots without a usable discriminator (GLO, ...) are refined with a density-ratio corrector: a
small network C trained (with D frozen) so that D + C estimates the log ratio for *this* generator
(`vgrow_tf.sampling.corrector`); the logit is then D(x) + C(x), or C(x) alone without a D.
"""
import math

import numpy as np
import tensorflow as tf

from vgrow_tf import divergences
from vgrow_tf.errors import UserError

DEFAULTS = dict(eta=0.1, gamma=0.01, steps=25, save_every=5, divergence="KL")


def dgflow_step(z, generator_fn, logit_fn, eta, gamma, divergence, noise):
    """One Euler-Maruyama step. z [N, dim] (tensor or array), noise [N, dim] standard normal.

    Returns (new z, d(G(z)) at the old z [N]). Pure function of its arguments (the noise is given),
    so it can be checked against a hand computation.
    """
    name = divergences.canonical_name(divergence)
    z = tf.convert_to_tensor(z, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        d = tf.reshape(tf.cast(logit_fn(generator_fn(z)), tf.float32), [-1])
        s = tf.stop_gradient(divergences.s_weight(d, name))
        objective = tf.reduce_sum(s * d)  # d/dz_i = s_i * grad_{z_i} d_i (samples are independent)
    grad = tape.gradient(objective, z)
    if grad is None:
        raise UserError("the discriminator's logit does not depend on the latents; cannot run DGflow")
    new_z = z + eta * grad + math.sqrt(2.0 * eta * gamma) * tf.convert_to_tensor(noise, tf.float32)
    return new_z, d


def refine_latents(latents, generator_fn, logit_fn, eta=0.1, gamma=0.01, steps=25, divergence="KL",
                   save_every=5, seed=0, batch_size=64, noise_fn=None, progress=None):
    """Runs DGflow on `latents` [N, dim] in batches.

    Returns (saved, logits): `saved` maps step -> latents [N, dim] for step 0 (the input), every
    `save_every` steps and the last step; `logits` maps the same steps -> d(G(z)) [N] (the logits at
    the final step are computed with one more forward pass). The noise is
    `np.random.RandomState(seed)` drawn per step for the whole set (so batching does not change the
    result), or `noise_fn(step, shape)` when given.
    """
    if steps < 0:
        raise UserError(f"--dgflow_steps must be non-negative, not {steps}")
    if eta <= 0:
        raise UserError(f"--dgflow_eta must be positive, not {eta}")
    if gamma < 0:
        raise UserError(f"--dgflow_gamma must be non-negative, not {gamma}")
    divergence = divergences.canonical_name(divergence)
    save_every = int(save_every) if save_every and save_every > 0 else max(int(steps), 1)
    z = np.asarray(latents, np.float32).copy()
    rng = np.random.RandomState(seed)
    if noise_fn is None:
        noise_fn = lambda step, shape: rng.randn(*shape).astype(np.float32)  # noqa: E731
    saved, logits = {0: z.copy()}, {}

    def batched_logits(values):
        return np.concatenate([np.reshape(np.asarray(logit_fn(generator_fn(tf.constant(values[i:i + batch_size])))),
                                          [-1]) for i in range(0, len(values), batch_size)])

    for step in range(1, int(steps) + 1):
        noise = noise_fn(step, z.shape)
        d_old = np.zeros([len(z)], np.float32)
        for i in range(0, len(z), batch_size):
            new, d = dgflow_step(z[i:i + batch_size], generator_fn, logit_fn, eta, gamma, divergence,
                                 noise[i:i + batch_size])
            z[i:i + batch_size] = new.numpy()
            d_old[i:i + batch_size] = d.numpy()
        if step - 1 in saved:
            logits[step - 1] = d_old
        if step % save_every == 0 or step == steps:
            saved[step] = z.copy()
        if progress:
            progress(step, float(np.mean(d_old)))
    for step in saved:
        if step not in logits:
            logits[step] = batched_logits(saved[step]).astype(np.float32)
    return saved, logits


# --- snapshot adapters -------------------------------------------------------------------------------

def differentiable_generator(snap, truncation_psi=None, randomize_noise=False, domain="a", lod=None):
    """z (tensor) -> what the snapshot's discriminator consumes, differentiably.

    `Snapshot.generate` returns numpy, so DGflow calls the networks directly: a family may provide
    `generator_tensor(networks, config, z, **kw)`; otherwise the known families are adapted here.
    MSG models return all scales (their D reads the whole pyramid). StyleGAN noise defaults to the
    stored constants so that the flow sees one deterministic G.
    """
    family, nets, config, kind = snap.family, snap.networks, snap.config, snap.kind
    if hasattr(family, "generator_tensor"):
        return lambda z: family.generator_tensor(nets, config, z, truncation_psi=truncation_psi,
                                                 randomize_noise=randomize_noise)
    if kind == "vgrow_pg":
        level, alpha = family._level(config, lod)
        return lambda z: nets["Gs"](z, level=level, alpha=alpha)
    if kind in ("msg_stylegan", "msg_progan"):
        kw = {}
        if kind == "msg_stylegan":
            kw = dict(truncation_psi=truncation_psi, randomize_noise=randomize_noise)
        return lambda z: list(nets["Gs"](z, **kw))
    if kind in ("cogan", "scogan"):
        name = {"a": "G1", "b": "G2"}.get(domain)
        if name is None:
            raise UserError("DGflow refines one domain at a time; use --domain a or b")
        return lambda z: nets[name](z)[-1]
    if "Gs" in nets:
        return lambda z: nets["Gs"](z)
    raise UserError(f"DGflow does not know how to differentiate a {kind} generator")


def _top_scale(x):
    return x[-1] if isinstance(x, (list, tuple)) else x


def logit_function(snap, corrector=None, discriminator=None):
    """x -> d(x) [N]: the snapshot's own D, or with a corrector D'(x) + C(x).

    `corrector` is a loaded dgflow_corrector snapshot; `discriminator` an optional loaded snapshot
    whose D is the base of the corrector (default: the one named in the corrector's config, if any).
    """
    if corrector is None:
        if not snap.has_discriminator():
            raise UserError(f"a {snap.kind} snapshot has no discriminator for DGflow; train a density-ratio "
                            "corrector for it (train.py --model=dgflow_corrector) and pass it with --corrector")
        return lambda x: tf.reshape(snap.discriminator_logit(x), [-1])
    from vgrow_tf.sampling import corrector as corrector_lib
    return corrector_lib.logit_function(corrector, discriminator)


def refine_snapshot(snap, latents, corrector=None, discriminator=None, truncation_psi=None, domain="a",
                    **flow_kw):
    """DGflow on a snapshot: returns (saved latents by step, logits by step)."""
    gen = differentiable_generator(snap, truncation_psi=truncation_psi, domain=domain)
    if corrector is not None:
        base = gen
        gen = lambda z: _top_scale(base(z))  # noqa: E731 - the corrector reads top-resolution images
    return refine_latents(latents, gen, logit_function(snap, corrector, discriminator), **flow_kw)


def refined_images(snap, latents, gen_kw=None, batch_size=64, corrector=None, discriminator=None, domain="a",
                   **flow_kw):
    """{step: images [N, H, W, C] in [-1, 1]} for step 0 (base samples) and every saved DGflow step: what a
    metrics runner scores to report base vs refined samples (the DGflow paper's protocol)."""
    gen_kw = dict(gen_kw or {})
    saved, _ = refine_snapshot(snap, latents, corrector=corrector, discriminator=discriminator,
                               truncation_psi=gen_kw.get("truncation_psi"), domain=domain,
                               batch_size=batch_size, **flow_kw)
    return {step: np.concatenate([snap.generate(z[i:i + batch_size], **gen_kw)
                                  for i in range(0, len(z), batch_size)])
            for step, z in sorted(saved.items())}

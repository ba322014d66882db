"""DGflow (Ansari et al., ICLR 2021): refining samples with a discriminator-guided gradient flow.

The flow of F(rho) = D_f(rho || mu) - gamma H(rho) toward the data density mu is simulated in latent
space with a fixed ("stale") discriminator, whose logit d(x) estimates log(mu / rho) at x:

    z_{k+1} = z_k + eta * s(d(G(z_k))) * grad_z d(G(z_k)) + sqrt(2 eta gamma) * xi_k,   xi_k ~ N(0, I)

s(d) = r f''(r) with r = e^-d is the f-divergence's weight, taken from `vgrow_tf.divergences`
(KL: 1, JS: sigmoid(d) exactly, LogD: sigmoid(-d) — as DGflow's code — and Jeffreys, which it lacks).
As in the reference code, the gradient is that of the batch-summed logit, each row's then multiplied
by its own s (no gradient through s), and there is no prior term, clipping or projection. Paper
defaults: eta 0.1, gamma 0.01, 25 steps, saving every 5; all its configs use KL. With gamma = 0 and KL
the update is plain gradient ascent on d(G(z)).

What a refined latent depends on. The batch-summed logit gives each latent its own sample's gradient
only when D treats samples independently. VGrow-PG's and MSG's discriminators do not: their minibatch
standard-deviation feature mixes the whole batch (VGrow-PG) or groups within it (MSG), so a latent's
path depends on the other latents refined with it. Latents are therefore refined in fixed groups of
`group_size` (the refinement batch, recorded with the outputs), each group one batch through D, and
every latent draws its noise from its own stream (`seed`, its key). A refined latent thus depends on
the flow parameters, `seed`, `group_size` and the members of its group, and on nothing else:
`refine_seeds` aligns groups to seed numbers (seeds g*G .. g*G+G-1 form group g, completed with the
seeds not asked for), so seed s refines to the same latent whatever other seeds are generated;
`refine_stream` does the same for rows of one latent stream (metrics). A different `group_size` gives
different (equally valid) refinements with such discriminators.

Snapshots without a usable discriminator (GLO, ...) are refined with a density-ratio corrector: a
small network C trained (with D frozen) so that D + C estimates the log ratio for *this* generator
(`vgrow_tf.sampling.corrector`); the logit is then D(x) + C(x), or C(x) alone without a D.
"""
import math

import numpy as np
import tensorflow as tf

from vgrow_tf import divergences
from vgrow_tf.errors import UserError

DEFAULTS = dict(eta=0.1, gamma=0.01, steps=25, save_every=5, divergence="KL", group_size=64)


def dgflow_step(z, generator_fn, logit_fn, eta, gamma, divergence, noise):
    """One Euler-Maruyama step for one batch. z [N, dim] (tensor or array), noise [N, dim] standard normal.

    Returns (new z, d(G(z)) at the old z [N]). Pure function of its arguments (the noise is given),
    so it can be checked against a hand computation. The batch is D's batch: with a minibatch-stddev
    discriminator each row's gradient depends on the other rows.
    """
    name = divergences.canonical_name(divergence)
    z = tf.convert_to_tensor(z, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        d = tf.reshape(tf.cast(logit_fn(generator_fn(z)), tf.float32), [-1])
        total = tf.reduce_sum(d)
    grad = tape.gradient(total, z)
    if grad is None:
        raise UserError("the discriminator's logit does not depend on the latents; cannot run DGflow")
    # As the reference code: row i's gradient of the batch-summed logit, times row i's own s. (Not the
    # gradient of sum_j s_j d_j: with a minibatch-stddev D, d_j depends on z_i and the two differ.)
    s = divergences.s_weight(d, name, js_floor=0.0)  # DGflow's JS: exactly sigmoid(d), no VGrow guard
    new_z = z + eta * s[:, None] * grad + math.sqrt(2.0 * eta * gamma) * tf.convert_to_tensor(noise, tf.float32)
    return new_z, d


def latent_noise(seed, keys, steps, dim):
    """[len(keys), steps, dim] standard normal: row i is the stream of (seed, keys[i]) alone."""
    return np.stack([np.random.default_rng([int(seed), int(k)]).standard_normal((steps, dim)).astype(np.float32)
                     for k in keys]) if len(keys) else np.zeros([0, steps, dim], np.float32)


def _check_group(group_size):
    if group_size < 1:
        raise UserError(f"--dgflow_batch must be positive, not {group_size}")


def _check_flow(eta, gamma, steps, group_size):
    _check_group(group_size)
    if steps < 0:
        raise UserError(f"--dgflow_steps must be non-negative, not {steps}")
    if eta <= 0:
        raise UserError(f"--dgflow_eta must be positive, not {eta}")
    if gamma < 0:
        raise UserError(f"--dgflow_gamma must be non-negative, not {gamma}")


def refine_latents(latents, generator_fn, logit_fn, eta=0.1, gamma=0.01, steps=25, divergence="KL",
                   save_every=5, seed=0, group_size=DEFAULTS["group_size"], noise_keys=None, progress=None,
                   noise=None):
    """Runs DGflow on `latents` [N, dim], rows taken in consecutive groups of `group_size` (the last
    may be smaller), each group one batch through D for every step.

    Returns (saved, logits): `saved` maps step -> latents [N, dim] for step 0 (the input), every
    `save_every` steps and the last step; `logits` maps the same steps -> d(G(z)) [N]. Row i's noise is
    `latent_noise(seed, [noise_keys[i]])` (keys default to the row numbers), so it does not depend on
    the grouping; with a batch-dependent D the path does (see the module docstring). `progress(step,
    mean logit)` is called for every step of every group. `noise` [N, steps, dim] replaces the seeded
    streams (to rerun another implementation's draws).
    """
    _check_flow(eta, gamma, steps, group_size)
    divergence = divergences.canonical_name(divergence)
    steps, group_size = int(steps), int(group_size)
    save_every = int(save_every) if save_every and save_every > 0 else max(steps, 1)
    keep = sorted({0, steps} | set(range(save_every, steps + 1, save_every)))
    z = np.asarray(latents, np.float32)
    keys = np.arange(len(z)) if noise_keys is None else np.asarray(noise_keys)
    saved = {k: np.zeros_like(z) for k in keep}
    logits = {k: np.zeros([len(z)], np.float32) for k in keep}
    for start in range(0, len(z), group_size):
        rows = slice(start, start + group_size)
        group = z[rows].copy()
        group_noise = latent_noise(seed, keys[rows], steps, z.shape[1]) if noise is None else noise[rows]
        saved[0][rows] = group
        for step in range(1, steps + 1):
            new, d = dgflow_step(group, generator_fn, logit_fn, eta, gamma, divergence, group_noise[:, step - 1])
            if step - 1 in logits:
                logits[step - 1][rows] = d.numpy()
            group = new.numpy()
            if step in saved:
                saved[step][rows] = group
            if progress:
                progress(step, float(np.mean(d.numpy())))
        logits[steps][rows] = np.reshape(np.asarray(logit_fn(generator_fn(tf.constant(group)))), [-1])
    return saved, logits


def aligned_groups(seeds, group_size):
    """The seeds to refine so that each requested seed's group is complete: every g*G .. g*G+G-1 with
    a requested seed in it (G = group_size), in order, and the requested seeds' rows among them."""
    groups = sorted({int(s) // group_size for s in seeds})
    padded = [g * group_size + i for g in groups for i in range(group_size)]
    row = {s: i for i, s in enumerate(padded)}
    return padded, np.array([row[int(s)] for s in seeds], np.int64)


def refine_seeds(snap, seeds, group_size=DEFAULTS["group_size"], seed=0, **flow_kw):
    """DGflow on the latents of `seeds` (one latent per seed, as generate_samples draws them): seed s
    is refined in the group of seeds G*(s//G) .. G*(s//G)+G-1, with its own noise stream (seed, s), so
    its result does not depend on the other seeds asked for. Returns (saved, logits) rows for `seeds`."""
    from vgrow_tf.sampling import latents as latents_lib
    _check_group(group_size)
    padded, rows = aligned_groups(seeds, int(group_size))
    saved, logits = refine_snapshot(snap, latents_lib.latents_for_seeds(snap, padded), group_size=group_size,
                                    noise_keys=padded, seed=seed, **flow_kw)
    return {k: v[rows] for k, v in saved.items()}, {k: v[rows] for k, v in logits.items()}


def refine_stream(snap, sampler, count, seed, group_size=DEFAULTS["group_size"], **flow_kw):
    """The final refined latents of the first `count` rows of `sampler.draw(·, seed)`, refined in groups
    of `group_size` rows (the stream is drawn up to a whole group), noise keyed by row: the first rows
    refine the same whatever `count` is (fid10k's are fid50k's first 10k)."""
    _check_group(group_size)
    total = -(-int(count) // int(group_size)) * int(group_size)
    latents = np.asarray(sampler.draw(total, seed), np.float32)
    saved, _ = refine_snapshot(snap, latents, group_size=group_size, seed=seed, **flow_kw)
    return saved[max(saved)][:count]


# --- snapshot adapters -------------------------------------------------------------------------------

def differentiable_generator(snap, truncation_psi=None, randomize_noise=False, domain="a", lod=None):
    """z (tensor) -> what the snapshot's discriminator consumes, differentiably.

    `Snapshot.generate` returns numpy, so DGflow calls the family's `generator_tensor(networks, config, z,
    **kw)` (MSG models return all scales, since their D reads the whole pyramid).
    """
    family, nets, config = snap.family, snap.networks, snap.config
    if not hasattr(family, "generator_tensor"):
        raise UserError(f"DGflow does not know how to differentiate a {snap.kind} generator")
    return lambda z: family.generator_tensor(nets, config, z, truncation_psi=truncation_psi,
                                             randomize_noise=randomize_noise, domain=domain, lod=lod)


def _top_scale(x):
    return x[-1] if isinstance(x, (list, tuple)) else x


def logit_function(snap, corrector=None, discriminator=None, domain="a"):
    """x -> d(x) [N]: the snapshot's own D, or with a corrector D'(x) + C(x).

    `corrector` is a loaded dgflow_corrector snapshot; `discriminator` an optional loaded snapshot
    whose D is the base of the corrector (default: the one named in the corrector's config, if any).
    """
    if corrector is None:
        if not snap.has_discriminator():
            raise UserError(f"a {snap.kind} snapshot has no discriminator for DGflow; train a density-ratio "
                            "corrector for it (train.py --model=dgflow_corrector) and pass it with --corrector")
        return lambda x: tf.reshape(snap.discriminator_logit(x, domain=domain), [-1])
    from vgrow_tf.sampling import corrector as corrector_lib
    return corrector_lib.logit_function(corrector, discriminator)


def refine_snapshot(snap, latents, corrector=None, discriminator=None, truncation_psi=None, domain="a",
                    **flow_kw):
    """DGflow on a snapshot: returns (saved latents by step, logits by step)."""
    gen = differentiable_generator(snap, truncation_psi=truncation_psi, domain=domain)
    if corrector is not None:
        base = gen
        gen = lambda z: _top_scale(base(z))  # noqa: E731 - the corrector reads top-resolution images
    return refine_latents(latents, gen, logit_function(snap, corrector, discriminator, domain), **flow_kw)


def refined_images(snap, latents, gen_kw=None, batch_size=64, corrector=None, discriminator=None, domain="a",
                   **flow_kw):
    """{step: images [N, H, W, C] in [-1, 1]} for step 0 (base samples) and every saved DGflow step: what a
    metrics runner scores to report base vs refined samples (the DGflow paper's protocol). `batch_size`
    is the generation batch; the refinement batch is `group_size` (see `refine_latents`)."""
    gen_kw = dict(gen_kw or {})
    saved, _ = refine_snapshot(snap, latents, corrector=corrector, discriminator=discriminator,
                               truncation_psi=gen_kw.get("truncation_psi"), domain=domain, **flow_kw)
    return {step: np.concatenate([snap.generate(z[i:i + batch_size], **gen_kw)
                                  for i in range(0, len(z), batch_size)])
            for step, z in sorted(saved.items())}

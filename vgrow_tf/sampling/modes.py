"""The work behind each `generate_samples.py --mode`: plain functions over a loaded snapshot.

Every function takes a `vgrow_tf.snapshot.Snapshot`, an output directory and plain arguments, writes
files atomically and returns the list of paths it wrote (tests and scripts call these directly).
"""
import inspect
import json
import math
import os

import numpy as np

from vgrow_tf import progress
from vgrow_tf.errors import UserError
from vgrow_tf.sampling import direction as direction_lib
from vgrow_tf.sampling import latents as latents_lib
from vgrow_tf.sampling import video as video_lib
from vgrow_tf.sampling.images import make_grid, save_grid, save_image, to_uint8, upsample_nearest

MULTISCALE_KINDS = ("msg_stylegan", "msg_progan")
TRUNCATION_KINDS = ("msg_stylegan",)
NOISE_KINDS = ("msg_stylegan",)
SEPARATOR_VALUE = 0.0  # mid-grey between the scales of multi-scale sheets: visible on dark and light images


def _explicit_params(fn):
    return {name for name, p in inspect.signature(fn).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def supports(snap, kwarg):
    """Whether the snapshot's generate() honours `kwarg` (a named parameter, not swallowed by **unused);
    a family may list the kinds that honour it in SAMPLING_KWARGS = {kwarg: kinds}."""
    declared = getattr(snap.family, "SAMPLING_KWARGS", {}).get(kwarg)
    if declared is not None:
        return snap.kind in declared
    if kwarg not in _explicit_params(snap.family.generate):
        return False
    defaults = {"all_scales": MULTISCALE_KINDS, "truncation_psi": TRUNCATION_KINDS,
                "randomize_noise": NOISE_KINDS}
    return snap.kind in defaults.get(kwarg, (snap.kind,))


def generation_kwargs(snap, truncation_psi=None, randomize_noise=None):
    """Keyword arguments for Snapshot.generate. Truncation on a model without it is ignored with a
    notice; --randomize_noise on a model without noise inputs is a UserError."""
    kw = {}
    if truncation_psi is not None:
        if supports(snap, "truncation_psi"):
            kw["truncation_psi"] = float(truncation_psi)
        else:  # so one command line (e.g. the README's video example) works for every model
            print(f"Note: --truncation_psi is ignored: {snap.path} is a {snap.kind} model without truncation",
                  flush=True)
    if supports(snap, "randomize_noise"):
        kw["randomize_noise"] = bool(randomize_noise)
    elif randomize_noise:
        raise UserError(f"--randomize_noise applies to StyleGAN-type snapshots, not to {snap.kind}")
    return kw


def generate_all_scales(snap, latents, **kw):
    if not supports(snap, "all_scales"):
        raise UserError(f"multi-scale output needs an MSG snapshot (msg_stylegan or msg_progan); {snap.path} "
                        f"is a {snap.kind} model with a single output scale")
    return snap.generate(latents, all_scales=True, **kw)


def _name(seed):
    return f"seed{int(seed):04d}.png"


def _grid_shape(n, rows=None, cols=None):
    if rows and cols:
        if rows * cols > n:
            raise UserError(f"a {rows} x {cols} grid needs {rows * cols} samples; only {n} seeds were given")
        return rows, cols
    if cols:
        return -(-n // cols), cols
    if rows:
        return rows, -(-n // rows)
    cols = int(math.ceil(math.sqrt(n)))
    return -(-n // cols), cols


# --- samples and grids (optionally DGflow-refined) -------------------------------------------------

def refined_latents(snap, seeds, latents, refine=None, gen_kw=None):
    """{step: latents} — {0: latents} without refinement, else DGflow's saved steps (and logits), each
    seed refined in its fixed seed-aligned group (`refine.refine_seeds`)."""
    if not refine:
        return {0: latents}, None
    from vgrow_tf.sampling import refine as refine_lib
    refine = dict(refine)
    psi = (gen_kw or {}).get("truncation_psi")
    return refine_lib.refine_seeds(snap, seeds, truncation_psi=psi, **refine)


def _write_refine_log(out_dir, seeds, saved, logits, prefix, refine):
    from vgrow_tf.sampling import refine as refine_lib
    flow = {k: refine.get(k, v) for k, v in refine_lib.DEFAULTS.items()}
    flow["seed"] = refine.get("seed", 0)
    path = os.path.join(out_dir, f"{prefix}dgflow.npz")
    arrays = {"seeds": np.asarray(seeds), "group_size": np.asarray(flow["group_size"])}
    for step in sorted(saved):
        arrays[f"latents_step{step}"] = saved[step]
        arrays[f"logits_step{step}"] = logits[step]
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    summary = {int(s): float(np.mean(logits[s])) for s in sorted(saved)}
    with open(os.path.join(out_dir, f"{prefix}dgflow-logits.json"), "w") as f:
        json.dump({"mean_logit_by_step": summary, "flow": flow}, f, indent=1)
    return path, summary


def save_samples(snap, out_dir, seeds, gen_kw=None, refine=None, batch_size=32):
    """One PNG per seed, `seedNNNN.png`. With DGflow, the final step is written there and every saved
    step to `dgflow-stepNN/` (step 0 = the unrefined samples), plus `dgflow.npz` (latents, logits)."""
    gen_kw = gen_kw or {}
    os.makedirs(out_dir, exist_ok=True)
    latents = latents_lib.latents_for_seeds(snap, seeds)
    saved, logits = refined_latents(snap, seeds, latents, refine, gen_kw)
    last = max(saved)
    paths = []
    for step, z in sorted(saved.items()):
        folders = [out_dir] if step == last else []
        if refine:
            folders.append(os.path.join(out_dir, f"dgflow-step{step:02d}"))
        if not folders:
            continue
        for i in range(0, len(z), batch_size):
            images = to_uint8(snap.generate(z[i:i + batch_size], **gen_kw))
            for seed, image in zip(seeds[i:i + batch_size], images):
                for folder in folders:
                    paths.append(save_image(os.path.join(folder, _name(seed)), image))
    if refine:
        path, summary = _write_refine_log(out_dir, seeds, saved, logits, "", refine)
        paths.append(path)
        print("DGflow mean logit by step: " + ", ".join(f"{k}: {v:.4f}" for k, v in summary.items()))
    return paths


def save_grid_images(snap, out_dir, seeds, rows=None, cols=None, gen_kw=None, refine=None, padding=0,
                     name="grid.png"):
    """A rows x cols grid of the seeds' samples (row-major). With DGflow: `grid.png` is the final step
    and `grid-dgflow-stepNN.png` each saved step."""
    gen_kw = gen_kw or {}
    rows, cols = _grid_shape(len(seeds), rows, cols)
    os.makedirs(out_dir, exist_ok=True)
    latents = latents_lib.latents_for_seeds(snap, seeds[:rows * cols])
    saved, logits = refined_latents(snap, seeds[:rows * cols], latents, refine, gen_kw)
    paths = []
    root, ext = os.path.splitext(name)
    for step, z in sorted(saved.items()):
        images = snap.generate(z, **gen_kw)
        if refine:
            paths.append(save_grid(os.path.join(out_dir, f"{root}-dgflow-step{step:02d}{ext}"), images, rows, cols,
                                   padding))
        if step == max(saved):
            paths.append(save_grid(os.path.join(out_dir, name), images, rows, cols, padding))
    if refine:
        path, summary = _write_refine_log(out_dir, seeds[:rows * cols], saved, logits, f"{root}-", refine)
        paths.append(path)
        print("DGflow mean logit by step: " + ", ".join(f"{k}: {v:.4f}" for k, v in summary.items()))
    return paths


# --- multi-scale -----------------------------------------------------------------------------------

def parse_scales(text, num_scales):
    """'0,2,4' or '' (all) -> scale indices, 0 = 4x4; negative indices count from the top."""
    if text in (None, "", []):
        return list(range(num_scales))
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out = []
    for item in items:
        try:
            k = int(str(item).strip())
        except ValueError:
            raise UserError(f"bad --scales entry {item!r}; give scale indices such as 0,2,4") from None
        if not -num_scales <= k < num_scales:
            raise UserError(f"--scales {k} is out of range: the model has {num_scales} scales (0 = 4x4)")
        out.append(k % num_scales)
    return out


def save_multiscale(snap, out_dir, seeds, gen_kw=None, scales=None, num_cols=None, padding=2):
    """Per seed `seedNNNN.png`: the chosen scales NN-upsampled to the full resolution and tiled with
    num_cols columns (default: one horizontal strip, lowest scale left; num_cols=1 is a vertical tower);
    plus `multiscale.png`, a sheet with one row per seed."""
    gen_kw = gen_kw or {}
    os.makedirs(out_dir, exist_ok=True)
    latents = latents_lib.latents_for_seeds(snap, seeds)
    all_scales = generate_all_scales(snap, latents, **gen_kw)
    indices = parse_scales(scales, len(all_scales))
    size = all_scales[-1].shape[1]
    ups = [upsample_nearest(np.asarray(all_scales[k]), size) for k in indices]
    cols = num_cols or len(ups)
    rows = -(-len(ups) // cols)
    paths = []
    grey = int(to_uint8(SEPARATOR_VALUE))
    for i, seed in enumerate(seeds):
        tiles = to_uint8(np.stack([u[i] for u in ups]))
        paths.append(save_image(os.path.join(out_dir, _name(seed)), make_grid(tiles, rows, cols, padding, grey)))
    sheet = np.stack([u[i] for i in range(len(seeds)) for u in ups])
    paths.append(save_grid(os.path.join(out_dir, "multiscale.png"), sheet, len(seeds), len(ups), padding,
                           SEPARATOR_VALUE))
    return paths


# --- video -----------------------------------------------------------------------------------------

def save_video(snap, path, num_points=12, transition_points=60, smoothing=1.0, seed=0, fps=24, resize=None,
               scales=None, num_cols=None, gen_kw=None, batch_size=16):
    """A looping latent walk: num_points * transition_points frames of smoothed latents. With `scales`
    each frame is a grid of those scales (MSG models), NN-upsampled to the largest one chosen."""
    gen_kw = gen_kw or {}
    sampler = latents_lib.LatentSampler(snap)
    walk = latents_lib.smooth_walk(sampler, num_points, transition_points, smoothing, seed)
    if scales not in (None, "", []):
        num = len(generate_all_scales(snap, walk[:1], **gen_kw))
        indices = parse_scales(scales, num)

        def render(z):
            return video_lib.scales_frame(generate_all_scales(snap, z, **gen_kw), indices, num_cols)
    else:
        def render(z):
            return snap.generate(z, **gen_kw)
    with progress.progress_bar(total=len(walk), desc="Rendering", unit="frame", mininterval=0.5) as bar:
        frames = video_lib.render_walk(path, walk, render, fps=fps, batch_size=batch_size, resize=resize,
                                       progress=lambda done, total: bar.update(done - bar.n))
    print(f"wrote {frames} frames ({frames / fps:.1f} s at {fps:g} fps) to {path}")
    return [path]


# --- interpolation ---------------------------------------------------------------------------------

def save_interpolation(snap, out_dir, seeds, steps=8, method="slerp", gen_kw=None, padding=0):
    """One row per consecutive pair of seeds (s0 -> s1, s1 -> s2, ...), `steps` columns including both
    ends: `interpolate-<method>.png`."""
    gen_kw = gen_kw or {}
    if len(seeds) < 2:
        raise UserError("interpolation needs at least two seeds, e.g. --seeds 0-4")
    z = latents_lib.latents_for_seeds(snap, seeds)
    rows = [latents_lib.interpolate(z[i], z[i + 1], steps, method) for i in range(len(seeds) - 1)]
    images = snap.generate(np.concatenate(rows), **gen_kw)
    os.makedirs(out_dir, exist_ok=True)
    return [save_grid(os.path.join(out_dir, f"interpolate-{method}.png"), images, len(rows), steps, padding)]


# --- latent direction --------------------------------------------------------------------------------

def direction_labels(snap, seeds=None, labels_csv=None, classifier=None, class_index=None, gen_kw=None,
                     batch_size=64):
    """(seeds, labels) from a seed,label CSV or by classifying the seeds' samples."""
    if bool(labels_csv) == bool(classifier):
        raise UserError("--mode direction needs exactly one of --labels (a seed,label CSV) or --classifier")
    if labels_csv:
        return direction_lib.read_label_csv(labels_csv)
    classify = direction_lib.load_classifier(classifier)
    seeds = np.asarray(seeds)
    z = latents_lib.latents_for_seeds(snap, seeds)
    scores = np.concatenate([np.asarray(classify(snap.generate(z[i:i + batch_size], **(gen_kw or {}))))
                             for i in range(0, len(z), batch_size)])
    return seeds, direction_lib.labels_from_scores(scores, class_index)


def save_direction(snap, out_dir, seeds=None, labels_csv=None, classifier=None, class_index=None,
                   show_seeds=None, amount=3.0, steps=7, video_file="direction.gif", fps=12, gen_kw=None,
                   C=1.0):
    """Fits the direction and writes `direction.npy` (unit vector), `direction.json` (fit info),
    `direction-strips.png` (one row per shown seed, from -amount to +amount) and a looping video of the
    shown samples moving along it."""
    gen_kw = gen_kw or {}
    label_seeds, labels = direction_labels(snap, seeds, labels_csv, classifier, class_index, gen_kw)
    z = latents_lib.latents_for_seeds(snap, label_seeds)
    direction, info = direction_lib.fit_direction(z, labels, C=C)
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "direction.npy")]
    np.save(paths[0], direction)
    with open(os.path.join(out_dir, "direction.json"), "w") as f:
        json.dump(info, f, indent=1)
    paths.append(os.path.join(out_dir, "direction.json"))
    print(f"direction fitted on {info['num']} samples ({info['num_positive']} positive), "
          f"training accuracy {info['accuracy']:.3f}")
    show = list(show_seeds if show_seeds is not None else label_seeds[:8])
    base = latents_lib.latents_for_seeds(snap, show)
    amounts = np.linspace(-amount, amount, steps)
    moved = direction_lib.move_along(base, direction, amounts)  # [N, steps, dim]
    images = snap.generate(moved.reshape(-1, moved.shape[-1]), **gen_kw)
    paths.append(save_grid(os.path.join(out_dir, "direction-strips.png"), images, len(show), steps))
    if video_file:
        frames_amounts = np.concatenate([np.linspace(-amount, amount, 2 * steps),
                                         np.linspace(amount, -amount, 2 * steps)[1:-1]])
        video_path = video_file if os.path.isabs(video_file) else os.path.join(out_dir, video_file)
        cols = int(math.ceil(math.sqrt(len(show))))
        rows = -(-len(show) // cols)
        with video_lib.VideoWriter(video_path, fps) as writer:
            for a in frames_amounts:
                frame = snap.generate(base + a * direction[None], **gen_kw)
                writer.append(make_grid(to_uint8(frame), rows, cols))
        paths.append(video_path)
    return paths


# --- GLO ---------------------------------------------------------------------------------------------

def glo_module():
    try:
        from vgrow_tf.sampling import glo_eval
    except ImportError:
        raise UserError("GLO support not installed (vgrow_tf.sampling.glo_eval is missing)") from None
    return glo_eval


def require_glo(snap, mode):
    if snap.kind != "glo":
        raise UserError(f"--mode {mode} needs a GLO snapshot; {snap.path} is a {snap.kind} model "
                        f"(use --mode grid or samples)")
    return glo_module()


def save_glo(snap, out_dir, mode, dataset=None, count=32, rows=10, cols=10, seed=0, steps=15, pairs=15,
             fit_steps=300, bn_mode="moving"):
    glo_eval = require_glo(snap, mode)
    os.makedirs(out_dir, exist_ok=True)
    if mode == "reconstruct":
        recorded = snap.config.get("dataset")
        if not dataset and not (recorded and os.path.exists(recorded)):
            raise UserError(f"--mode reconstruct needs the GLO training dataset: the one recorded in {snap.path} "
                            f"({recorded}) is not available; pass --dataset DIR")
        result = glo_eval.save_reconstructions(snap, out_dir, dataset_path=dataset, count=count,
                                               heldout_count=count, steps=fit_steps, seed=seed, bn_mode=bn_mode)
        print("GLO reconstruction MSE: " + ", ".join(f"{k} {v:.5f}" for k, v in result.items() if k != "paths"))
        return result["paths"]
    if mode == "generate":
        return [glo_eval.save_samples(snap, os.path.join(out_dir, "glo-samples.png"), rows, cols, seed,
                                      bn_mode=bn_mode)]
    if mode == "interpolate":
        return [glo_eval.save_interpolations(snap, os.path.join(out_dir, "glo-interpolations.png"),
                                             num_pairs=pairs, steps=steps, seed=seed, bn_mode=bn_mode)]
    raise UserError(f"unknown GLO mode {mode!r}")

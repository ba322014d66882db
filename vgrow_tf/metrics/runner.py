"""Runs metrics on snapshots: generation, feature extraction, reference statistics, result files.

    results = evaluate_snapshot("run/network-final.h5", "datasets/cifar10", ["fid50k", "kid50k"],
                                run_dir="run")

Fakes: latents from the snapshot's own prior (`vgrow_tf.sampling.latents.LatentSampler`), repeat r drawn
with seed `seed + 1000 r` (the VGrow protocol's seeds 1000, 2000, ... for the default seed 1000), the top
scale of multi-scale generators, no truncation unless `truncation_psi` is given, quantised to uint8
exactly as reals are. Reals: file order, cycled for fidNk when the dataset is smaller (StyleGAN),
mirrored at random with `mirror_augment` (never for *_full). Each result is a dict with at least `metric`
and `value`; with repeats > 1, `value` is the mean over repeats and `std` their standard deviation.
"""
import datetime
import json
import math
import os
import re
import sys
import time

import numpy as np

from vgrow_tf import progress
from vgrow_tf.errors import UserError
from vgrow_tf.metrics import features as features_lib
from vgrow_tf.metrics import fid as fid_lib
from vgrow_tf.metrics import inception_score as is_lib
from vgrow_tf.metrics import kid as kid_lib
from vgrow_tf.metrics import precision_recall as pr_lib
from vgrow_tf.metrics import reference
from vgrow_tf.metrics.registry import parse_metrics

DEFAULT_FEATURE_NET = "inception_pb"
DEFAULT_PR_FEATURE_NET = "vgg16"
_REAL_MEMO = {}   # (dataset fingerprint, net, count, mirror) -> features, for repeated calls in training


def _tqdm(total, desc, enabled):
    return progress.progress_bar(total=total, desc=desc, unit="img", enabled=enabled, leave=False)


def snapshot_label(path):
    """'network-snapshot-000140' / 'network-final' and its kimg (None for final / other names)."""
    name = os.path.splitext(os.path.basename(path))[0]
    m = re.search(r"(\d+)$", name)
    return name, (int(m.group(1)) if m and "snapshot" in name else None)


def _short(net):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", net.name.split(":", 1)[-1])


def _read_run_options(run_dir):
    try:
        with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
            return json.load(f).get("options", {}) or {}
    except (OSError, ValueError, TypeError):
        return {}


class Evaluator:
    """Holds the dataset, the feature networks and the settings; `evaluate(snapshot_path)` per snapshot."""

    def __init__(self, dataset_path, metrics, feature_net=None, inception_path=None, pr_feature_net=None,
                 vgg16_path=None, lpips_path=None, mirror_augment=False, repeats=1, batch_size=64, seed=1000,
                 truncation_psi=None, ref_stats=None, cache_dir=None, strategy=None, progress=True,
                 domain="a", use_cache=True, log=None, refine=None, source_format=None):
        from vgrow_tf import data as data_lib
        self.specs = parse_metrics(metrics)
        if not dataset_path and any(s.needs_reals for s in self.specs) and not (
                ref_stats and all(s.kind in ("fid", "is", "ppl") for s in self.specs)):
            raise UserError("--dataset is required for FID/KID/precision-recall (the real images)")
        self.info = data_lib.inspect_dataset(dataset_path) if dataset_path else None
        self.dataset_path = dataset_path
        self.feature_net_name = feature_net or os.environ.get("VGROW_FEATURE_NET") or DEFAULT_FEATURE_NET
        # Precision/recall: --pr_feature_net, else a --feature_net the user chose, else VGG16 (SG2-ADA).
        self.pr_net_name = (pr_feature_net or os.environ.get("VGROW_PR_FEATURE_NET") or feature_net
                            or DEFAULT_PR_FEATURE_NET)
        self.inception_path, self.vgg16_path, self.lpips_path = inception_path, vgg16_path, lpips_path
        self.mirror = bool(mirror_augment)
        self.repeats = int(repeats)
        if self.repeats < 1:
            raise UserError(f"--repeats must be at least 1, not {repeats}")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise UserError(f"--batch_size must be positive, not {batch_size}")
        self.seed, self.truncation_psi, self.domain = int(seed), truncation_psi, domain
        self.ref_stats = reference.load_ref_stats(ref_stats) if ref_stats else None
        self.ref_stats_path = ref_stats
        self.cache_dir, self.use_cache = cache_dir, use_cache
        self.strategy, self.progress = strategy, progress
        self.source_format = source_format  # an original model's format (interop), None = detected
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._nets = {}
        self._lpips = None
        # DGflow: score refined samples. {"steps", "eta", "gamma", "divergence", "group_size", "corrector": path}
        self.refine = dict(refine) if refine else None
        self._corrector = None
        if self.refine and self.refine.get("corrector"):
            from vgrow_tf import snapshot as snapshot_lib
            self._corrector = snapshot_lib.load(self.refine["corrector"], expect_kind="dgflow_corrector")
        self._note_few_reals()
        if any(s.kind == "ppl" for s in self.specs):  # fail before any work when the weights are missing
            from vgrow_tf.metrics import ppl
            self._lpips = ppl.load_lpips(lpips_path)

    # --- feature networks -------------------------------------------------------------------------
    def net(self, detector):
        if detector not in self._nets:
            if detector == "inception":
                self._nets[detector] = features_lib.get_feature_net(
                    self.feature_net_name, inception_path=self.inception_path, strategy=self.strategy)
            else:
                self._nets[detector] = features_lib.get_feature_net(
                    self.pr_net_name, vgg16_path=self.vgg16_path, strategy=self.strategy)
        return self._nets[detector]

    def dgflow_record(self):
        from vgrow_tf.sampling import refine
        record = {k: self.refine.get(k, v) for k, v in refine.DEFAULTS.items() if k != "save_every"}
        return dict(record, corrector=self.refine.get("corrector"))

    def metric_name(self, spec):
        """The metric's own name (fid2k, kid2k, ...); the feature network is a field of its own."""
        return spec.name + ("-dgflow" if self.refine else "")

    def _refined(self, snap, sampler, count, seed):
        """The stream's first `count` latents after DGflow (DGflow paper protocol: the same latents, refined,
        then scored), refined in fixed groups of rows so they do not depend on `count` or --batch_size."""
        from vgrow_tf.sampling import refine
        steps = int(self.refine.get("steps", 25))
        return refine.refine_stream(
            snap, sampler, count, seed, group_size=int(self.refine.get("group_size", refine.DEFAULTS["group_size"])),
            corrector=self._corrector, truncation_psi=self.truncation_psi, domain=self.domain,
            eta=float(self.refine.get("eta", 0.1)), gamma=float(self.refine.get("gamma", 0.01)), steps=steps,
            divergence=self.refine.get("divergence", "KL"), save_every=steps)

    # --- reals ------------------------------------------------------------------------------------
    def _real_plan(self, spec):
        total = self.info.num_images
        if spec.full:
            count = total if spec.num_reals is None else min(total, spec.num_reals)
            return count, False
        count = spec.num_reals if spec.cycle_reals else min(spec.num_reals, total)
        return count, self.mirror

    def _note_few_reals(self):
        """Says when the dataset has fewer reals than a metric asks for, and what is done instead."""
        if self.info is None:
            return
        for spec in self.specs:
            if not spec.needs_reals or spec.num_reals is None or spec.num_reals <= self.info.num_images:
                continue
            if self.ref_stats is not None and spec.kind == "fid":
                continue
            count, _ = self._real_plan(spec)
            how = (f"cycling them to {count}, as StyleGAN does" if count > self.info.num_images
                   else f"using all {count}")
            self.log(f"Note: {spec.name} asks for {spec.num_reals} reals but {self.dataset_path} has "
                     f"{self.info.num_images}; {how}")

    def _cache_items(self, net, count, mirror, what):
        return dict(dataset=reference.dataset_fingerprint(self.info), net=net.name, digest=net.digest,
                    count=count, mirror=mirror, what=what)

    def real_features(self, net, spec):
        count, mirror = self._real_plan(spec)
        items = self._cache_items(net, count, mirror, "features")
        key = reference.cache_key(**items)
        if key in _REAL_MEMO:
            return _REAL_MEMO[key]
        path = reference.cache_path(self.cache_dir, key, self.info.name, f"{_short(net)}-{count}-features")
        cached = reference.load_npz(path, ["features"]) if self.use_cache else None
        if cached is not None:
            self.log(f"reals: cached features {path}")
            feats = cached["features"]
        else:
            feats = self._extract_reals(net, count, mirror)
            keep = any(s.kind in ("kid", "pr") and s.detector == spec.detector for s in self.specs)
            if self.use_cache and keep:  # FID alone keeps only (mu, sigma) on disk
                reference.save_npz(path, features=feats.astype(np.float32), meta=json.dumps(items, default=str))
        _REAL_MEMO[key] = feats
        return feats

    def real_stats(self, net, spec):
        count, mirror = self._real_plan(spec)
        items = self._cache_items(net, count, mirror, "fid-stats")
        key = reference.cache_key(**items)
        path = reference.cache_path(self.cache_dir, key, self.info.name, f"{_short(net)}-{count}-stats")
        if key in _REAL_MEMO:
            return _REAL_MEMO[key], path
        cached = reference.load_npz(path, ["mu", "sigma"]) if self.use_cache else None
        if cached is not None:
            self.log(f"reals: cached statistics {path}")
            stats = (cached["mu"].astype(np.float64), cached["sigma"].astype(np.float64))
        else:
            stats = fid_lib.feature_statistics(self.real_features(net, spec))
            if self.use_cache:
                reference.save_npz(path, mu=stats[0], sigma=stats[1], meta=json.dumps(items, default=str))
        _REAL_MEMO[key] = stats
        return stats, path

    def _extract_reals(self, net, count, mirror):
        from vgrow_tf import data as data_lib
        from vgrow_tf.sampling.images import to_uint8
        bs = self.batch_size
        ds = data_lib.load_dataset(self.dataset_path, bs, shuffle=False, repeat=True, mirror=mirror,
                                   seed=self.seed, info=self.info)
        out, done = [], 0
        with _tqdm(count, f"reals ({net.name})", self.progress) as bar:
            for batch in ds:
                images = to_uint8(batch["image"].numpy())[:count - done]
                out.append(net(images)["features"])
                done += len(images)
                bar.update(len(images))
                if done >= count:
                    break
        return np.concatenate(out)

    # --- fakes ------------------------------------------------------------------------------------
    def _gen_kw(self, snap):
        kw = {}
        if self.truncation_psi is not None:
            kw["truncation_psi"] = float(self.truncation_psi)
        from vgrow_tf.sampling import modes
        if modes.supports(snap, "domain"):
            kw["domain"] = self.domain
        return kw

    def _check_against_reals(self, snap, snapshot_path):
        """Refuses a model whose images differ in size or colour from the reals: every score would then
        measure the difference of format (a 16 px grayscale model against 32 px RGB reals: FID ~800)."""
        from vgrow_tf.sampling import modes
        from vgrow_tf.sampling.latents import LatentSampler
        if self.info is None or not any(s.needs_reals for s in self.specs):
            return
        image = snap.generate(LatentSampler(snap).draw(1, self.seed), **self._gen_kw(snap))
        height, width, channels = (image[-1] if isinstance(image, (list, tuple)) else image).shape[1:]
        # A coupled model's domains share one channel count, so a grayscale domain's reals may have fewer.
        channels_differ = channels != self.info.channels and not (modes.supports(snap, "domain")
                                                                  and channels > self.info.channels)
        if (height, width) != (self.info.resolution,) * 2 or channels_differ:
            raise UserError(
                f"{snapshot_path} makes {height}x{width} images with {channels} channel(s), the reals of "
                f"{self.dataset_path} are {self.info.resolution}x{self.info.resolution} with {self.info.channels}; "
                "scores would compare different formats. Give the dataset the model was trained on (or one "
                f"made from the same images with dataset_tool.py --resolution={height})")

    def fake_outputs(self, snap, needs, seed):
        """{detector: {"features": [N, D], "probs": ...}} for the first needs[detector] fakes of one stream."""
        from vgrow_tf.sampling.images import to_uint8
        from vgrow_tf.sampling.latents import LatentSampler
        total = max(needs.values())
        sampler = LatentSampler(snap)
        latents = self._refined(snap, sampler, total, seed) if self.refine else sampler.draw(total, seed)
        gen_kw = self._gen_kw(snap)
        parts = {d: [] for d in needs}
        with _tqdm(total, f"fakes (seed {seed})", self.progress) as bar:
            for i in range(0, total, self.batch_size):
                images = snap.generate(latents[i:i + self.batch_size], **gen_kw)
                if isinstance(images, (list, tuple)):
                    images = images[-1]
                images = to_uint8(images)
                for d, n in needs.items():
                    if i < n:
                        parts[d].append(self.net(d)(images[:n - i]))
                bar.update(len(images))
        return {d: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for d, ps in parts.items()}

    # --- one snapshot -----------------------------------------------------------------------------
    def evaluate(self, snapshot_path):
        from vgrow_tf import snapshot as snapshot_lib
        snap = snapshot_lib.load(snapshot_path, source_format=self.source_format)
        if snap.latent_dim <= 0:
            raise UserError(f"{snapshot_path} is a '{snap.kind}' snapshot without a generator; metrics need "
                            "a generator snapshot")
        self._check_against_reals(snap, snapshot_path)
        name, kimg = snapshot_label(snapshot_path)
        start = time.time()
        needs = {}
        for s in self.specs:
            if s.kind != "ppl":
                needs[s.detector] = max(needs.get(s.detector, 0), s.num_fakes)
        per_repeat = {s.name: [] for s in self.specs}
        refs = {}
        for r in range(self.repeats):
            seed = self.seed + 1000 * r
            outs = self.fake_outputs(snap, needs, seed) if needs else {}
            for s in self.specs:
                per_repeat[s.name].append(self._compute(s, snap, outs, seed, refs))
        seconds = time.time() - start
        results = []
        for s in self.specs:
            net = self.net(s.detector) if s.kind != "ppl" else None
            values = per_repeat[s.name]
            for part in values[0]:
                vals = [v[part][0] for v in values]
                metric = self.metric_name(s) + ("" if part == "value" else f"_{part}")
                result = dict(metric=metric, value=float(np.mean(vals)), snapshot=os.path.abspath(snapshot_path),
                              snapshot_name=name, kimg=kimg, num_fakes=s.num_fakes, repeats=self.repeats,
                              feature_net=(net.label if net else f"LPIPS {self.lpips_path}"),
                              comparable=bool(net.comparable) if net else None,
                              dataset=self.dataset_path, mirror_augment=self.mirror if not s.full else False,
                              seconds=round(seconds, 2), time=datetime.datetime.now().isoformat(timespec="seconds"))
                if self.repeats > 1:
                    result["std"] = float(np.std(vals))
                    result["values"] = [float(v) for v in vals]
                elif values[0][part][1] is not None:
                    result["std"] = values[0][part][1]
                if s.needs_reals:
                    result["num_reals"] = refs.get(s.name, {}).get("count")
                    if refs.get(s.name, {}).get("reference"):
                        result["reference"] = refs[s.name]["reference"]
                if s.kind == "pr":
                    result["k"] = s.k
                if self.refine:  # what the refined latents depend on (sampling.refine)
                    result["dgflow"] = self.dgflow_record()
                results.append(result)
        return results

    def _compute(self, spec, snap, outs, seed, refs):
        """{part: (value, std or None)} for one metric on one repeat's fakes."""
        if spec.kind == "ppl":
            from vgrow_tf.metrics import ppl
            with _tqdm(spec.num_fakes, f"{spec.name} (seed {seed})", self.progress) as bar:
                v = ppl.path_length(snap, self._lpips, spec.num_fakes, spec.space, spec.sampling,
                                    batch_size=self.batch_size, seed=seed, gen_kw=self._gen_kw(snap), progress=bar)
            return {"value": (v, None)}
        net = self.net(spec.detector)
        fake = outs[spec.detector]
        if spec.kind == "is":
            if "probs" not in fake:
                raise UserError(f"{spec.name}: feature network {net.name} has no classifier output")
            mean, std = is_lib.inception_score(fake["probs"][:spec.num_fakes], 10)
            return {"value": (mean, std)}
        feats = fake["features"][:spec.num_fakes]
        if spec.kind == "fid":
            if self.ref_stats is not None and spec.detector == "inception":
                mu_r, sigma_r = self.ref_stats
                refs[spec.name] = dict(count=None, reference=self.ref_stats_path)
            else:
                (mu_r, sigma_r), path = self.real_stats(net, spec)
                refs[spec.name] = dict(count=self._real_plan(spec)[0], reference=path)
            mu_f, sigma_f = fid_lib.feature_statistics(feats)
            if mu_f.shape != mu_r.shape:
                raise UserError(f"{spec.name}: the reference statistics have {mu_r.size} dimensions, the "
                                f"feature network {net.name} gives {mu_f.size}")
            return {"value": (fid_lib.frechet_distance(mu_f, sigma_f, mu_r, sigma_r), None)}
        reals = self.real_features(net, spec)
        refs[spec.name] = dict(count=len(reals))
        if spec.kind == "kid":
            return {"value": (kid_lib.kernel_inception_distance(reals, feats, seed=seed), None)}
        if spec.kind == "pr":
            p, r = pr_lib.precision_recall(reals, feats, k=spec.k)
            return {"precision": (p, None), "recall": (r, None)}
        raise AssertionError(spec.kind)


# --- result files ---------------------------------------------------------------------------------

def _fmt_time(seconds):
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m" if s >= 3600 else (f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s")


def display_scale(result):
    """KID is shown x10^3, as StyleGAN2-ADA reports it; files and JSON keep the plain value."""
    return 1e3 if result["metric"].startswith("kid") else 1.0


def format_result(result):
    scale = display_scale(result)
    value = f"{result['value'] * scale:.4f}"
    if result.get("std") is not None:
        value += f" ± {result['std'] * scale:.4f}"
    if scale != 1.0:
        value += " (x10^3)"
    label = "" if result.get("comparable") else f"  [{result.get('feature_net')}]"
    return (f"{result.get('snapshot_name', ''):<28s} time {_fmt_time(result.get('seconds', 0)):<8s} "
            f"{result['metric']} {value}{label}")


def append_results(run_dir, results):
    """Appends a line per result to <run_dir>/metric-<metric>.txt and a JSON line to metrics.jsonl."""
    os.makedirs(run_dir, exist_ok=True)
    for result in results:
        with open(os.path.join(run_dir, f"metric-{result['metric']}.txt"), "a", encoding="utf-8") as f:
            f.write(format_result(result) + "\n")
        with open(os.path.join(run_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(result, sort_keys=True) + "\n")


def format_table(results):
    has_kid = any(display_scale(r) != 1.0 for r in results)
    rows = [("snapshot", "metric", "value (KID x10^3)" if has_kid else "value", "std", "feature net")]
    for r in results:
        scale = display_scale(r)
        rows.append((r.get("snapshot_name", ""), r["metric"], f"{r['value'] * scale:.4f}",
                     "" if r.get("std") is None else f"{r['std'] * scale:.4f}", str(r.get("feature_net", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def list_snapshots(run_dir, snapshot_kimg=None):
    """Every network-snapshot-*.h5 in kimg order, then network-final.h5; or the one of snapshot_kimg."""
    if not os.path.isdir(run_dir):
        raise UserError(f"run directory {run_dir} does not exist")
    names = sorted(os.listdir(run_dir))
    snaps = sorted((n for n in names if re.fullmatch(r"network-snapshot-\d+\.h5", n)),
                   key=lambda n: int(re.search(r"(\d+)", n).group(1)))
    if snapshot_kimg is not None:
        chosen = [n for n in snaps if int(re.search(r"(\d+)", n).group(1)) == int(snapshot_kimg)]
        if not chosen:
            have = ", ".join(str(int(re.search(r"(\d+)", n).group(1))) for n in snaps) or "none"
            raise UserError(f"{run_dir} has no network-snapshot-{int(snapshot_kimg):06d}.h5 (snapshots at kimg: {have})")
        return [os.path.join(run_dir, chosen[0])]
    if "network-final.h5" in names:
        snaps.append("network-final.h5")
    if not snaps:
        raise UserError(f"{run_dir} holds no network-snapshot-*.h5 or network-final.h5")
    return [os.path.join(run_dir, n) for n in snaps]


def evaluate_snapshot(snapshot_path, dataset_path, metrics, run_dir=None, **kw):
    """Computes `metrics` (names or a comma-separated string) on one snapshot; appends the results to
    run_dir's metric files when run_dir is given. Returns a list of dicts with `metric`, `value`, ..."""
    from vgrow_tf import snapshot as snapshot_lib
    snapshot_path = snapshot_lib.resolve(snapshot_path, "snapshot", kw.get("source_format")).path
    if run_dir:  # during training: the run's own settings where the caller gave none
        options = _read_run_options(run_dir)
        if kw.get("mirror_augment") is None:
            kw["mirror_augment"] = bool(options.get("mirror_augment") or False)
        for key in ("feature_net", "inception_path", "pr_feature_net", "vgg16_path", "lpips_path"):
            if kw.get(key) is None and options.get(key):
                kw[key] = options[key]
    evaluator = Evaluator(dataset_path, metrics, **kw)
    results = evaluator.evaluate(snapshot_path)
    if run_dir:
        append_results(run_dir, results)
    return results


def evaluate_snapshots(snapshot_paths, dataset_path, metrics, run_dir=None, **kw):
    """Several snapshots with one Evaluator (real statistics and networks loaded once)."""
    evaluator = Evaluator(dataset_path, metrics, **kw)
    all_results = []
    from vgrow_tf import snapshot as snapshot_lib
    for path in snapshot_paths:
        path = snapshot_lib.resolve(path, "snapshot", kw.get("source_format")).path
        results = evaluator.evaluate(path)
        if run_dir:
            append_results(run_dir, results)
        for r in results:
            evaluator.log(format_result(r))
        all_results.extend(results)
    return all_results


def mean_std(values):
    v = np.asarray(values, np.float64)
    return float(v.mean()), (float(v.std()) if len(v) > 1 else math.nan)

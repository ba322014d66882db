"""Metric names, in the style of stylegan2-ada-pytorch's metric_main: the name carries the counts.

    fid50k        FID, 50k fakes vs 50k reals (reals cycled when the dataset is smaller, as StyleGAN)
    fid10k        FID, 10k vs 10k (the VGrow-PG protocol, with --repeats 5)
    fid50k_full   FID, 50k fakes vs ALL reals, mirroring off
    kid50k        KID, 50k fakes vs up to 50k reals (kid50k_full: up to 1M reals)
    is50k         Inception Score, 50k fakes, 10 splits
    pr50k3        precision/recall, k = 3, 50k fakes vs up to 50k reals (pr50k3_full: up to 200k reals)
    ppl_zend      perceptual path length (z: slerp, w: lerp; end: t = 0, full: t ~ U(0, 1)); 50k
                  samples unless a count is appended (ppl_wend10k); needs --lpips_path

Any count works: `fid2k`, `kid500`, `pr1k5` (k = 5), `is64`. Without the `k` suffix a number is a plain
image count, so `pr64` is 64 images with k = 3.
"""
import dataclasses
import re

from vgrow_tf.errors import UserError

STANDARD = ("fid50k", "fid50k_full", "fid10k", "kid50k", "kid50k_full", "is50k", "pr50k3", "pr50k3_full",
            "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend")
FULL_REAL_CAP = {"fid": None, "kid": 1_000_000, "pr": 200_000}

_PATTERN = re.compile(r"^(?P<kind>fid|kid|is|pr)(?P<num>\d+)(?P<kilo>k?)(?P<k>\d*)(?P<full>_full)?$")
_PPL = re.compile(r"^ppl_(?P<space>[zw])(?P<sampling>full|end)(?:(?P<num>\d+)(?P<kilo>k?))?$")


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str                 # fid | kid | is | pr | ppl
    num_fakes: int
    num_reals: int = 0        # reals wanted (0: none); with full=True an upper bound (None = all)
    full: bool = False        # all reals (up to a cap), mirroring off
    cycle_reals: bool = False  # repeat the dataset to reach num_reals (StyleGAN's fid50k)
    k: int = 3                # precision/recall neighbours
    space: str = "z"          # ppl
    sampling: str = "end"     # ppl

    @property
    def needs_reals(self):
        return self.kind in ("fid", "kid", "pr")

    @property
    def detector(self):
        """Which feature network: 'inception' (--feature_net), 'pr' (--pr_feature_net), 'lpips'."""
        return {"pr": "pr", "ppl": "lpips"}.get(self.kind, "inception")


def parse_metric(name):
    name = name.strip()
    m = _PPL.match(name)
    if m:
        num = int(m.group("num") or 50) * (1000 if (m.group("kilo") or not m.group("num")) else 1)
        return MetricSpec(name, "ppl", num, space=m.group("space"), sampling=m.group("sampling"))
    m = _PATTERN.match(name)
    if not m or (m.group("k") and not m.group("kilo")) or (m.group("k") and m.group("kind") != "pr"):
        raise UserError(f"unknown metric {name!r}; use e.g. {', '.join(STANDARD)} (any count: fid2k, kid500)")
    kind, full = m.group("kind"), bool(m.group("full"))
    num = int(m.group("num")) * (1000 if m.group("kilo") else 1)
    if num < 2:
        raise UserError(f"metric {name!r}: the count must be at least 2")
    if kind == "is":
        if full:
            raise UserError(f"metric {name!r}: the Inception Score uses no reals; drop _full")
        return MetricSpec(name, kind, num)
    k = int(m.group("k") or 3)
    if full:
        return MetricSpec(name, kind, num, num_reals=FULL_REAL_CAP[kind], full=True, k=k)
    return MetricSpec(name, kind, num, num_reals=num, cycle_reals=(kind == "fid"), k=k)


def parse_metrics(names):
    if isinstance(names, str):
        names = names.split(",")
    specs = [parse_metric(n) for n in names if n and n.strip()]
    if not specs:
        raise UserError("no metrics given; use e.g. --metrics=fid50k,kid50k")
    return specs

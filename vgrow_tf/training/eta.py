"""The ETA of a tick line, from the training schedule and the measured cost of each of its levels.

A schedule is a list of segments `(start_nimg, end_nimg, key, cost)`: the images in [start, end) are
trained at level `key` (VGrow-PG's working resolution; one key for models that do not grow), whose
relative compute per image is `cost` (the pixel count). `LevelTimer` turns tick timings into measured
sec/kimg per level; `estimate_eta` adds up the remaining segments with those rates and extrapolates the
levels not measured yet.
"""
import numpy as np


def single_level(total_nimg):
    """The schedule of a model that trains at one size throughout."""
    return [(0, int(total_nimg), None, 1.0)]


def rate_model(measured, costs):
    """sec/kimg as a function of a level's cost, fitted to the measured levels ({key: sec/kimg}).

    Two or more levels: least squares of rate = a + b * cost (a fixed overhead per image plus compute that
    grows with the pixel count; small levels are mostly overhead). One level, or a fit that does not grow
    with cost (noise): proportional to cost from the costliest measured level.
    """
    points = sorted((costs[k], r) for k, r in measured.items())
    top_cost, top_rate = points[-1]
    proportional = lambda cost: top_rate * cost / top_cost  # noqa: E731
    if len({c for c, _ in points}) < 2:
        return proportional
    b, a = np.polyfit([c for c, _ in points], [r for _, r in points], 1)
    if b <= 0:
        return proportional
    return lambda cost: max(a + b * cost, 0.0)


def estimate_eta(cur_nimg, total_nimg, segments, measured):
    """Seconds from `cur_nimg` to `total_nimg`, or None while no level has been measured.

    segments: the schedule (see the module docstring); measured: {key: sec/kimg} of the levels timed so far
    in this process. A measured level uses its own rate; the others the rate `rate_model` extrapolates.
    """
    if not measured:
        return None
    costs = {key: cost for _, _, key, cost in segments}
    extrapolate = rate_model(measured, costs)
    seconds = 0.0
    for start, end, key, cost in segments:
        images = min(end, total_nimg) - max(start, cur_nimg)
        if images > 0:
            rate = measured[key] if key in measured else extrapolate(cost)
            seconds += images / 1000 * rate
    return seconds


def level_at(segments, nimg):
    """The key an iteration starting at `nimg` images trains (a level holds up to and including its end,
    as `schedule.lod_at` does; past the last segment, the last key)."""
    for _, end, key, _ in segments:
        if nimg <= end:
            return key
    return segments[-1][2]


def overlaps(segments, start_nimg, end_nimg):
    """[(key, cost, images)] of the segments that the images (start, end] fall in."""
    out = []
    for start, end, key, cost in segments:
        images = min(end, end_nimg) - max(start, start_nimg)
        if images > 0:
            out.append((key, cost, images))
    return out


class LevelTimer:
    """Measured sec/kimg per level, from the ticks of this process.

    The process's first tick is all start-up and tracing: it is never measured (right after a resume there
    is no estimate until the second tick). A later tick in which a level runs for the first time also traced
    that level's step: it counts only while the level has no other measurement. A tick spanning levels is
    split between them in proportion to images x cost.
    """

    def __init__(self, segments):
        self.segments = segments
        self.seen = None  # levels run in this process; None before the first tick
        self.clean, self.rough = {}, {}  # key -> [seconds, images]

    def add_tick(self, start_nimg, end_nimg, seconds, last_iteration_nimg=None):
        """A tick of `seconds` over the images (start, end]; its last iteration started at
        `last_iteration_nimg` (default: end): the levels it ran are those its iterations started in, since
        the last one may run past a level's end at the old level."""
        parts = overlaps(self.segments, start_nimg, end_nimg)
        last = end_nimg if last_iteration_nimg is None else last_iteration_nimg
        first_key, last_key = level_at(self.segments, start_nimg), level_at(self.segments, last)
        in_order = [key for _, _, key, _ in self.segments]
        keys = set(in_order[in_order.index(first_key):in_order.index(last_key) + 1])
        costs = {key: cost for _, _, key, cost in self.segments}
        parts = [(key, cost, images) if key in keys else (last_key, costs[last_key], images)
                 for key, cost, images in parts]
        if self.seen is None:
            self.seen = keys
            return
        target = self.clean if keys <= self.seen else self.rough
        self.seen |= keys
        weight = sum(cost * images for _, cost, images in parts)
        if weight <= 0 or seconds <= 0:
            return
        for key, cost, images in parts:
            total = target.setdefault(key, [0.0, 0])
            total[0] += seconds * cost * images / weight
            total[1] += images

    def rates(self):
        """{key: sec/kimg}: a level's clean measurement where there is one, else its tracing ticks'."""
        out = {k: s / n * 1000 for k, (s, n) in self.rough.items()}
        out.update({k: s / n * 1000 for k, (s, n) in self.clean.items()})
        return out

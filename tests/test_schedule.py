"""The VGrow/ProGAN lod schedule against the figures the original code produces (spec vgrow_pg §2)."""
import math

import pytest

from vgrow_tf.training import schedule

BATCH = {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}


def test_lod_at_phase_boundaries():
    assert schedule.lod_at(0, 32) == 3.0
    assert schedule.lod_at(600_000, 32) == 3.0            # end of the 4x4 stable stage
    assert 2.99 < schedule.lod_at(600_064, 32) < 3.0       # fade into 8x8 has begun
    assert schedule.lod_at(900_000, 32) == pytest.approx(2.5)
    assert schedule.lod_at(1_200_000, 32) == 2.0           # 8x8 stable
    assert schedule.lod_at(3_600_000, 32) == 0.0           # full resolution reached (spec: 3.6M at 32 px)
    assert schedule.lod_at(4_800_000, 64) == 0.0 and schedule.lod_at(4_799_999, 64) > 0


def test_working_level_and_fade_weight():
    assert schedule.working_level(3.0, 32) == (2, 0.0)
    level, t = schedule.working_level(2.25, 32)
    assert level == 3 and t == pytest.approx(0.25)         # during a fade the new, higher level works
    assert schedule.working_level(0.0, 32) == (5, 0.0)


def simulate_resets(resolution, total):
    """Replays the original loop: lod from images seen, batch by working resolution."""
    n, resets = 0, []
    key = schedule.phase_key(schedule.lod_at(0, resolution))
    while n < total:
        lod = schedule.lod_at(n, resolution)
        level, _ = schedule.working_level(lod, resolution)
        n += BATCH[2 ** level]
        new_key = schedule.phase_key(schedule.lod_at(n, resolution))
        if new_key != key:
            resets.append(n)
            key = new_key
    return resets


def test_optimizer_resets_match_the_original_run():
    # vgrow_pg.md §2: "Adam resets happen at n = 600 064, 1 200 128, 1 800 192, 2 400 000,
    # 3 000 064 and 3 600 000 for 32 px".
    assert simulate_resets(32, 4_000_000) == [600_064, 1_200_128, 1_800_192, 2_400_000, 3_000_064, 3_600_000]


def test_cifar_iteration_count():
    # vgrow_pg.md §2 counts 157 031 iterations for CIFAR at 12 M: 157 030 reach exactly 12 000 000
    # images (where the original writes its last checkpoint) and its loop makes one more pass there.
    n, iterations = 0, 0
    while n < 12_000_000:
        level, _ = schedule.working_level(schedule.lod_at(n, 32), 32)
        n += BATCH[2 ** level]
        iterations += 1
    assert iterations == 157_030 and n == 12_000_000
    assert math.isclose(schedule.lod_at(n, 32), 0.0)

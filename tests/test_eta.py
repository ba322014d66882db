"""The tick lines' ETA: the schedule still to run, at each level's measured sec/kimg (training/eta.py)."""
import os
import subprocess
import sys

import pytest

from vgrow_tf.training import eta, schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The VGrow-PG digits demo's schedule: 16 px from 4 px, 30 kimg per stage, 200 kimg.
DEMO = schedule.level_segments(200_000, 16, 4, 30_000)


def test_vgrow_levels_follow_the_lod_schedule():
    # 4x4 until the first fade starts at 30k; 8x8 through its fade and stable stage (30k..90k); 16x16 after
    assert DEMO == [(0, 30_000, 2, 16.0), (30_000, 90_000, 3, 64.0), (90_000, 200_000, 4, 256.0)]
    for nimg in range(1, 200_000, 997):  # the working level the trainer uses at every image count
        level, _ = schedule.working_level(schedule.lod_at(nimg, 16, 4, 30_000), 16)
        assert [key for start, end, key, _ in DEMO if start <= nimg < end] == [level], nimg
    assert schedule.level_segments(20_000, 16, 4, 30_000) == [(0, 20_000, 2, 16.0)]


def test_eta_uses_measured_levels_and_extrapolates_the_rest():
    # measured 4x4 at 1.0 and 8x8 at 2.5 sec/kimg: rate = a + b * pixels through (16, 1.0), (64, 2.5)
    # gives b = 1.5 / 48, a = 0.5, so 16x16 (256 px) costs 0.5 + 8 = 8.5 sec/kimg
    measured = {2: 1.0, 3: 2.5}
    assert eta.estimate_eta(100_000, 200_000, DEMO, measured) == pytest.approx(100 * 8.5)
    assert eta.estimate_eta(50_000, 200_000, DEMO, measured) == pytest.approx(40 * 2.5 + 110 * 8.5)
    # one level measured: proportional to the pixel count (8x8 4x, 16x16 16x the 4x4 rate)
    assert eta.estimate_eta(20_000, 200_000, DEMO, {2: 1.0}) == pytest.approx(10 * 1 + 60 * 4 + 110 * 16)
    # a measured level keeps its own rate even when the fit would say otherwise
    assert eta.estimate_eta(100_000, 200_000, DEMO, {2: 1.0, 3: 2.5, 4: 5.0}) == pytest.approx(100 * 5.0)
    assert eta.estimate_eta(200_000, 200_000, DEMO, measured) == 0.0
    assert eta.estimate_eta(0, 200_000, DEMO, {}) is None  # nothing measured: no number


def test_eta_of_a_model_that_does_not_grow():
    assert eta.estimate_eta(25_000, 64_000, eta.single_level(64_000), {None: 10.0}) == pytest.approx(390.0)


def test_level_timer_skips_start_up_and_tracing_ticks():
    timer = eta.LevelTimer(DEMO)
    timer.add_tick(0, 10_000, 50.0)          # the process's first tick: start-up and tracing, not measured
    assert timer.rates() == {}
    timer.add_tick(10_000, 20_000, 10.0)
    timer.add_tick(20_000, 30_000, 12.0)
    assert timer.rates() == pytest.approx({2: 1.1})
    timer.add_tick(30_000, 40_000, 100.0)    # 8x8 runs for the first time: traced, a fallback only
    assert timer.rates() == pytest.approx({2: 1.1, 3: 10.0})
    timer.add_tick(40_000, 50_000, 25.0)
    assert timer.rates() == pytest.approx({2: 1.1, 3: 2.5})
    # a tick across a level change is split by images x pixels: 5k at 64 px and 5k at 256 px -> 1/5, 4/5;
    # it traced 16x16, so it is a fallback for both levels, and 8x8 keeps its clean 2.5
    timer.add_tick(85_000, 95_000, 10.0)
    assert timer.rates() == pytest.approx({2: 1.1, 3: 2.5, 4: 8.0 / 5})
    timer.add_tick(95_000, 105_000, 30.0)
    assert timer.rates() == pytest.approx({2: 1.1, 3: 2.5, 4: 3.0})


def test_an_iteration_past_a_level_end_still_ran_the_old_level():
    # the tick's last iteration started at 29,984 (level 2) and ended at 30,016: 8x8 has not run (traced) yet
    timer = eta.LevelTimer(DEMO)
    timer.add_tick(0, 10_000, 50.0)
    timer.add_tick(20_000, 30_016, 10.0, last_iteration_nimg=29_984)
    timer.add_tick(30_016, 40_000, 90.0, last_iteration_nimg=39_968)  # 8x8 traced here: a fallback only
    timer.add_tick(40_000, 50_000, 25.0, last_iteration_nimg=49_984)
    assert timer.rates()[3] == pytest.approx(2.5)
    assert eta.level_at(DEMO, 30_000) == 2 and eta.level_at(DEMO, 30_001) == 3 and eta.level_at(DEMO, 10**9) == 4


def test_resumed_run_after_first_tick_says_measuring():
    # a resumed process: its first tick is tracing only, so no estimate; the next one has a number
    timer = eta.LevelTimer(DEMO)
    timer.add_tick(120_000, 130_000, 300.0)
    assert eta.estimate_eta(130_000, 200_000, DEMO, timer.rates()) is None
    timer.add_tick(130_000, 140_000, 80.0)
    assert eta.estimate_eta(140_000, 200_000, DEMO, timer.rates()) == pytest.approx(60 * 8.0)


def test_tick_lines_as_typed_say_measuring_then_count_down(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))

    def typed(*args):
        result = subprocess.run([sys.executable, os.path.join(ROOT, args[0]), *args[1:]], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    typed("dataset_tool.py", "create_digits", "datasets/digits", "--resolution", "8")
    out = typed("train.py", "--model=vgrow_pg", "--dataset=digits", "--fmaps=8", "--batch_size=8",
                "--dur_nimg=64", "--tick_kimg=0.032", "--snapshot_kimg=1", "--num_row=2", "--num_line=2",
                "--total_kimg=0.128")
    etas = [line.split("ETA ")[1].split("  ")[0] for line in out.splitlines() if line.startswith("tick")]
    assert etas[0] == "measuring" and len(etas) == 4, out
    assert all(e.endswith("s") and e != "measuring" for e in etas[1:]), etas

"""The programs as a user types them: a fresh current directory, relative paths, default run dirs.

Every command runs in a subprocess whose current directory is a temporary folder (never the checkout),
so run directories are relative (`results/digits-KL`) exactly as in the README.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model=vgrow_pg", "--dataset=digits", "--fmaps=8", "--batch_size=8", "--dur_nimg=64",
        "--tick_kimg=0.032", "--snapshot_kimg=0.032", "--num_row=2", "--num_line=2", "--keep_checkpoints=2"]
# What TensorFlow prints on its own: absl-format C++ lines and the notes we used to let through.
TF_NOISE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuInit|cudart|Sharding callback|"
                      r"update_checkpoint_state|remapper", re.M)


def user_env():
    """The environment of a user who set nothing: TensorFlow's log level is ours to choose."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VGROW_VERBOSE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


def typed(cwd, script, *args, timeout=300):
    """`python <script> args...` typed in `cwd`."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, env=user_env(),
                          capture_output=True, text=True, timeout=timeout)


def spawn(cwd, script, *args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def checkpoint_files(run_dir):
    return sorted(os.path.basename(p)[:-len(".index")] for p in glob.glob(os.path.join(run_dir, "checkpoints",
                                                                                       "ckpt-*.index")))


def state_names(run_dir):
    with open(os.path.join(run_dir, "checkpoints", "checkpoint")) as f:
        return re.findall(r'"([^"]*)"', f.read())


# --- the demo, run twice; Ctrl-C; --resume from relative, ./.., moved run dirs ----------------------

def test_demo_twice_interrupt_resume_and_prune_from_relative_and_moved_run_dirs(tmp_path):
    cwd = str(tmp_path)
    made = ok(typed(cwd, "dataset_tool.py", "create_digits", "datasets/digits", "--resolution", "8"))
    assert "Added 1797 images to datasets/digits" in made.stdout
    again = ok(typed(cwd, "dataset_tool.py", "create_digits", "datasets/digits", "--resolution", "8"))
    assert "already holds this dataset" in again.stdout
    assert "Adding" not in made.stderr + again.stderr  # no progress bar in captured output
    assert not TF_NOISE.search(made.stderr + again.stderr), made.stderr[-3000:]

    # 1. A fresh run in the default, relative run dir: quiet, StyleGAN tick lines, one final line, pruning.
    first = ok(typed(cwd, "train.py", *TINY, "--total_kimg=0.096"))
    assert not TF_NOISE.search(first.stderr), first.stderr[-3000:]
    run = os.path.join("results", "digits-KL")
    ticks = [line for line in first.stdout.splitlines() if line.startswith("tick")]
    assert [line.split()[1] for line in ticks] == ["1", "2", "3"]
    for field in ("kimg", "time", "sec/tick", "sec/kimg", "ETA", "cpumem"):
        assert f" {field} " in ticks[-1] or ticks[-1].startswith(field), (field, ticks[-1])
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("Done: 0.096 kimg") and os.path.join(run, "network-final.h5") in last
    assert os.path.isfile(os.path.join(cwd, run, "reals.png"))
    assert checkpoint_files(os.path.join(cwd, run)) == ["ckpt-64", "ckpt-96"]  # pruned to --keep_checkpoints
    assert state_names(os.path.join(cwd, run)) == ["ckpt-96", "ckpt-64", "ckpt-96"]  # file names only

    # 2. The same command again starts a numbered run; Ctrl-C writes a checkpoint and exits 130.
    proc = spawn(cwd, "train.py", *TINY, "--total_kimg=5")
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("tick"):
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 130, out + proc.stderr.read()[-3000:]
    numbered = os.path.join("results", "digits-KL-001")
    assert f"results/digits-KL already holds a run; this new run writes to {numbered}" in out
    after_signal = out.split("Received SIGINT", 1)[1]
    assert "tick" not in after_signal and "Stopped at" in after_signal  # no bogus partial tick line
    assert checkpoint_files(os.path.join(cwd, numbered))

    # 3. --resume continues the latest run of the series, from the relative default run dir.
    resumed = ok(typed(cwd, "train.py", *TINY, "--total_kimg=0.096", "--resume"))
    assert f"Resumed from {os.path.join(numbered, 'checkpoints', 'ckpt-')}" in resumed.stdout
    assert os.path.isfile(os.path.join(cwd, numbered, "network-final.h5"))

    # 4. The first run moved and renamed, resumed through a path with ./ and ..: resumes and prunes.
    os.makedirs(os.path.join(cwd, "archive"))
    shutil.move(os.path.join(cwd, run), os.path.join(cwd, "archive", "renamed"))
    moved = ok(typed(cwd, "train.py", *TINY, "--total_kimg=0.16", "--resume",
                     "--run_dir=./archive/../archive/renamed"))
    assert "at 0.1 kimg" in moved.stdout
    assert checkpoint_files(os.path.join(cwd, "archive", "renamed")) == ["ckpt-128", "ckpt-160"]


# --- help ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script, args, present, absent", [
    ("train.py", ["--help"], ["--dataset", "--resume", "--total_kimg", "--model=MODEL --help"],
     ["--divergence", "--tpu", "absl.", "--helpfull", "--only_check_args"]),
    ("train.py", ["--model=vgrow_pg", "--help"], ["--dataset", "--divergence", "--dur_nimg", "(default: KL)"],
     ["--r1_gamma", "--tpu"]),
    ("train.py", ["--model=msg_stylegan", "--help"], ["--r1_gamma", "--mapping_layers"], ["--divergence"]),
    ("train.py", ["--flagfile=configs/glo/digits.cfg", "--help"], ["--z_lr", "--latent_projection"], []),
    ("generate_samples.py", ["--help"], ["--snapshot", "--mode", "--truncation_psi"],
     ["--tpu", "absl.", "--only_check_args"]),
    ("run_metrics.py", ["--help"], ["--metrics", "--feature_net", "x10^3"], ["--tpu", "absl.", "--only_check_args"]),
    ("dataset_tool.py", ["--help"], ["create_digits", "create_from_images", "display"], ["--tpu"]),
])
def test_help_lists_the_programs_own_options_without_tensorflow(script, args, present, absent):
    start = time.time()
    result = ok(typed(ROOT, script, *args, timeout=60))
    seconds = time.time() - start
    for text in present:
        assert text in result.stdout, (text, result.stdout)
    for text in absent:
        assert text not in result.stdout, (text, result.stdout)
    assert not result.stderr.strip()
    assert seconds < 20  # generous for a loaded machine; the point is below: TensorFlow is not imported


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom vgrow_tf.cli import train\nsys.argv = ['train.py', '--model=glo', '--help']\n"
            "try:\n    train.run()\nexcept SystemExit:\n    pass\n"
            "print('TF' if 'tensorflow' in sys.modules else 'no TF')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=user_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "no TF", result.stdout + result.stderr


def test_family_options_read_without_import_equal_the_imported_ones():
    import importlib

    from vgrow_tf import models
    from vgrow_tf.training import options as options_lib
    for module_name in dict.fromkeys(models.FAMILY_MODULES.values()):
        assert options_lib.family_options(module_name) == list(importlib.import_module(module_name).OPTIONS)


# --- dataset_tool ----------------------------------------------------------------------------------

def write_png(path, value, size=8, mode="L"):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def test_create_from_images_skips_a_bad_first_file_and_names_it(tmp_path):
    cwd = str(tmp_path)
    os.makedirs(tmp_path / "photos")
    (tmp_path / "photos" / "000-broken.png").write_bytes(b"not an image")
    for i in range(3):
        write_png(str(tmp_path / "photos" / f"{i + 1:03d}.png"), 40 * i)
    refused = typed(cwd, "dataset_tool.py", "create_from_images", "datasets/mine", "photos")
    assert refused.returncode == 2
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: cannot read image photos/000-broken.png") and "--skip_bad" in error
    assert not glob.glob(str(tmp_path / "datasets" / "*mine*"))  # neither the dataset nor a partial one

    made = ok(typed(cwd, "dataset_tool.py", "create_from_images", "datasets/mine", "photos", "--skip_bad"))
    assert "Skipping cannot read image photos/000-broken.png" in made.stdout
    assert "pass --skip_bad" not in made.stdout  # no advice to pass the flag already given
    assert "The first image (photos/001.png) is grayscale" in made.stdout and "--channels 3" in made.stdout
    assert "Added 3 images" in made.stdout and "Skipped 1 unreadable file(s): photos/000-broken.png" in made.stdout

    info = ok(typed(cwd, "dataset_tool.py", "info", "mine"))  # a bare name, as train.py --dataset takes it
    assert re.search(r"num_images\s+3", info.stdout)

    odd = typed(cwd, "dataset_tool.py", "create_from_images", "datasets/odd", "photos", "--resolution", "30")
    assert odd.returncode == 2
    assert "--resolution 30 is not a power of two >= 4; use e.g. --resolution 32" in odd.stderr
    assert "pass --resolution" not in odd.stderr


# --- generate_samples ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir_with_snapshot(tmp_path_factory):
    """A run directory as train.py leaves it: a snapshot and a checkpoint file."""
    from vgrow_tf import snapshot
    from vgrow_tf.models import vgrow_pg
    cwd = tmp_path_factory.mktemp("user")
    run = cwd / "results" / "digits-KL"
    os.makedirs(run / "checkpoints")
    config = vgrow_pg.make_config(8, 1, z_dim=4, fmaps=4)
    snapshot.save(str(run / "network-final.h5"), "vgrow_pg", config, vgrow_pg.build_networks(config))
    (run / "checkpoints" / "ckpt-96.index").write_bytes(b"")
    return str(cwd)


def test_generate_samples_grid_without_seeds_from_a_run_dir(run_dir_with_snapshot):
    cwd = run_dir_with_snapshot
    result = ok(typed(cwd, "generate_samples.py", "--snapshot=results/digits-KL", "--out_dir=out", "--mode=grid",
                      "--truncation_psi=0.7"))
    assert "using its latest snapshot results/digits-KL/network-final.h5" in result.stdout
    assert "--truncation_psi is ignored" in result.stdout
    from PIL import Image
    grid = np.asarray(Image.open(os.path.join(cwd, "out", "grid.png")))
    assert grid.shape == (8 * 8 + 7 * 2, 8 * 8 + 7 * 2)  # seeds 0..63, 2 px between cells as training grids
    assert (grid[:, 8:10] == 128).all() and (grid[8:10, :] == 128).all()  # mid-grey
    assert not TF_NOISE.search(result.stderr), result.stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (["--snapshot=results/digits-KL/checkpoints/ckpt-96.index", "--seeds=0"], "is a training checkpoint"),
    (["--snapshot=results/digits-KL"], "--mode=samples needs --seeds"),
    (["--snapshot=results/digits-KL", "--mode=multiscale", "--seeds=0-1"], "needs an MSG snapshot"),
    (["--snapshot=results/digits-KL", "--mode=video", "--refine=dgflow"], "--refine=dgflow works with"),
])
def test_generate_samples_refusals_leave_no_out_dir(run_dir_with_snapshot, args, message):
    cwd = run_dir_with_snapshot
    result = typed(cwd, "generate_samples.py", *args, "--out_dir=refused")
    assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1], result.stderr
    assert not os.path.exists(os.path.join(cwd, "refused"))


# --- pieces the commands above rely on --------------------------------------------------------------

def test_run_dir_series_fresh_runs_are_numbered_and_resume_takes_the_latest(tmp_path, monkeypatch):
    from vgrow_tf.training import run_dir
    monkeypatch.chdir(tmp_path)
    base = os.path.join("results", "x")

    def hold_run(path):
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
        open(os.path.join(path, "checkpoints", "checkpoint"), "w").close()

    assert run_dir.choose(base, resume=False) == (base, None)
    hold_run(base)
    chosen, note = run_dir.choose(base, resume=False)
    assert chosen == base + "-001" and "already holds a run" in note
    hold_run(base + "-001")
    os.makedirs(base + "-002")  # died before its first checkpoint: reused
    assert run_dir.choose(base, resume=False)[0] == base + "-002"
    assert run_dir.choose(base, resume=True)[0] == base + "-001"
    assert run_dir.choose(base + "-001", resume=True) == (base + "-001", None)


def test_tick_time_format():
    from vgrow_tf.training.loop import format_time
    assert [format_time(s) for s in (5, 65, 3 * 3600 + 7 * 60, 2 * 86400 + 4 * 3600)] == \
        ["5s", "1m 05s", "3h 07m", "2d 04h"]


def test_metric_table_shows_kid_times_a_thousand():
    from vgrow_tf.metrics import runner
    table = runner.format_table([dict(snapshot_name="network-final", metric="kid2k", value=0.00123,
                                      feature_net="model digits.keras"),
                                 dict(snapshot_name="network-final", metric="fid2k", value=12.5,
                                      feature_net="model digits.keras")])
    assert "value (KID x10^3)" in table and "1.2300" in table and "12.5000" in table


def test_checkpoint_keeper_with_relative_dotted_and_moved_directories(tmp_path, monkeypatch):
    import tensorflow as tf

    from vgrow_tf.training.loop import CheckpointKeeper
    monkeypatch.chdir(tmp_path)
    value = tf.Variable(0.0)
    keeper = CheckpointKeeper(tf.train.Checkpoint(value=value), os.path.join("results", "r", "checkpoints"), keep=2)
    for n in (1, 2, 3):
        value.assign(float(n))
        keeper.save(n)
    assert sorted(os.listdir("results/r/checkpoints")) == ["checkpoint", "ckpt-2.data-00000-of-00001",
                                                           "ckpt-2.index", "ckpt-3.data-00000-of-00001",
                                                           "ckpt-3.index"]
    shutil.move("results/r", "elsewhere")
    for spelling in ("./elsewhere/../elsewhere/checkpoints", str(tmp_path / "elsewhere" / "checkpoints")):
        moved = CheckpointKeeper(tf.train.Checkpoint(value=value), spelling, keep=2)
        assert moved.latest_checkpoint == os.path.join(spelling, "ckpt-3")
        assert tf.train.latest_checkpoint(spelling) == os.path.join(spelling, "ckpt-3")  # TF reads it too
    moved.save(4)
    assert [os.path.basename(p) for p in moved.checkpoints] == ["ckpt-3", "ckpt-4"]
    assert not glob.glob("elsewhere/checkpoints/ckpt-2.*")

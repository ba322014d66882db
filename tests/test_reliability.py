"""Crash safety and clear errors of train.py (issue: reliability).

A training process killed with SIGKILL leaves only complete files; --resume continues the image count;
SIGTERM stops after writing a checkpoint; user errors are one line and exit code 2.
"""
import glob
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model=vgrow_pg", "--fmaps=8", "--batch_size=8", "--dur_nimg=64", "--tick_kimg=0.032",
        "--snapshot_kimg=0.064", "--num_row=2", "--num_line=2"]


def train_cmd(*args):
    return [sys.executable, os.path.join(ROOT, "train.py"), *TINY, *args]


def temporaries(run_dir):
    return glob.glob(os.path.join(run_dir, "*.tmp-*")) + glob.glob(os.path.join(run_dir, "checkpoints", "*.tmp-*")) \
        + glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*_temp"))


def assert_run_dir_consistent(run_dir, killed=False):
    """Every snapshot opens and every checkpoint the manager lists has its files; temporary files only
    where a kill interrupted their write (a later --resume removes them)."""
    import tensorflow as tf
    for path in glob.glob(os.path.join(run_dir, "*.h5")):
        with h5py.File(path, "r") as f:
            assert f.attrs["kind"] == "vgrow_pg", path
    if not killed:
        assert not temporaries(run_dir), "temporary files left behind"
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    for ckpt in state.all_model_checkpoint_paths:
        reader = tf.train.load_checkpoint(ckpt)
        assert reader.get_variable_to_shape_map()


def kimg_of_latest_checkpoint(run_dir):
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_sigkill_at_random_points_then_resume(digits8, tmp_path):
    run_dir = str(tmp_path / "run")
    rng = random.Random(0)
    resumed, left = False, set()
    for attempt in range(3):
        args = train_cmd(f"--dataset={digits8}", f"--run_dir={run_dir}", "--total_kimg=2")
        if os.path.isdir(os.path.join(run_dir, "checkpoints")):
            args.append("--resume")
            resumed = True
        before = kimg_of_latest_checkpoint(run_dir)
        out = open(os.path.join(str(tmp_path), f"attempt{attempt}.log"), "w")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline and kimg_of_latest_checkpoint(run_dir) <= before:
            assert proc.poll() is None, open(out.name).read()[-2000:]
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out.close()
        assert_run_dir_consistent(run_dir, killed=True)
        assert kimg_of_latest_checkpoint(run_dir) > before  # progress survives every kill
        left = set(temporaries(run_dir))
    assert resumed
    done = subprocess.run(train_cmd(f"--dataset={digits8}", f"--run_dir={run_dir}", "--total_kimg=2",
                                    "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for path in left:  # what the last kill interrupted, removed and said so
        assert f"removed {path}, left by a killed process" in done.stdout
    assert os.path.isfile(os.path.join(run_dir, "network-final.h5"))
    assert kimg_of_latest_checkpoint(run_dir) == 2000
    assert_run_dir_consistent(run_dir)


def test_sigterm_writes_a_checkpoint_and_exits_143(digits8, tmp_path):
    run_dir = str(tmp_path / "run")
    proc = subprocess.Popen(train_cmd(f"--dataset={digits8}", f"--run_dir={run_dir}", "--total_kimg=50"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = os.path.join(run_dir, "log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.isfile(log) and "\ntick" in open(log).read()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]  # the shell's convention: not a finished run
    assert "checkpoint written" in out
    assert kimg_of_latest_checkpoint(run_dir) > 0


def run_train(*args):
    return subprocess.run(train_cmd(*args), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--dataset=/nonexistent/ds"], "/nonexistent/ds"),
    (["--dataset={data}", "--resolution=64"], "--resolution 64 is not available"),
    (["--dataset={data}", "--total_kimg=1", "--total_nimg=5"], "contradicts --total_nimg"),
    (["--dataset={data}", "--run_dir=/proc/forbidden"], "cannot write to run directory"),
    (["--dataset={data}", "--divergence=XX"], "divergence"),
])
def test_user_errors_are_one_line_and_exit_2(digits8, tmp_path, args, message):
    args = [a.format(data=digits8) for a in args]
    if not any(a.startswith("--run_dir") for a in args):
        args.append(f"--run_dir={tmp_path / 'run'}")
    result = run_train(*args)
    assert result.returncode in (1, 2), result.stderr  # absl rejects enum values itself (exit 1)
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_resume_with_contradicting_flags_is_refused(digits8, tmp_path):
    run_dir = str(tmp_path / "run")
    first = run_train(f"--dataset={digits8}", f"--run_dir={run_dir}", "--total_kimg=0.064")
    assert first.returncode == 0, first.stderr[-2000:]
    other = run_train(f"--dataset={digits8}", f"--run_dir={run_dir}", "--total_kimg=0.128", "--resume",
                      "--divergence=JS")
    assert other.returncode == 2 and "contradict" in other.stderr and "divergence" in other.stderr
    assert "Traceback" not in other.stderr


@pytest.fixture(scope="module")
def tiny_snapshot(tmp_path_factory):
    from vgrow_tf import snapshot
    from vgrow_tf.models import vgrow_pg
    config = vgrow_pg.make_config(8, 1, z_dim=4, fmaps=4)
    path = str(tmp_path_factory.mktemp("snap") / "network-final.h5")
    snapshot.save(path, "vgrow_pg", config, vgrow_pg.build_networks(config))
    return path


def test_snapshot_of_another_kind_and_truncated_snapshot(tiny_snapshot, tmp_path):
    from vgrow_tf import snapshot
    from vgrow_tf.errors import UserError
    with pytest.raises(UserError, match="is a 'vgrow_pg' snapshot; this needs glo"):
        snapshot.load(tiny_snapshot, expect_kind="glo")
    broken = tmp_path / "truncated.h5"
    data = open(tiny_snapshot, "rb").read()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated|corrupt|not a"):
        snapshot.load(str(broken))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "generate_samples.py"), f"--snapshot={broken}",
                             f"--out_dir={tmp_path / 'out'}", "--seeds=0-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize("exception, message", [
    (OSError(28, "No space left on device", "/runs/x.h5"), "the disk is full while writing /runs/x.h5"),
    (OSError(13, "Permission denied", "/runs"), "cannot write /runs: permission denied"),
    (MemoryError(), "out of memory; try a smaller --batch_size"),
])
def test_run_cli_turns_system_failures_into_one_line(exception, message, capsys):
    from vgrow_tf.errors import run_cli

    def fail(argv):
        raise exception

    with pytest.raises(SystemExit) as exit_info:
        run_cli(fail, ["prog"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"Error: {message}")


def test_device_out_of_memory_names_the_batch_size(capsys):
    import tensorflow as tf
    from vgrow_tf.errors import run_cli

    def fail(argv):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    with pytest.raises(SystemExit):
        run_cli(fail, ["prog"])
    assert "try a smaller --batch_size" in capsys.readouterr().err


def test_checkpoint_keeper_lists_only_complete_kept_checkpoints(tmp_path):
    import tensorflow as tf
    from vgrow_tf.training.loop import CheckpointKeeper
    value = tf.Variable(0.0)
    keeper = CheckpointKeeper(tf.train.Checkpoint(value=value), str(tmp_path), keep=2)
    for n in (100, 200, 300, 400):
        value.assign(float(n))
        keeper.save(n)
        listed = keeper.checkpoints
        assert all(tf.io.gfile.exists(p + ".index") for p in listed)
    assert [os.path.basename(p) for p in listed] == ["ckpt-300", "ckpt-400"]
    assert keeper.latest_checkpoint.endswith("ckpt-400")
    assert not glob.glob(str(tmp_path / "ckpt-100*")) and not glob.glob(str(tmp_path / "ckpt-200*"))
    restored = tf.Variable(0.0)
    tf.train.Checkpoint(value=restored).restore(listed[0]).assert_existing_objects_matched()
    assert float(restored.numpy()) == 300.0

"""Faults without loss, met as a user meets them: a damaged checkpoint, temporaries of a killed process,
two trainers on one run directory, refused and killed runs, a full disk, damaged tfrecords.

Every command runs in a subprocess in a scratch current directory with relative paths.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from test_cli_as_typed import ROOT, spawn, typed, user_env

TINY = ["--model=vgrow_pg", "--dataset=digits", "--fmaps=8", "--batch_size=8", "--dur_nimg=64",
        "--tick_kimg=0.032", "--snapshot_kimg=0.032", "--num_row=2", "--num_line=2", "--keep_checkpoints=3"]
FINISHED = os.path.join("results", "digits-KL")


@pytest.fixture(scope="module")
def cwd(tmp_path_factory):
    """A scratch directory with datasets/digits (8x8) and a finished run with checkpoints at 32, 64, 96 images."""
    from vgrow_tf.data import tool
    path = str(tmp_path_factory.mktemp("faults"))
    tool.create_digits(os.path.join(path, "datasets", "digits"), resolution=8)
    done = typed(path, "train.py", *TINY, "--total_kimg=0.096")
    assert done.returncode == 0, done.stderr[-3000:]
    return path


def dead_pid():
    """The PID of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def wait_for(predicate, what, timeout=180):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def error_line(result):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


# --- kills, damaged checkpoints, two trainers -----------------------------------------------------------

def test_resume_goes_back_past_unreadable_checkpoints_cleans_up_after_the_dead_and_refuses_a_second_trainer(cwd):
    run = "run-a"
    shutil.copytree(os.path.join(cwd, FINISHED), os.path.join(cwd, run))
    ckpt = os.path.join(cwd, run, "checkpoints")
    open(os.path.join(ckpt, "ckpt-96.data-00000-of-00001"), "w").close()  # emptied
    with open(os.path.join(ckpt, "ckpt-64.index"), "r+b") as f:  # cut short
        f.truncate(os.path.getsize(f.name) // 2)
    dead = dead_pid()
    leftovers = [f"network-snapshot-000000.h5.tmp-{dead}", f"fakes000096.tmp-{dead}.png",
                 f"checkpoints/checkpoint.tmp-{dead}", "checkpoints/ckpt-128_temp"]
    kept = [f"notes.tmp-{os.getpid()}", "notes.txt", "checkpoints/ckpt-96.index.copy"]
    os.makedirs(os.path.join(ckpt, "ckpt-128_temp"))
    for name in leftovers[:-1] + ["checkpoints/ckpt-128_temp/part-00000-of-00001.index"] + kept:
        open(os.path.join(cwd, run, name), "w").close()
    with open(os.path.join(cwd, run, "lock"), "w") as f:
        f.write(f"pid {dead} on somewhere\n")  # a trainer that was killed

    log = os.path.join(cwd, run, "log.txt")
    ticks = read(log).count("\ntick")
    first = spawn(cwd, "train.py", *TINY, f"--run_dir={run}", "--resume", "--total_kimg=50")
    wait_for(lambda: read(log).count("\ntick") > ticks, "the resumed trainer's first tick")
    second = typed(cwd, "train.py", *TINY, f"--run_dir={run}", "--resume", "--total_kimg=50")
    message = error_line(second)
    assert f"{run} is in use by another trainer (pid {first.pid} on " in message, message
    ticks = read(log).count("\ntick")
    wait_for(lambda: read(log).count("\ntick") > ticks, "a tick of the first trainer after the refusal")
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 128 + signal.SIGTERM, out[-2000:] + err[-2000:]

    assert f"Checkpoint {run}/checkpoints/ckpt-96 is unreadable (" in out
    assert f"Checkpoint {run}/checkpoints/ckpt-64 is unreadable (" in out
    assert f"Resumed from {run}/checkpoints/ckpt-32 at 0.0 kimg" in out
    assert f"(pid {dead} on somewhere) is no longer running" in out
    for name in leftovers:
        assert f"removed {os.path.join(run, name)}, left by a killed process" in out
        assert not os.path.exists(os.path.join(cwd, run, name)), name
    for name in kept:
        assert os.path.exists(os.path.join(cwd, run, name)), name
    assert out.count("removed ") == len(leftovers)
    assert not os.path.exists(os.path.join(cwd, run, "lock"))  # released at exit


def test_refused_and_killed_runs_leave_no_half_runs_behind(cwd):
    """A run killed before its first checkpoint keeps its directory and log; the next new run gets its own
    directory; a run refused at start (here --resume_from of another architecture) leaves nothing."""
    killed = spawn(cwd, "train.py", *TINY, "--total_kimg=50")
    new_dir = os.path.join(cwd, FINISHED + "-001")
    wait_for(lambda: os.path.isfile(os.path.join(new_dir, "run.json")), "the new run's run.json")
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert not os.path.isfile(os.path.join(new_dir, "checkpoints", "checkpoint")), "killed too late"
    before = {name: read(os.path.join(new_dir, name)) for name in ("log.txt", "flags.txt", "run.json")}

    refused = typed(cwd, "train.py", *TINY, "--fmaps=16", f"--resume_from={FINISHED}/network-final.h5",
                    "--total_kimg=50")
    assert "another architecture" in error_line(refused)  # refused before a run directory is chosen
    assert "this new run writes to" not in refused.stdout
    assert not os.path.exists(os.path.join(cwd, FINISHED + "-002"))
    assert {name: read(os.path.join(new_dir, name)) for name in before} == before


# --- a full disk ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(path, size):
    """A tmpfs of `size` mounted at `path` (root only); yields False where mounting is not allowed."""
    os.makedirs(path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                             capture_output=True).returncode == 0 if shutil.which("mount") else False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", path], check=True)


# Where a tmpfs cannot be mounted: TensorFlow's own error for a full disk, raised by the second checkpoint write.
INJECT_FULL_DISK = """
import os, runpy, sys
import tensorflow as tf
write, calls = tf.train.Checkpoint.write, []
def full_at_second(self, prefix, *args, **kwargs):
    calls.append(prefix)
    if len(calls) < 2:
        return write(self, prefix, *args, **kwargs)
    os.makedirs(prefix + "_temp")
    raise tf.errors.ResourceExhaustedError(None, None, prefix + "_temp/part-00000-of-00001.data-00000-of-00001"
                                           ".tempstate1; No space left on device")
tf.train.Checkpoint.write = full_at_second
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_full_disk_names_the_file_and_keeps_the_previous_checkpoint(cwd):
    import tensorflow as tf
    with small_disk(os.path.join(cwd, "small"), "3000k") as mounted:
        args = [*TINY, "--run_dir=small/run", "--total_kimg=0.5"]
        if mounted:  # the first checkpoint (1.4 MB) fits, the second does not
            result = typed(cwd, "train.py", *args)
        else:
            result = subprocess.run([sys.executable, "-c", INJECT_FULL_DISK, os.path.join(ROOT, "train.py"), *args],
                                    cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=300)
        assert error_line(result) == (
            "Error: the disk is full while writing small/run/checkpoints/ckpt-64; the last checkpoint, "
            "small/run/checkpoints/ckpt-32, is intact: free space (or copy the run directory elsewhere) and "
            "continue with --resume")
        copy = os.path.join(cwd, "copied-run")
        shutil.copytree(os.path.join(cwd, "small", "run"), copy)
    assert sorted(os.listdir(os.path.join(copy, "checkpoints"))) == [
        "checkpoint", "ckpt-32.data-00000-of-00001", "ckpt-32.index"]  # no ckpt-64_temp left
    assert not [name for name in os.listdir(copy) if ".tmp-" in name]
    reader = tf.train.load_checkpoint(os.path.join(copy, "checkpoints", "ckpt-32"))  # intact: every tensor reads
    assert all(reader.get_tensor(name) is not None for name in reader.get_variable_to_shape_map())


def test_dataset_tool_on_a_full_disk_leaves_nothing(cwd):
    with small_disk(os.path.join(cwd, "tiny-disk"), "300k") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root")
        result = typed(cwd, "dataset_tool.py", "create_digits", "tiny-disk/d32", "--resolution", "32")
        assert error_line(result).startswith("Error: the disk is full while writing the dataset ")
        assert "d32; its partial files were removed" in result.stderr
        assert os.listdir(os.path.join(cwd, "tiny-disk")) == []


# --- damaged tfrecords ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def damaged(cwd):
    """datasets/cut: every shard cut to half its size; datasets/flipped: one byte of record 2 flipped."""
    import glob
    for name in ("cut", "flipped"):
        shutil.copytree(os.path.join(cwd, "datasets", "digits"), os.path.join(cwd, "datasets", name))
        for path in glob.glob(os.path.join(cwd, "datasets", name, "*.tfrecords")):
            with open(path, "r+b") as f:
                size = os.path.getsize(path)
                if name == "cut":
                    f.truncate(size // 2)
                else:
                    f.seek(2 * size // 1797 + 20)
                    byte = f.read(1)
                    f.seek(-1, 1)
                    f.write(bytes([byte[0] ^ 0xFF]))
    return cwd


CUT = "datasets/cut/digits-r02.tfrecords is truncated or corrupt (59301 bytes, 118602 expected: record 898 of 1797"
FLIPPED = "datasets/flipped/digits-r02.tfrecords: record 2 is corrupt (corrupted record at 144)"


@pytest.mark.parametrize("script, args, message", [
    ("train.py", [*TINY, "--dataset=cut", "--total_kimg=1"], CUT),
    ("dataset_tool.py", ["info", "cut"], CUT),
    ("dataset_tool.py", ["check", "datasets/flipped"], FLIPPED),
    ("train.py", [*TINY, "--dataset=flipped", "--total_kimg=1"], FLIPPED),
])
def test_damaged_tfrecords_stop_with_the_file_and_record(damaged, script, args, message):
    assert message in error_line(typed(damaged, script, *args))


def test_run_metrics_names_the_damaged_record_and_check_passes_a_sound_dataset(damaged):
    import keras
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4)]).save(
        os.path.join(damaged, "features.keras"))
    result = typed(damaged, "run_metrics.py", f"--snapshot={FINISHED}/network-final.h5", "--dataset=flipped",
                   "--metrics=fid32", "--feature_net=features.keras", "--noprogress")
    assert FLIPPED in error_line(result)
    sound = typed(damaged, "dataset_tool.py", "check", "digits")
    assert sound.returncode == 0 and "every record reads; images per level: 4x4 1797, 8x8 1797" in sound.stdout


# --- several workers ----------------------------------------------------------------------------------------

def start_workers(cwd, *args):
    from test_multi_worker import free_port
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    return [subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *TINY, "--run_dir=mw",
                              "--strategy=multi_worker", *args], cwd=cwd, text=True,
                             env=dict(user_env(), TF_CONFIG=json.dumps({"cluster": cluster, "task": {
                                 "type": "worker", "index": index}})),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for index in range(2)]


def test_a_killed_worker_stops_the_other_at_once_and_resume_on_both_loses_nothing(cwd):
    import tensorflow as tf
    chief, other = start_workers(cwd, "--total_kimg=50")
    checkpoints = os.path.join(cwd, "mw", "checkpoints")
    wait_for(lambda: tf.train.latest_checkpoint(checkpoints), "the first checkpoint", timeout=400)
    other.send_signal(signal.SIGKILL)
    killed_at = time.time()
    out, err = chief.communicate(timeout=180)
    stopped_after = time.time() - killed_at
    assert chief.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(
        "Error: worker /job:worker/replica:0/task:1 stopped answering (killed or crashed), so this worker stops "
        "too; start every worker again with --resume to continue from the last checkpoint (mw/checkpoints/ckpt-")
    assert stopped_after < 90, stopped_after  # TensorFlow's heartbeats: measured 7.5 s on a loaded machine
    other.communicate()
    last = int(tf.train.latest_checkpoint(checkpoints).rsplit("-", 1)[1])

    resumed = start_workers(cwd, "--resume", f"--total_nimg={last + 64}")
    outputs = [p.communicate(timeout=400) for p in resumed]
    for p, (out, err) in zip(resumed, outputs):
        assert p.returncode == 0, err[-3000:]
        assert f"Resumed from mw/checkpoints/ckpt-{last} at" in out
    assert f"Done: {(last + 64) / 1000:g} kimg" in outputs[0][0]


def test_a_run_killed_before_its_first_checkpoint_is_not_reused_except_by_the_workers_of_one_run(tmp_path,
                                                                                                  monkeypatch):
    from vgrow_tf.training import run_dir
    monkeypatch.chdir(tmp_path)
    base = os.path.join("results", "x")
    os.makedirs(base)
    assert run_dir.choose(base, resume=False)[0] == base  # empty: used
    open(os.path.join(base, "run.json"), "w").close()  # started, killed before its first checkpoint
    assert run_dir.choose(base, resume=False)[0] == base + "-001"
    # a worker that looks after its chief wrote run.json must land where the chief is
    assert run_dir.choose(base, resume=False, reuse_unfinished=True)[0] == base


def test_a_snapshot_with_a_damaged_weight_is_one_line_for_every_program(cwd):
    import h5py
    damaged = os.path.join(cwd, "damaged.h5")
    shutil.copy(os.path.join(cwd, FINISHED, "network-final.h5"), damaged)
    with h5py.File(damaged, "r") as f:  # HDF5 has no checksums of its own: ours must catch this
        weight = max((f["networks/G"][k] for k in f["networks/G"]), key=lambda ds: ds.size)
        offset, path = weight.id.get_offset(), weight.attrs["path"]
    with open(damaged, "r+b") as f:
        f.seek(offset + 5)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    message = f"Error: snapshot damaged.h5 is corrupt (weight {path} of network 'G' does not match its checksum)"
    samples = typed(cwd, "generate_samples.py", "--snapshot=damaged.h5", "--out_dir=samples", "--seeds=0-1")
    assert error_line(samples).startswith(message)
    metrics = typed(cwd, "run_metrics.py", "--snapshot=damaged.h5", "--dataset=digits", "--metrics=fid32")
    assert error_line(metrics).startswith(message)

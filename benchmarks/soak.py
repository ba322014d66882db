"""Soak test: train a tiny model for a long stretch, SIGKILL it at random times, resume, repeat; one life
meets a full disk; a last life finishes the run.

    python benchmarks/soak.py --minutes 30 --kill_every 180 [--model vgrow_pg] [--work_dir /tmp/soak]

Each life is killed after a random 0.5-1.5 x --kill_every seconds. Life --full_disk_life (default 1) runs
with TensorFlow's full-disk error injected into its second checkpoint write: it must stop with one line
naming the checkpoint, exit 2 and leave the previous checkpoint intact. After --minutes, a last life
trains to one snapshot interval past the newest checkpoint and must end with exactly that image count.

Reports (one JSON line per life, then a summary): the trainer's resident memory every 30 s (timeline) and
first vs last third of each life (growth means a leak), images at each start and kill (nothing may go
backwards), whether every file in the run directory still loads, and what --resume removed.
"""
import argparse
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import h5py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TINY = {"vgrow_pg": ["--fmaps=8", "--dur_nimg=2000"],
        "msg_stylegan": ["--fmap_base=256", "--fmap_max=16", "--mapping_fmaps=16", "--z_dim=16"]}


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def latest_nimg(run_dir):
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def run_dir_loads(run_dir):
    """Every snapshot opens and every listed checkpoint reads in full (temporaries of a killed write may be
    present; the next --resume removes them)."""
    import tensorflow as tf
    for path in glob.glob(os.path.join(run_dir, "*.h5")):
        with h5py.File(path, "r") as f:
            f.attrs["kind"]
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    for ckpt in state.all_model_checkpoint_paths if state else []:
        reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints", os.path.basename(ckpt)))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    return True


# TensorFlow's own error for a full disk, raised by the second checkpoint write of the life that runs this.
FULL_DISK_AT_SECOND_CHECKPOINT = """
import os, runpy, sys
import tensorflow as tf
write, calls = tf.train.Checkpoint.write, []
def full_at_second(self, prefix, *args, **kwargs):
    calls.append(prefix)
    if len(calls) < 2:
        return write(self, prefix, *args, **kwargs)
    os.makedirs(prefix + "_temp", exist_ok=True)
    raise tf.errors.ResourceExhaustedError(None, None, prefix + "_temp/part-00000-of-00001.data-00000-of-00001"
                                           ".tempstate1; No space left on device")
tf.train.Checkpoint.write = full_at_second
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def live(command, log_path, seconds):
    """Runs the trainer for up to `seconds`, sampling its memory; returns (exit code or None if killed, samples)."""
    with open(log_path, "w") as log:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # this checkout's vgrow_tf
        samples, end = [], time.time() + seconds
        while time.time() < end and proc.poll() is None:
            time.sleep(5)
            value = rss_mb(proc.pid)
            if value:
                samples.append(value)
        code = proc.poll()
        if code is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return code, samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--kill_every", type=float, default=180, help="seconds between kills")
    parser.add_argument("--model", default="vgrow_pg")
    parser.add_argument("--work_dir")
    parser.add_argument("--full_disk_life", type=int, default=1, help="the life that meets a full disk (-1: none)")
    parser.add_argument("--snapshot_kimg", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="of the random kill times")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="vgrow_soak_")
    dataset = os.path.join(work, "digits16")
    if not os.path.isdir(dataset):
        from vgrow_tf.data import tool
        tool.create_digits(dataset, resolution=16)
    run_dir = os.path.join(work, "run")
    command = [sys.executable, os.path.join(ROOT, "train.py"), f"--model={args.model}", f"--dataset={dataset}",
               f"--run_dir={run_dir}", "--batch_size=16", "--tick_kimg=1",
               f"--snapshot_kimg={args.snapshot_kimg}", "--num_row=2", "--num_line=2", *TINY.get(args.model, [])]
    rng = random.Random(args.seed)
    end = time.time() + args.minutes * 60
    lives, regressions = [], 0
    while time.time() < end:
        start_nimg = latest_nimg(run_dir)
        resume = ["--resume"] if os.path.isdir(os.path.join(run_dir, "checkpoints")) else []
        full_disk = len(lives) == args.full_disk_life
        prefix = [sys.executable, "-c", FULL_DISK_AT_SECOND_CHECKPOINT] if full_disk else []
        log_path = os.path.join(work, f"life{len(lives)}.log")
        seconds = 1800 if full_disk else min(end - time.time(), args.kill_every * rng.uniform(0.5, 1.5))
        life_command = command + ["--total_kimg=100000"] + resume
        code, samples = live(prefix + life_command[1:] if full_disk else life_command, log_path, seconds)
        with open(log_path) as f:
            log = f.read()
        killed_nimg = latest_nimg(run_dir)
        regressions += int(killed_nimg < start_nimg)
        third = max(1, len(samples) // 3)
        life = dict(life=len(lives), start_nimg=start_nimg, checkpoint_nimg_at_end=killed_nimg, exit_code=code,
                    rss_mb_early=round(sum(samples[:third]) / third, 1) if samples else None,
                    rss_mb_late=round(sum(samples[-third:]) / third, 1) if samples else None,
                    rss_mb_timeline=[round(v) for v in samples[::6]],
                    removed=len(re.findall(r"^removed .*, left by a killed process$", log, re.M)),
                    files_load=run_dir_loads(run_dir))
        if full_disk:
            error = [line for line in log.splitlines() if line.startswith("Error: ")]
            life["full_disk_line"] = error[-1] if error else None
            life["full_disk_ok"] = (code == 2 and len(error) == 1 and "the disk is full while writing" in error[0]
                                    and "Traceback" not in log and killed_nimg > start_nimg
                                    and not glob.glob(os.path.join(run_dir, "checkpoints", "*_temp")))
        lives.append(life)
        print(json.dumps(life), flush=True)
    target = latest_nimg(run_dir) + args.snapshot_kimg * 1000
    code, samples = live(command + ["--resume", f"--total_nimg={target}"],
                         os.path.join(work, "last-life.log"), 3600)
    with open(os.path.join(work, "last-life.log")) as f:
        done = [line for line in f if line.startswith("Done: ")]
    late = [life["rss_mb_late"] for life in lives if life["rss_mb_late"]]
    print(json.dumps(dict(summary=True, lives=len(lives) + 1, target_nimg=target, final_nimg=latest_nimg(run_dir),
                          final_exit_code=code, final_line=done[-1].strip() if done else None,
                          exact=latest_nimg(run_dir) == target and code == 0, regressions=regressions,
                          unexpected_exits=sum(life["exit_code"] is not None for life in lives
                                               if "full_disk_ok" not in life),
                          full_disk_ok=all(life.get("full_disk_ok", True) for life in lives),
                          all_files_load=all(life["files_load"] for life in lives),
                          removed_temporaries=sum(life["removed"] for life in lives),
                          rss_mb_late_first_life=late[0] if late else None,
                          rss_mb_late_last_life=late[-1] if late else None)), flush=True)

if __name__ == "__main__":
    main()

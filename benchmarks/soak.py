"""Soak test: train a tiny model for a long stretch, SIGKILL it every few minutes, resume, repeat.

    python benchmarks/soak.py --minutes 30 --kill_every 180 [--model vgrow_pg] [--work_dir /tmp/soak]

Reports (one JSON line per kill, then a summary): the trainer's resident memory sampled every few
seconds (first vs last third of each life; growth means a leak), images seen at each kill and at the
next start (nothing may go backwards by more than one snapshot interval), and whether every file
in the run directory still loads.
"""
import argparse
import glob
import json
import os
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
    import tensorflow as tf
    for path in glob.glob(os.path.join(run_dir, "*.h5")):
        with h5py.File(path, "r") as f:
            f.attrs["kind"]
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    for ckpt in state.all_model_checkpoint_paths if state else []:
        tf.train.load_checkpoint(ckpt).get_variable_to_shape_map()
    return not glob.glob(os.path.join(run_dir, "*.tmp-*"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--kill_every", type=float, default=180, help="seconds between kills")
    parser.add_argument("--model", default="vgrow_pg")
    parser.add_argument("--work_dir")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="vgrow_soak_")
    dataset = os.path.join(work, "digits16")
    if not os.path.isdir(dataset):
        from vgrow_tf.data import tool
        tool.create_digits(dataset, resolution=16)
    run_dir = os.path.join(work, "run")
    command = [sys.executable, os.path.join(ROOT, "train.py"), f"--model={args.model}", f"--dataset={dataset}",
               f"--run_dir={run_dir}", "--batch_size=16", "--total_kimg=100000", "--tick_kimg=1",
               "--snapshot_kimg=2", "--num_row=2", "--num_line=2", *TINY.get(args.model, [])]
    end = time.time() + args.minutes * 60
    lives, regressions = [], 0
    while time.time() < end:
        start_nimg = latest_nimg(run_dir)
        resume = ["--resume"] if os.path.isdir(os.path.join(run_dir, "checkpoints")) else []
        with open(os.path.join(work, f"life{len(lives)}.log"), "w") as log:
            proc = subprocess.Popen(command + resume, stdout=log, stderr=subprocess.STDOUT)
            samples, life_end = [], min(end, time.time() + args.kill_every)
            while time.time() < life_end and proc.poll() is None:
                time.sleep(5)
                value = rss_mb(proc.pid)
                if value:
                    samples.append(value)
            crashed = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        killed_nimg = latest_nimg(run_dir)
        regressions += int(killed_nimg < start_nimg)
        third = max(1, len(samples) // 3)
        life = dict(life=len(lives), start_nimg=start_nimg, checkpoint_nimg_at_kill=killed_nimg,
                    crashed_before_kill=crashed, rss_mb_early=round(sum(samples[:third]) / third, 1) if samples else None,
                    rss_mb_late=round(sum(samples[-third:]) / third, 1) if samples else None,
                    files_load=run_dir_loads(run_dir))
        lives.append(life)
        print(json.dumps(life), flush=True)
    late = [life["rss_mb_late"] for life in lives if life["rss_mb_late"]]
    print(json.dumps(dict(summary=True, lives=len(lives), final_nimg=latest_nimg(run_dir), regressions=regressions,
                          crashes=sum(life["crashed_before_kill"] for life in lives),
                          all_files_load=all(life["files_load"] for life in lives),
                          rss_mb_late_first_life=late[0] if late else None,
                          rss_mb_late_last_life=late[-1] if late else None)), flush=True)


if __name__ == "__main__":
    main()

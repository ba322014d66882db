"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train like one process with two replicas."""
import json
import os
import socket
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model=vgrow_pg", "--fmaps=8", "--batch_size=8", "--dur_nimg=64", "--tick_kimg=0.064",
        "--snapshot_kimg=0.128", "--num_row=2", "--num_line=2", "--total_kimg=0.192", "--seed=5"]

SPLIT_CPU = ("import tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
             "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
             "import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def final_weights(run_dir):
    with h5py.File(os.path.join(run_dir, "network-final.h5"), "r") as f:
        return {f"{net}/{k}": f[f"networks/{net}/{k}"][()] for net in ("G", "D") for k in f[f"networks/{net}"]}


def test_two_workers_match_one_process_with_two_replicas(digits8, tmp_path):
    train = os.path.join(ROOT, "train.py")
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = str(tmp_path / "multi")
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, train, *TINY, f"--dataset={digits8}", f"--run_dir={run_dir}",
             "--strategy=multi_worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "2 replica(s)" in outputs[0]
    assert os.path.isfile(os.path.join(run_dir, "network-final.h5"))
    assert not any(n.startswith("network-") and "worker" in n for n in os.listdir(run_dir))

    single_dir = str(tmp_path / "single")
    one = subprocess.run([sys.executable, "-c", SPLIT_CPU, train, *TINY, f"--dataset={digits8}",
                          f"--run_dir={single_dir}", "--strategy=mirrored"],
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    multi, single = final_weights(run_dir), final_weights(single_dir)
    assert multi.keys() == single.keys()
    worst = max(float(np.max(np.abs(multi[k] - single[k]))) for k in multi)
    assert worst < 1e-4, worst

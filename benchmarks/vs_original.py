"""VGrow-PG against the original PGVGrow `train.py`: same configuration, data and seed, interleaved runs.

    python benchmarks/vs_original.py --original=<PGVGrow checkout> [--total_kimg 100] [--pairs 2]
                                     [--flagfile configs/vgrow_pg/digits.cfg] [--mixed_precision]

Both sides train on the 1397 training digits of `vgrow_digits.py`'s split (16 px), at the flagfile's
fmaps, z_dim, batch size, dur_nimg and divergence, for --total_kimg, seed 1234; each run is a fresh
process, sides alternating (original, ours, original, ours, ...). Per run it prints one JSON line: CPU
seconds (user + system, all threads of the training process), wall seconds, peak RSS, and the Fréchet
distance of 400 samples of the final smoothed generator to the 400 held-out digits (the
`vgrow_digits.py` classifier features), then a table with the ratios original / ours.

The original runs from a copy of the checkout's `train.py`, `networks.py`, `utils.py` and `data_tool.py`
under TensorFlow 2 through `tf.compat.v1`; the copy differs from the checkout only in: the
`import tensorflow as tf` lines (`tensorflow.compat.v1`, v2 behaviour off); `num_features` and
`batchsize_dict` set to the flagfile's fmaps and batch size (the original hard-codes 256 feature maps and
its per-resolution batches); one `saver.save` after the training loop (it saves only every 600 kimg); and
NumPy 2's `frombuffer` standing in for the removed binary `np.fromstring` its reader calls, and a reshape
for `tf.layers.flatten` (tf.compat.v1.layers needs Keras 2). Its dataset
is our dataset's records rewritten in its layout (`<name>NN.tfrecords`, HWC uint8). Its final checkpoint
is read with our PGVGrow importer to be scored.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL_FILES = ("train.py", "networks.py", "utils.py", "data_tool.py")
NAME = "digits"
SEED = 1234

# Run in the original's copy: NumPy 2 lacks the binary np.fromstring its tfrecord reader uses, and
# tf.compat.v1.layers needs Keras 2 (its one use in the original is a plain flatten).
LAUNCHER = r'''
import runpy, sys
import numpy as np
np.fromstring = lambda data, dtype=float, *a, **k: np.frombuffer(data, dtype).copy()
import tensorflow.compat.v1 as tf
import types
tf.layers = types.SimpleNamespace(flatten=lambda x: tf.reshape(x, [-1, int(np.prod(x.shape.as_list()[1:]))]))
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
'''


def read_flagfile(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("--"):
            name, _, value = line[2:].partition("=")
            out[name] = value
    return out


def copy_original(checkout, work, fmaps, batch):
    """The original's four files in `work`, with the substitutions the module docstring lists."""
    os.makedirs(work, exist_ok=True)
    for name in ORIGINAL_FILES:
        text = open(os.path.join(checkout, name)).read()
        text, n = re.subn(r"^import tensorflow as tf$",
                          "import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()", text, flags=re.M)
        assert n == 1, f"{name}: expected one 'import tensorflow as tf' line"
        if name == "train.py":
            text, n1 = re.subn(r"num_features = 256", f"num_features = {fmaps}", text)
            text, n2 = re.subn(r"^batchsize_dict = \{.*\}$",
                               f"batchsize_dict = {{r: {batch} for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)}}",
                               text, flags=re.M)
            assert n1 == 1 and n2 == 1, "train.py: num_features / batchsize_dict lines not found"
            text = text.rstrip() + "\n\n    saver.save(sess, os.path.join(out_path, 'networks-final.ckpt'))\n"
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    with open(os.path.join(work, "launch.py"), "w") as f:
        f.write(LAUNCHER)


def write_original_dataset(ours, work):
    """Our dataset's levels as the original's `datasets/<name>/<name>NN.tfrecords` (HWC uint8)."""
    import tensorflow as tf
    out = os.path.join(work, "datasets", NAME)
    os.makedirs(out, exist_ok=True)
    for src in sorted(f for f in os.listdir(ours) if f.endswith(".tfrecords")):
        level = int(re.search(r"-r(\d+)\.tfrecords$", src).group(1))
        with tf.io.TFRecordWriter(os.path.join(out, f"{NAME}{level:02d}.tfrecords")) as writer:
            for record in tf.data.TFRecordDataset(os.path.join(ours, src)).as_numpy_iterator():
                ex = tf.train.Example.FromString(record)
                chw = np.frombuffer(ex.features.feature["data"].bytes_list.value[0], np.uint8).reshape(
                    ex.features.feature["shape"].int64_list.value)
                hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=hwc.shape)),
                    "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[hwc.tobytes()]))}))
                    .SerializeToString())


def run_measured(cmd, cwd, log):
    """Runs cmd; (CPU s of that process and its threads, wall s, peak RSS MB) from its own rusage."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[1]} failed; see {log}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", required=True, help="a checkout of PGVGrow")
    parser.add_argument("--flagfile", default=os.path.join(REPO, "configs", "vgrow_pg", "digits.cfg"))
    parser.add_argument("--total_kimg", type=float, default=100)
    parser.add_argument("--dur_kimg", type=float, help="kimg per stabilise / fade stage (default: the flagfile's)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--mixed_precision", action="store_true", help="ours with --mixed_precision")
    parser.add_argument("--work_dir")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="vs_original_")
    flags = read_flagfile(args.flagfile)
    fmaps, batch, z_dim = int(flags["fmaps"]), int(flags["batch_size"]), int(flags["z_dim"])
    dur_nimg = int(args.dur_kimg * 1000) if args.dur_kimg else int(flags["dur_nimg"])
    total_nimg = int(args.total_kimg * 1000)

    from benchmarks.vgrow_digits import HELD_OUT, digits_setup
    dataset, _, score, _, _ = digits_setup(work)
    original = os.path.join(work, "original")
    copy_original(args.original, original, fmaps, batch)
    write_original_dataset(dataset, original)

    import tensorflow as tf
    from vgrow_tf import snapshot
    from vgrow_tf.training import schedule
    latents = np.asarray(tf.random.stateless_normal([HELD_OUT, z_dim], seed=[7, 0]))
    final_lod = schedule.lod_at(total_nimg, 16, 4, dur_nimg)

    results = []
    for pair in range(args.pairs):
        for side in ("original", "ours"):
            if side == "original":
                results_dir = os.path.join(original, f"results{pair}")
                shutil.rmtree(results_dir, ignore_errors=True)
                cmd = [sys.executable, "launch.py", f"--dataset={NAME}", f"--divergence={flags['divergence']}",
                       f"--z_dim={z_dim}", f"--dur_nimg={dur_nimg}", f"--total_nimg={total_nimg}",
                       f"--seed={SEED}", f"--path={results_dir}"]
                cpu, wall, rss = run_measured(cmd, original, os.path.join(work, f"original{pair}.log"))
                snap = snapshot.load(os.path.join(results_dir, f"{NAME}-{flags['divergence']}", "networks-final.ckpt"))
                fakes = snap.generate(latents, lod=final_lod)
            else:
                run_dir = os.path.join(work, f"ours{pair}")
                shutil.rmtree(run_dir, ignore_errors=True)
                cmd = [sys.executable, os.path.join(REPO, "train.py"), f"--flagfile={args.flagfile}",
                       f"--dataset={dataset}", f"--run_dir={run_dir}", f"--total_kimg={args.total_kimg:g}",
                       f"--dur_nimg={dur_nimg}", f"--seed={SEED}",
                       f"--{'' if args.mixed_precision else 'no'}mixed_precision"]
                cpu, wall, rss = run_measured(cmd, work, os.path.join(work, f"ours{pair}.log"))
                fakes = snapshot.load(os.path.join(run_dir, "network-final.h5")).generate(latents)
            results.append(dict(side=side, pair=pair, kimg=args.total_kimg, cpu_s=round(cpu, 1),
                                wall_s=round(wall, 1), peak_rss_mb=round(rss), fd=round(score(np.asarray(fakes)), 2)))
            print(json.dumps(results[-1]), flush=True)
    print(f"\n| side | CPU s | wall s | peak RSS MB | Fréchet distance |  ({args.total_kimg:g} kimg, "
          f"{'ours mixed precision' if args.mixed_precision else 'float32'})")
    print("|---|---|---|---|---|")
    for side in ("original", "ours"):
        rows = [r for r in results if r["side"] == side]
        cell = lambda key: ", ".join(f"{r[key]:g}" for r in rows)  # noqa: E731
        print(f"| {side} | {cell('cpu_s')} | {cell('wall_s')} | {cell('peak_rss_mb')} | {cell('fd')} |")
    ratio = lambda key: [o[key] / u[key] for o, u in zip(results[0::2], results[1::2])]  # noqa: E731
    print(f"| original / ours | {', '.join(f'{r:.2f}' for r in ratio('cpu_s'))} | "
          f"{', '.join(f'{r:.2f}' for r in ratio('wall_s'))} | | |")


if __name__ == "__main__":
    main()

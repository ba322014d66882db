"""What a whole training run costs, phase by phase, against the bare cost of the same maths.

    python benchmarks/train_phases.py --models vgrow_pg --total_kimg 100            # with and without XLA
    python benchmarks/train_phases.py --models msg_stylegan glo scogan --total_kimg 10 --xla off
    python benchmarks/train_phases.py --models vgrow_pg --dataset datasets/mydata --config my.cfg
    python benchmarks/train_phases.py --models vgrow_pg --trees ../before . --repeats 2   # A, B, A, B

Each run is a fresh `train.py`-equivalent process on a model's digits demo flagfile (or --config), on a
synthetic 16 px RGB dataset of 3000 images unless --dataset is given. Per run it prints one JSON line:
  wall_s, cpu_s        the run from process start to the end of training (start-up, tracing, ticks,
                       snapshots; not the exit), wall and CPU seconds; process_s adds the bare-cost
                       timing and the exit,
  peak_rss_mb          the training process's peak resident memory (before the bare-cost timing),
  traces, xla_compiles, xla_compile_s   tf.function traces of the step, XLA compilations and their seconds,
  phases               per phase (VGrow-PG: stabilise/fade of each level; others: one phase):
                       kimg, first_s (the first iteration: tracing and compiling), steady_s_per_kimg and
                       steady_cpu_s_per_kimg (median iteration), bare_s_per_kimg (the D and G forward and
                       backward passes of one iteration alone in one compiled function, no optimizer, no
                       data, no bookkeeping; XLA-compiled when the trainer uses XLA), bare_cpu_s_per_kimg,
                       and overhead_pct = steady / bare - 1 (overhead_cpu_pct from CPU seconds),
  loop_s               time outside the training iterations (start-up, ticks, grids, snapshots).
then a table of all runs. CPU seconds are the robust figure on a shared machine: wall time stretches
with other processes' load, CPU time much less.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

STARTED = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join("configs", "{model}", "digits.cfg")
COMPILE_LINE = re.compile(r"^I\S+ (\S+) .*Compiled \S+ \d+ times, compile time: (\d+) us")


def log_time(stamp):
    """Epoch seconds of a TF C++ log line's time field (epoch before absl is set up, clock time after)."""
    if stamp.startswith("00:00:"):
        return float(stamp[6:])
    day = time.strftime("%Y-%m-%d", time.localtime())
    clock, _, micro = stamp.partition(".")
    return time.mktime(time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")) + float("0." + (micro or "0"))


# --- the parent: one subprocess per run -------------------------------------------------------------

def synthetic_rgb(work, count=3000, resolution=16, seed=0):
    """Two 16 px RGB datasets (SCoGAN needs a pair) with the same shapes as the demo data."""
    paths = []
    for name in ("rgb16", "rgb16b"):
        path = os.path.join(work, name)
        if not os.path.isdir(path):
            import numpy as np
            from vgrow_tf.data import tool
            rng = np.random.RandomState(seed + len(paths))
            smooth = rng.randint(0, 256, [count, 3, resolution // 4, resolution // 4]).astype(np.uint8)
            images = smooth.repeat(4, axis=2).repeat(4, axis=3)
            tool.write_dataset(path, tool.array_images(images, range(count)), count,
                               labels=np.eye(10, dtype=np.float32)[np.arange(count) % 10])
        paths.append(path)
    return paths


def run_one(model, config, datasets, total_kimg, xla, work, extra, tree=ROOT):
    out_json = os.path.join(work, f"result-{model}-{int(xla)}-{time.time_ns()}.json")
    config = os.path.join(tree, config or DEMO_CONFIG.format(model=model))
    args = [sys.executable, os.path.abspath(__file__), "--worker", out_json, f"--flagfile={config}",
            f"--dataset={datasets[0]}", f"--total_kimg={total_kimg}",
            f"--run_dir={os.path.join(work, os.path.basename(out_json)[:-5])}",
            "--jit_compile" if xla else "--nojit_compile"] + list(extra)
    if model == "scogan":
        args.append(f"--dataset_b={datasets[1]}")
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="0",
               TF_CPP_VMODULE="device_compilation_profiler=2")
    load, start = os.getloadavg()[0], time.time()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0 or not os.path.exists(out_json):
        return dict(model=model, xla=xla, error=proc.stderr[-2000:])
    result = json.load(open(out_json))
    compiles = [(log_time(m.group(1)), int(m.group(2)) / 1e6) for m in map(COMPILE_LINE.match, proc.stderr.splitlines())
                if m]
    compiles = [c for c in compiles if c[0] <= result["trained_at"]]  # not the bare-cost timing's
    for phase in result["phases"]:
        inside = [s for t, s in compiles if phase["start"] <= t <= phase["end"]]
        phase.update(xla_compiles=len(inside), xla_compile_s=round(sum(inside), 2))
        del phase["start"], phase["end"]
    return dict(model=model, xla=xla, total_kimg=total_kimg, config=os.path.relpath(config, tree), tree=tree,
                wall_s=round(result.pop("trained_at") - start, 1), cpu_s=result.pop("train_cpu_s"),
                peak_rss_mb=result.pop("worker_peak_rss_mb"), process_s=round(wall, 1), xla_compiles=len(compiles),
                xla_compile_s=round(sum(s for _, s in compiles), 2),
                load_1min=[round(load, 1), round(os.getloadavg()[0], 1)],
                **result)


def table(results):
    rows = ["| model | tree | XLA | wall s | CPU s | peak RSS MB | traces | XLA compiles (s) | phase | kimg | "
            "first s | steady s/kimg | CPU s/kimg | bare s/kimg | bare CPU s/kimg | overhead (CPU) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['model']} | | {r['xla']} | error | | | | | | | | | | | | |")
            continue
        for i, p in enumerate(r["phases"]):
            head = (f"| {r['model']} | {os.path.basename(r['tree'])} | {'on' if r['xla'] else 'off'} | "
                    f"{r['wall_s']} | {r['cpu_s']} | "
                    f"{r['peak_rss_mb']} | {r['traces']} | {r['xla_compiles']} ({r['xla_compile_s']}) ") if i == 0 \
                else "| | | | | | | | "
            rows.append(head + f"| {p['phase']} | {p['kimg']} | {p['first_s']} | {p['steady_s_per_kimg']} | "
                        f"{p['steady_cpu_s_per_kimg']} | {p.get('bare_s_per_kimg', '')} | "
                        f"{p.get('bare_cpu_s_per_kimg', '')} | "
                        f"{p.get('overhead_pct', '')}% ({p.get('overhead_cpu_pct', '')}%) |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgrow_pg", "msg_stylegan", "glo", "scogan"])
    parser.add_argument("--config", help="flagfile, relative to --tree (default: configs/<model>/digits.cfg)")
    parser.add_argument("--trees", nargs="+", default=[ROOT],
                        help="checkouts of this project to run, interleaved (e.g. before and after a change)")
    parser.add_argument("--dataset", nargs="+", help="dataset directory (two for SCoGAN); default synthetic")
    parser.add_argument("--total_kimg", type=float, default=100)
    parser.add_argument("--xla", choices=["both", "on", "off"], default="both")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work_dir")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    work = args.work_dir or tempfile.mkdtemp(prefix="vgrow_phases_")
    datasets = args.dataset or synthetic_rgb(work)
    datasets = datasets * 2 if len(datasets) == 1 else datasets
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]
    results = []
    for _ in range(args.repeats):
        for model in args.models:
            for xla in modes:
                for tree in args.trees:
                    result = run_one(model, args.config, datasets, args.total_kimg, xla, work, args.extra,
                                     os.path.abspath(tree))
                    print(json.dumps(result), flush=True)
                    results.append(result)
    print(table(results))


# --- the worker: one training run, instrumented -----------------------------------------------------

def phase_name(trainer, cur_nimg):
    lod_at = getattr(trainer, "_lod", None)
    if lod_at is None:
        return "train"
    import math
    lod = lod_at(cur_nimg)
    size = trainer.resolution >> int(math.floor(lod))
    return f"{'fade' if lod != math.floor(lod) else 'stab'} {size}px"


class Recorder:
    """Wraps Trainer.train_iteration: wall and CPU seconds of every iteration, by phase."""

    def __init__(self, trainer_cls):
        self.records, self.trainer = [], None
        original = trainer_cls.train_iteration
        recorder = self

        def timed(trainer, cur_nimg):
            recorder.trainer = trainer
            name = phase_name(trainer, cur_nimg)
            wall, cpu = time.time(), time.process_time()
            stats = original(trainer, cur_nimg)
            recorder.records.append((name, wall, time.time() - wall, time.process_time() - cpu, stats["nimg"]))
            return stats

        trainer_cls.train_iteration = timed

    def phases(self):
        import numpy as np
        out = []
        for name in dict.fromkeys(r[0] for r in self.records):
            rows = [r for r in self.records if r[0] == name]
            steady = rows[1:] or rows
            per_kimg = 1000.0 / rows[0][4]
            out.append(dict(phase=name, kimg=round(sum(r[4] for r in rows) / 1000, 1), iterations=len(rows),
                            first_s=round(rows[0][2], 2),
                            steady_s_per_kimg=round(float(np.median([r[2] for r in steady])) * per_kimg, 3),
                            steady_cpu_s_per_kimg=round(float(np.median([r[3] for r in steady])) * per_kimg, 3),
                            iterations_s=round(sum(r[2] for r in rows), 1),
                            start=rows[0][1], end=rows[-1][1] + rows[-1][2], nimg=rows[0][4],
                            first_nimg=int(sum(r[4] for r in self.records[:self.records.index(rows[0])]))))
        return out


def worker(out_json, argv):
    from absl import flags
    from vgrow_tf.training import options as options_lib
    options_lib.define_absl_flags(flags)
    flags.FLAGS(["train.py"] + argv)
    options = options_lib.options_from_absl(flags.FLAGS)
    from vgrow_tf import models
    from vgrow_tf.training import loop
    recorder = Recorder(models.get_family(options.model).Trainer)
    loop.train(options)
    trained, train_cpu = time.time(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    trainer = recorder.trainer
    phases = recorder.phases()
    for phase in phases:
        # what the trainer really uses: GLO and CoGAN/SCoGAN have no XLA path (they ignore the flag)
        jit = getattr(trainer, "jit_compile", options.jit_compile and options.model in XLA_MODELS)
        bare, bare_cpu = bare_seconds(options.model, trainer, phase["first_nimg"], phase["nimg"], jit)
        if bare:
            per_kimg = 1000.0 / phase["nimg"]
            phase.update(bare_s_per_kimg=round(bare * per_kimg, 3), bare_cpu_s_per_kimg=round(bare_cpu * per_kimg, 3))
            phase["overhead_pct"] = round((phase["steady_s_per_kimg"] / phase["bare_s_per_kimg"] - 1) * 100)
            phase["overhead_cpu_pct"] = round((phase["steady_cpu_s_per_kimg"] / phase["bare_cpu_s_per_kimg"] - 1) * 100)
        del phase["first_nimg"]
    counts = getattr(trainer, "trace_counts", getattr(trainer, "trace_count", None))
    loop_s = (trained - STARTED) - sum(p["iterations_s"] for p in phases)
    json.dump(dict(phases=phases, traces=sum(counts.values()) if isinstance(counts, dict) else counts,
                   trained_at=trained, train_cpu_s=round(train_cpu, 1), loop_s=round(loop_s, 1),
                   worker_peak_rss_mb=peak),
              open(out_json, "w"))


# --- the bare cost: the same D and G maths in one compiled function ---------------------------------

def bare_seconds(model, trainer, nimg, batch, jit, repeats=20):
    """Median (wall, CPU) seconds of one iteration's D and G forward/backward passes, alone in one tf.function."""
    import numpy as np
    import tensorflow as tf
    make = BARE.get(model)
    if make is None:
        return None, None
    fn, args = make(trainer, nimg, batch)
    fn = tf.function(fn, jit_compile=bool(jit))
    for _ in range(3):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(times)), float(np.median(cpu))


def _sum_grads(*grads):
    """One scalar that depends on every gradient (any nesting), so none of them is pruned."""
    import tensorflow as tf
    return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in tf.nest.flatten(grads) if g is not None])


def _bare_vgrow_pg(trainer, nimg, batch):
    import tensorflow as tf
    from vgrow_tf.training import schedule
    opts = trainer.options
    level, alpha = schedule.working_level(trainer._lod(nimg), trainer.resolution)
    d_steps = opts.T * opts.U
    res, ch = 2 ** level, trainer.arch["channels"]
    pool = batch // d_steps * opts.pool_size

    def bare(reals, z, keys, u, alpha):
        particles = trainer.G(z, level=level, alpha=alpha)
        grads = []
        for k in range(d_steps):
            dg, _ = trainer._d_grads(reals, particles, keys[k], u[k], level, alpha, batch // d_steps)
            grads += dg
            particles = trainer._move_particles(particles, level, alpha)
        for _ in range(opts.L):
            gg, _ = trainer._g_grads(z, particles, level, alpha)
            grads += gg
        return _sum_grads(grads)

    return bare, (tf.random.uniform([batch // d_steps, res, res, ch], -1, 1),
                  tf.random.normal([pool, trainer.arch["z_dim"]]),
                  tf.random.uniform([d_steps, pool]), tf.random.uniform([d_steps, batch // d_steps, 1, 1, 1]),
                  tf.constant(alpha, tf.float32))


def _bare_msg(trainer, nimg, batch):
    import tensorflow as tf
    images = next(iter(trainer._iterator()))["image"]
    z = tf.random.normal([batch, trainer.arch["z_dim"]])
    seed = tf.constant([1, 2], tf.int64)
    flip, gp_u = tf.random.uniform([batch]), tf.random.uniform([batch])

    def bare(images, z):
        dg, _ = trainer._d_grads(images, flip, z, seed, None, None, gp_u)
        gg, _, _ = trainer._g_grads(images, flip, z, seed, None, None)
        return _sum_grads(dg, gg)

    return bare, (images, z)


def _bare_glo(trainer, nimg, batch):
    batch_data = next(iter(trainer._get_iterator()))
    images, index = batch_data["image"], batch_data["index"]

    def bare(images, index):
        if trainer.options.z_update == "joint":
            g_grads, z_grad, _, _ = trainer._replica_joint(images, index)
        else:
            g_grads, _, _ = trainer._replica_g(images, index)
            z_grad = trainer._replica_z(images, index)
        return _sum_grads(g_grads, [z_grad])

    return bare, (images, index)


def _bare_scogan(trainer, nimg, batch):
    import tensorflow as tf
    it_a, it_b = trainer._iterators or trainer._make_iterators()
    real_a, real_b = next(it_a)["image"], next(it_b)["image"]
    per = trainer.batch
    z_dim, disc_iters = trainer.arch["z_dim"], trainer.options.disc_iters

    def bare(real_a, real_b):
        grads = []
        for _ in range(disc_iters):
            dg, _ = trainer._d_grads(real_a, real_b, tf.random.normal([per, z_dim]), tf.random.uniform([2, per]),
                                     tf.zeros([6, 2], tf.int64))
            grads.append(dg)
        gg, _ = trainer._g_grads(tf.random.normal([per, z_dim]), real_a, real_b, tf.zeros([3, 2], tf.int64))
        return _sum_grads(grads, gg)

    return bare, (real_a, real_b)


XLA_MODELS = ("vgrow_pg", "msg_stylegan", "msg_progan")
BARE = {"vgrow_pg": _bare_vgrow_pg, "msg_stylegan": _bare_msg, "msg_progan": _bare_msg, "glo": _bare_glo,
        "scogan": _bare_scogan, "cogan": _bare_scogan}


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3:])
        sys.stdout.flush()
        os._exit(0)  # everything is written; skip the interpreter's slow TensorFlow teardown
    else:
        main()

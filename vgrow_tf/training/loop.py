"""The training loop every model shares: ticks, TensorBoard, grids, snapshots, checkpoints, resume.

A model family supplies a Trainer (see CONTRIBUTING.md); this module owns the image count, the
run directory and everything written into it. Read `train()` top to bottom for the whole story.
"""
import collections
import os
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import models, snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.sampling import images as image_io
from vgrow_tf.training import options as options_lib
from vgrow_tf.training import run_dir as run_dir_lib
from vgrow_tf.training.steps import xla_pays
from vgrow_tf.training.strategy import is_chief, make_strategy


class StopRequested:
    """Turns SIGINT/SIGTERM into a flag the loop checks between iterations."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: give up at once
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\nReceived {signal.Signals(signum).name}: stopping after this iteration "
              "and writing a checkpoint...", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def configure_runtime(options):
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    if options.mixed_precision:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)


def default_run_dir(options, trainer_cls, dataset_name):
    suffix = trainer_cls.run_name_suffix(options) if hasattr(trainer_cls, "run_name_suffix") \
        else options.model
    return os.path.join(options.path, f"{dataset_name}-{suffix}")


class Progress:
    """Images seen and the counters that go with them, as checkpointed variables."""

    def __init__(self):
        self.cur_nimg = tf.Variable(0, dtype=tf.int64, trainable=False, name="cur_nimg")
        self.nonfinite_total = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_total")
        self.elapsed_sec = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed_sec")

    def items(self):
        return {"cur_nimg": self.cur_nimg, "nonfinite_total": self.nonfinite_total,
                "elapsed_sec": self.elapsed_sec}


def checkpointable(item):
    """Keras 3 layers do not expose weights held in Python lists to tf.train.Checkpoint, so networks
    are checkpointed as their weight lists (stable order: every family builds its networks the same way)."""
    if isinstance(item, keras.layers.Layer):
        return tf.train.Checkpoint(**{f"w{i:05d}": getattr(w, "value", w) for i, w in enumerate(item.weights)})
    return item


def _next_multiple(nimg, every_nimg):
    return (nimg // every_nimg + 1) * every_nimg


class CheckpointKeeper:
    """Numbered checkpoints `ckpt-<nimg>` in one directory, the newest `keep` of them listed and kept.

    Unlike tf.train.CheckpointManager, whose sweep deletes old files before it rewrites the state
    file (a SIGKILL in between leaves the state listing a deleted checkpoint), this writes the new
    checkpoint, then atomically rewrites the state to list only the kept ones, then deletes the rest:
    at every instant the state file lists complete checkpoints only.
    """

    def __init__(self, checkpoint, directory, keep):
        self.checkpoint, self.directory, self.keep = checkpoint, directory, keep

    @property
    def checkpoints(self):
        state = tf.train.get_checkpoint_state(self.directory)
        return list(state.all_model_checkpoint_paths) if state else []

    @property
    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self.directory)

    def save(self, checkpoint_number):
        self.checkpoint.save_counter.assign_add(1)  # as CheckpointManager does, so restores match it
        path = self.checkpoint.write(os.path.join(self.directory, f"ckpt-{checkpoint_number}"))
        listed = [p for p in self.checkpoints if p != path] + [path]
        kept = listed[-self.keep:] if self.keep else listed
        tf.compat.v1.train.update_checkpoint_state(  # atomic rename inside; relative names survive a move
            self.directory, os.path.basename(path), [os.path.basename(p) for p in kept])
        for stale in listed[:len(listed) - len(kept)]:
            for file in tf.io.gfile.glob(stale + ".index") + tf.io.gfile.glob(stale + ".data-?????-of-?????"):
                tf.io.gfile.remove(file)
        return path


class TrainingSession:
    """Holds the trainer, the run directory and the writers for one train() call."""

    def __init__(self, options, trainer, strategy, run_dir, chief):
        self.options, self.trainer, self.strategy = options, trainer, strategy
        self.run_dir, self.chief = run_dir, chief
        self.progress = Progress()
        items = {k: checkpointable(v) for k, v in trainer.checkpoint_items().items()}
        self.checkpoint = tf.train.Checkpoint(**items, **self.progress.items())
        ckpt_dir = run_dir_lib.checkpoint_dir(run_dir)
        if not chief:  # every worker must save (collective ops); non-chiefs write to a scratch dir
            ckpt_dir = os.path.join(run_dir, f".worker-{strategy.cluster_resolver.task_id}-ckpt")
        self.manager = CheckpointKeeper(self.checkpoint, ckpt_dir, options.keep_checkpoints)
        self.writer = tf.summary.create_file_writer(run_dir) if chief else tf.summary.create_noop_writer()

    # --- persistence -------------------------------------------------------------------------
    def restore(self):
        path = self.manager.latest_checkpoint
        resume_num = getattr(self.options, "resume_num", None)
        if resume_num is not None:  # the original --resume_training --resume_num N
            path = os.path.join(self.manager.directory, f"ckpt-{resume_num}")
            if not tf.io.gfile.exists(path + ".index"):
                raise UserError(f"no checkpoint at {resume_num} images in {self.manager.directory}; "
                                f"available: {', '.join(os.path.basename(p) for p in self.manager.checkpoints)}")
        self.checkpoint.restore(path).assert_existing_objects_matched()
        self.trainer.after_restore(int(self.progress.cur_nimg.numpy()))
        print(f"Resumed from {path} at {self.progress.cur_nimg.numpy() / 1000:.1f} kimg")

    def save_checkpoint(self):
        path = self.manager.save(checkpoint_number=int(self.progress.cur_nimg.numpy()))
        return path if self.chief else None

    def save_snapshot(self, name):
        if not self.chief:
            return None
        path = os.path.join(self.run_dir, name)
        snapshot.save(path, self.trainer.KIND_OF_RUN if hasattr(self.trainer, "KIND_OF_RUN")
                      else self.options.model, self.trainer.config(), self.trainer.networks(),
                      self.trainer.snapshot_arrays() if hasattr(self.trainer, "snapshot_arrays") else None)
        return path

    def save_grids(self, cur_nimg):
        if not self.chief:
            return
        kimg = cur_nimg // 1000
        rows, cols = self.options.num_row, self.options.num_line
        with self.writer.as_default(step=cur_nimg):
            for name, images in self.trainer.grids(rows * cols).items():
                path = os.path.join(self.run_dir, f"{name}{kimg:06d}.png")
                image_io.save_grid(path, images, rows, cols)
                tf.summary.image(name, image_io.to_uint8(images[: min(8, len(images))]), max_outputs=8)

    def run_metrics(self, snapshot_path, cur_nimg):
        if not (self.chief and self.options.metrics and snapshot_path):
            return
        from vgrow_tf.metrics import runner
        results = runner.evaluate_snapshot(snapshot_path, self.trainer.dataset_path, self.options.metrics,
                                           run_dir=self.run_dir)
        with self.writer.as_default(step=cur_nimg):
            for result in results:
                tf.summary.scalar(f"Metrics/{result['metric']}", result["value"])

    # --- the loop ----------------------------------------------------------------------------
    def run(self, total_nimg, tick_nimg, snapshot_nimg, stop):
        opts = self.options
        cur_nimg = int(self.progress.cur_nimg.numpy())
        next_tick = _next_multiple(cur_nimg, tick_nimg)
        next_snapshot = _next_multiple(cur_nimg, snapshot_nimg)
        tick_stats = collections.defaultdict(list)
        tick_start_time, tick_start_nimg = time.time(), cur_nimg
        consecutive_nonfinite, last_good_ckpt = 0, self.manager.latest_checkpoint
        if cur_nimg == 0:
            self.save_grids(0)
        while cur_nimg < total_nimg:
            stats = self.trainer.train_iteration(cur_nimg)
            cur_nimg += int(stats.pop("nimg"))
            if stats.pop("nonfinite", False):
                consecutive_nonfinite += 1
                self.progress.nonfinite_total.assign_add(1)
                if consecutive_nonfinite >= opts.max_nonfinite:
                    raise UserError(
                        f"{consecutive_nonfinite} consecutive steps had non-finite losses or gradients; "
                        f"stopping. Last good checkpoint: {last_good_ckpt or 'none'} "
                        "(lower the learning rate, or resume from it)")
            else:
                consecutive_nonfinite = 0
            for key, value in stats.items():
                tick_stats[key].append(float(value))

            done = cur_nimg >= total_nimg
            if cur_nimg >= next_tick or done or stop.signal:
                self.progress.cur_nimg.assign(cur_nimg)  # per tick, not per iteration (~70 us each)
                self.tick(cur_nimg, tick_stats, tick_start_time, tick_start_nimg)
                next_tick = _next_multiple(cur_nimg, tick_nimg)
                if cur_nimg >= next_snapshot or done or stop.signal:
                    if not stop.signal:
                        name = "network-final.h5" if done else f"network-snapshot-{cur_nimg // 1000:06d}.h5"
                        snapshot_path = self.save_snapshot(name)
                    last_good_ckpt = self.save_checkpoint() or last_good_ckpt
                    next_snapshot = _next_multiple(cur_nimg, snapshot_nimg)
                    if not stop.signal:
                        self.run_metrics(snapshot_path, cur_nimg)
                tick_stats.clear()
                self.progress.elapsed_sec.assign_add(time.time() - tick_start_time)
                tick_start_time, tick_start_nimg = time.time(), cur_nimg
                if stop.signal:
                    print(f"Stopped at {cur_nimg / 1000:.1f} kimg; checkpoint written. "
                          f"Continue with --resume --run_dir={self.run_dir}")
                    return cur_nimg
        self.writer.flush()
        return cur_nimg

    def tick(self, cur_nimg, tick_stats, tick_start_time, tick_start_nimg):
        elapsed = max(time.time() - tick_start_time, 1e-9)
        nimg = max(cur_nimg - tick_start_nimg, 1)
        means = {k: float(np.mean(v)) for k, v in tick_stats.items() if v}
        scalars = dict(self.trainer.progress_scalars(cur_nimg))
        line = [f"kimg {cur_nimg / 1000:9.1f}"]
        line += [f"{k} {v:g}" for k, v in scalars.items()]
        line += [f"{k} {v:8.4f}" for k, v in means.items()]
        line += [f"sec/kimg {elapsed / nimg * 1000:7.2f}", f"img/s {nimg / elapsed:8.1f}",
                 f"nonfinite {int(self.progress.nonfinite_total.numpy())}"]
        print("  ".join(line), flush=True)
        if not self.chief:
            return
        with self.writer.as_default(step=cur_nimg):
            for k, v in means.items():
                tf.summary.scalar(f"Loss/{k}", v)
            for k, v in scalars.items():
                tf.summary.scalar(f"Progress/{k}", v)
            tf.summary.scalar("Timing/sec_per_kimg", elapsed / nimg * 1000)
            tf.summary.scalar("Timing/img_per_sec", nimg / elapsed)
            tf.summary.scalar("Progress/nonfinite_steps", int(self.progress.nonfinite_total.numpy()))
        self.save_grids(cur_nimg)


def train(options):
    """Trains `options.model` as the options say; returns the run directory."""
    family = models.get_family(options.model)
    trainer_cls = family.Trainer
    strategy = make_strategy(options.strategy)  # first: multi-worker needs a fresh TF runtime
    configure_runtime(options)
    dataset_info = trainer_cls.inspect_data(options)
    chief = is_chief(strategy)
    run_dir = options.run_dir or default_run_dir(options, trainer_cls, dataset_info.name
                                                 if dataset_info else options.model)
    identity = {k: getattr(options, k) for k in run_dir_lib.IDENTITY_OPTIONS}
    identity.update(trainer_cls.identity(options) if hasattr(trainer_cls, "identity") else {})
    identity["dataset"] = dataset_info.path if dataset_info else options.dataset
    run_dir_lib.prepare(run_dir, options, identity, options.resume, chief)
    tee = run_dir_lib.Tee(os.path.join(run_dir, "log.txt")) if chief else None
    stdout, sys.stdout = sys.stdout, (tee or sys.stdout)
    try:
        with StopRequested() as stop:
            options.jit_compile = xla_pays(options, options.model)  # XLA only where it is faster
            trainer = trainer_cls(options, strategy, dataset_info)
            session = TrainingSession(options, trainer, strategy, run_dir, chief)
            if options.resume:
                session.restore()
            defaults = trainer.DEFAULTS
            total = options_lib.total_nimg(options, defaults["total_nimg"])
            tick_nimg = int((options.tick_kimg or defaults["tick_kimg"]) * 1000)
            snapshot_nimg = int((options.snapshot_kimg or defaults["snapshot_kimg"]) * 1000)
            print(f"Training {options.model} on {identity['dataset']} for {total / 1000:g} kimg "
                  f"in {run_dir} ({strategy.num_replicas_in_sync} replica(s))", flush=True)
            session.run(total, tick_nimg, snapshot_nimg, stop)
    finally:
        sys.stdout = stdout
    return run_dir

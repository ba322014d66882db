"""The training loop every model shares: ticks, TensorBoard, grids, snapshots, checkpoints, resume.

A model family supplies a Trainer (see CONTRIBUTING.md); this module owns the image count, the
run directory and everything written into it. Read `train()` top to bottom for the whole story.
"""
import collections
import contextlib
import errno
import glob
import math
import os
import shutil
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import models, snapshot
from vgrow_tf import data as data_lib
from vgrow_tf.errors import Interrupted, UserError, is_disk_full
from vgrow_tf.sampling import images as image_io
from vgrow_tf.training import eta as eta_lib
from vgrow_tf.training import options as options_lib
from vgrow_tf.training import precision
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


def configure_runtime(options, trainer_cls=None):
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    precision.configure(options.mixed_precision, float16_ok=getattr(trainer_cls, "FLOAT16", True))


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


GRID_GAP, GRID_GAP_VALUE = image_io.GRID_GAP, image_io.GRID_GAP_VALUE


def _next_multiple(nimg, every_nimg):
    return (nimg // every_nimg + 1) * every_nimg


class CheckpointKeeper:
    """Numbered checkpoints `ckpt-<nimg>` in one directory, the newest `keep` of them listed and kept.

    Unlike tf.train.CheckpointManager, whose sweep deletes old files before it rewrites the state
    file (a SIGKILL in between leaves the state listing a deleted checkpoint), this writes the new
    checkpoint, then atomically rewrites the state to list only the kept ones, then deletes the rest:
    at every instant the state file lists complete checkpoints only.

    The state file names checkpoints by file name only and is read the same way, so a run directory
    given relative, absolute, with `./` or `..`, or moved after training resumes and prunes alike.
    """

    STATE_FILE = "checkpoint"  # the name tf.train.latest_checkpoint reads

    def __init__(self, checkpoint, directory, keep):
        self.checkpoint, self.directory, self.keep = checkpoint, directory, keep

    def _names(self):
        """(latest, listed) file names from the state file; any directory part in it is ignored."""
        state = tf.train.get_checkpoint_state(self.directory, self.STATE_FILE)
        if not state or not state.model_checkpoint_path:
            return None, []
        return (os.path.basename(state.model_checkpoint_path),
                [os.path.basename(p) for p in state.all_model_checkpoint_paths])

    @property
    def checkpoints(self):
        return [os.path.join(self.directory, name) for name in self._names()[1]]

    @property
    def latest_checkpoint(self):
        latest = self._names()[0]
        path = latest and os.path.join(self.directory, latest)
        return path if path and tf.io.gfile.exists(path + ".index") else None

    def _write_state(self, latest, kept):
        lines = [f'model_checkpoint_path: "{latest}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in kept]
        state = os.path.join(self.directory, self.STATE_FILE)
        tmp = f"{state}.tmp-{os.getpid()}"
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        tf.io.gfile.rename(tmp, state, overwrite=True)  # atomic on local and POSIX file systems

    def find(self, number):
        """The kept checkpoint at `number` images (the original's --resume_num), else the newest one
        whose kimg, as in snapshot names, is `number`."""
        names = [os.path.basename(p) for p in self.checkpoints]
        nimgs = [int(n.rsplit("-", 1)[1]) for n in names]
        if number in nimgs:
            return os.path.join(self.directory, f"ckpt-{number}")
        by_kimg = [n for n in nimgs if n // 1000 == number]
        if by_kimg:
            return os.path.join(self.directory, f"ckpt-{max(by_kimg)}")
        available = ", ".join(f"{n} ({n // 1000} kimg)" for n in nimgs) or "none"
        raise UserError(f"--resume_num {number}: no checkpoint at {number} images or {number} kimg in "
                        f"{self.directory}; available: {available}")

    def save(self, checkpoint_number):
        self.checkpoint.save_counter.assign_add(1)  # as CheckpointManager does, so restores match it
        name = f"ckpt-{checkpoint_number}"
        try:
            path = self.checkpoint.write(os.path.join(self.directory, name))
        except Exception:
            self._remove_partial(name)
            raise
        listed = [n for n in self._names()[1] if n != name] + [name]
        kept = listed[-self.keep:] if self.keep else listed
        self._write_state(name, kept)
        for stale in listed[:len(listed) - len(kept)]:
            prefix = os.path.join(self.directory, stale)
            for file in tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-?????-of-?????"):
                tf.io.gfile.remove(file)
        return path

    def _remove_partial(self, name):
        """What a failed write of checkpoint `name` left: TensorFlow's `<name>_temp` folder, and its files
        unless the state lists them (then a later --resume finds them unreadable and goes back one)."""
        prefix = os.path.join(self.directory, name)
        shutil.rmtree(prefix + "_temp", ignore_errors=True)
        if name not in self._names()[1]:
            for file in glob.glob(prefix + ".index*") + glob.glob(prefix + ".data-*"):
                os.remove(file)


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
        # every worker resumes from the chief's checkpoints: a worker killed during a save may lack the newest
        self.resume_source = CheckpointKeeper(self.checkpoint, run_dir_lib.checkpoint_dir(run_dir),
                                            options.keep_checkpoints)
        self.writer = tf.summary.create_file_writer(run_dir) if chief else tf.summary.create_noop_writer()

    def close(self):
        self.writer.close()

    # --- persistence -------------------------------------------------------------------------
    def restore(self):
        """Restores the newest readable checkpoint (the one --resume_num names, if given); an unreadable
        one (emptied, truncated, cut short by a full disk) is named and the one before it is tried."""
        resume_num = getattr(self.options, "resume_num", None)
        if resume_num is not None:  # the original --resume_training --resume_num N
            candidates = [self.resume_source.find(resume_num)]
        else:
            candidates = self.resume_source.checkpoints[::-1]
        if not candidates:
            raise UserError(f"--resume: no complete checkpoint in {self.resume_source.directory}; "
                            "start a new run without --resume")
        for path in candidates:
            problem = self._try_restore(path)
            if problem is None:
                break
            print(f"Checkpoint {path} is unreadable ({problem}); "
                  f"{'trying the one before it' if path != candidates[-1] else 'none left to try'}", flush=True)
        else:
            raise UserError(f"--resume: no readable checkpoint in {self.resume_source.directory}; "
                            "copy the run from a backup or start a new run without --resume")
        self.trainer.after_restore(int(self.progress.cur_nimg.numpy()))
        print(f"Resumed from {path} at {self.progress.cur_nimg.numpy() / 1000:.1f} kimg")

    def _try_restore(self, path):
        """None when the checkpoint at `path` restored completely, else what was wrong with it."""
        if not tf.io.gfile.exists(path + ".index"):
            return "its .index file is missing"
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError, ValueError, AssertionError) as e:
            # TF's reader raises IndexError for an emptied .data file, DataLossError for a bad index
            text = getattr(e, "message", None) or str(e) or type(e).__name__
            return text.strip().splitlines()[0][:200]
        return None

    def start_from(self, source, model):
        """--resume_from: a new run starting from a trained model's networks (`model`, loaded by
        `load_start_model`). A family that can take more from an original's file (PGVGrow: Adam state,
        image count) reads it itself (`Trainer.start_from`)."""
        from vgrow_tf.interop import convert

        if hasattr(self.trainer, "start_from") and self.trainer.start_from_reads(source.source_format):
            self.progress.cur_nimg.assign(self.trainer.start_from(source.path))
        else:
            if hasattr(self.trainer, "check_source_config"):  # settings that no weight shape reveals
                self.trainer.check_source_config(model.config, source.path)
            convert.copy_networks(model.networks, self.trainer.networks())
        print(f"Starting from {source.path} at {self.progress.cur_nimg.numpy() / 1000:.1f} kimg")

    @contextlib.contextmanager
    def writing(self, path):
        """A full disk while writing `path`: one line naming it and the checkpoint to resume from."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - OSError or TensorFlow's ResourceExhaustedError
            if not is_disk_full(e):
                raise
            latest = self.manager.latest_checkpoint
            resume = (f"the last checkpoint, {latest}, is intact: free space (or copy the run directory "
                      "elsewhere) and continue with --resume") if latest else "no checkpoint was written yet"
            raise UserError(f"the disk is full while writing {path}; {resume}") from None

    def save_checkpoint(self, cur_nimg, clock):
        """A checkpoint at `cur_nimg` images; the progress counters (kept on the host between ticks)
        are written into the checkpointed variables first."""
        self.progress.cur_nimg.assign(cur_nimg)
        self.progress.elapsed_sec.assign(clock.elapsed())
        with self.writing(os.path.join(self.manager.directory, f"ckpt-{cur_nimg}")):
            path = self.manager.save(checkpoint_number=cur_nimg)
        return path if self.chief else None

    def flush_events(self):
        """Flushes TensorBoard's events file. Its writer drops what a full disk refuses without a word,
        so an events file that did not grow on a full disk is reported here."""
        if not self.chief:
            return
        events = glob.glob(os.path.join(self.run_dir, f"events.out.tfevents.*.{os.getpid()}.*"))
        size = os.path.getsize(events[0]) if events else None
        self.writer.flush()
        if events and os.path.getsize(events[0]) == size:
            stat = os.statvfs(self.run_dir)
            if stat.f_bavail * stat.f_frsize < (1 << 20):
                with self.writing(events[0]):
                    raise OSError(errno.ENOSPC, "No space left on device", events[0])

    def save_snapshot(self, name):
        if not self.chief:
            return None
        path = os.path.join(self.run_dir, name)
        with self.writing(path):
                snapshot.save(path, self.trainer.KIND_OF_RUN if hasattr(self.trainer, "KIND_OF_RUN")
                          else self.options.model, self.trainer.config(), self.trainer.networks(),
                          self.trainer.snapshot_arrays() if hasattr(self.trainer, "snapshot_arrays") else None)
        return path

    def save_grids(self, cur_nimg):
        """Writes the trainer's grids; returns whether it has any."""
        if not self.chief:
            return False
        kimg = cur_nimg // 1000
        rows, cols = self.options.num_row, self.options.num_line
        grids = self.trainer.grids(rows * cols)
        with self.writer.as_default(step=cur_nimg):
            for name, images in grids.items():
                path = os.path.join(self.run_dir, f"{name}{kimg:06d}.png")
                with self.writing(path):
                    image_io.save_grid(path, images, rows, cols, GRID_GAP, GRID_GAP_VALUE)
                tf.summary.image(name, image_io.to_uint8(images[: min(8, len(images))]), max_outputs=8)
        return bool(grids)

    def save_reals(self):
        """`reals.png`: training images in the layout of the fakes grids, to compare them with (two-domain
        models: A and B images alternating, as their fakes show G1(z) | G2(z))."""
        paths = [p for p in (getattr(self.trainer, "dataset_path", None),
                             getattr(self.trainer, "dataset_b_path", None)) if p]
        if not paths:
            return
        rows, cols = self.options.num_row, self.options.num_line
        resolution = getattr(self.trainer, "resolution", None)
        count = -(-rows * cols // len(paths))
        domains = []
        for domain_path in paths:
            dataset = data_lib.load_dataset(domain_path, count, resolution=resolution, shuffle=False, repeat=True)
            for batch in dataset.take(1):  # iterated to its end, so no reader thread outlives this
                domains.append(batch["image"].numpy())
        channels = max(images.shape[-1] for images in domains)
        domains = [np.repeat(images, channels // images.shape[-1], axis=-1) for images in domains]
        path = os.path.join(self.run_dir, "reals.png")
        with self.writing(path):
            image_io.save_grid(path, image_io.interleave(*domains), rows, cols, GRID_GAP, GRID_GAP_VALUE)

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
        """Trains to `total_nimg`; returns the final snapshot's path, or None when a signal stopped it."""
        opts = self.options
        cur_nimg = int(self.progress.cur_nimg.numpy())
        next_tick = _next_multiple(cur_nimg, tick_nimg)
        next_snapshot = _next_multiple(cur_nimg, snapshot_nimg)
        tick_stats = collections.defaultdict(list)
        segments = self.trainer.schedule_segments(total_nimg) if hasattr(self.trainer, "schedule_segments") \
            else None
        clock = TickClock(cur_nimg, total_nimg, float(self.progress.elapsed_sec.numpy()), segments)
        consecutive_nonfinite, last_good_ckpt = 0, self.manager.latest_checkpoint
        snapshot_path = None
        if cur_nimg == 0 and self.save_grids(0):
            self.save_reals()
        while cur_nimg < total_nimg:
            stats = self.trainer.train_iteration(cur_nimg)
            iteration_start, cur_nimg = cur_nimg, cur_nimg + int(stats.pop("nimg"))
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

            if stop.signal:  # no tick line: a partial tick's timings would mislead
                path = self.save_checkpoint(cur_nimg, clock)
                print(f"Stopped at {cur_nimg / 1000:.1f} kimg; checkpoint written to {path}. "
                      f"Continue with --resume --run_dir={self.run_dir}", flush=True)
                self.writer.flush()
                return None
            done = cur_nimg >= total_nimg
            if cur_nimg >= next_tick or done:
                self.progress.cur_nimg.assign(cur_nimg)  # per tick, not per iteration (~70 us each)
                # ticks are numbered by the boundaries crossed; a last, partial one gets the next number
                number = cur_nimg // tick_nimg + (0 if cur_nimg >= next_tick else 1)
                self.tick(cur_nimg, number, tick_stats, clock, iteration_start)
                next_tick = _next_multiple(cur_nimg, tick_nimg)
                if cur_nimg >= next_snapshot or done:
                    name = "network-final.h5" if done else f"network-snapshot-{cur_nimg // 1000:06d}.h5"
                    snapshot_path = self.save_snapshot(name)
                    last_good_ckpt = self.save_checkpoint(cur_nimg, clock) or last_good_ckpt
                    next_snapshot = _next_multiple(cur_nimg, snapshot_nimg)
                    self.run_metrics(snapshot_path, cur_nimg)
                tick_stats.clear()
                clock.start_tick(cur_nimg)
        self.progress.elapsed_sec.assign(clock.elapsed())
        self.flush_events()
        return snapshot_path or os.path.join(self.run_dir, "network-final.h5")

    def tick(self, cur_nimg, number, tick_stats, clock, last_iteration_nimg=None):
        timing = clock.end_tick(cur_nimg, last_iteration_nimg)
        means = {k: float(np.mean(v)) for k, v in tick_stats.items() if v}
        scalars = dict(self.trainer.progress_scalars(cur_nimg))
        line = [f"tick {number:<5d}", f"kimg {cur_nimg / 1000:9.1f}"]
        line += [f"{k} {v:g}" for k, v in scalars.items()]
        line += [f"time {format_time(timing['elapsed'])}", f"sec/tick {timing['sec_per_tick']:.1f}",
                 f"sec/kimg {timing['sec_per_kimg']:.2f}", f"ETA {format_eta(timing['eta'])}"]
        line += [f"{k} {v:.1f}GiB" for k, v in memory_gib().items()]
        line += [f"{k} {v:8.4f}" for k, v in means.items()]
        line += [f"nonfinite {int(self.progress.nonfinite_total.numpy())}"]
        print("  ".join(line), flush=True)
        if not self.chief:
            return
        with self.writer.as_default(step=cur_nimg):
            for k, v in means.items():
                tf.summary.scalar(f"Loss/{k}", v)
            for k, v in scalars.items():
                tf.summary.scalar(f"Progress/{k}", v)
            tf.summary.scalar("Timing/sec_per_kimg", timing["sec_per_kimg"])
            tf.summary.scalar("Timing/img_per_sec", 1000.0 / max(timing["sec_per_kimg"], 1e-9))
            tf.summary.scalar("Progress/nonfinite_steps", int(self.progress.nonfinite_total.numpy()))
        self.save_grids(cur_nimg)
        self.flush_events()


def format_time(seconds):
    """StyleGAN's compact durations: 42s, 12m 05s, 3h 07m, 2d 04h."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s // 60 % 60:02d}m"
    return f"{s // 86400}d {s // 3600 % 24:02d}h"


def format_eta(seconds):
    """None (no tick of this process measured yet): says so rather than extrapolating start-up time."""
    return "measuring" if seconds is None else format_time(seconds)


_GPUS = None


def memory_gib():
    """{"cpumem": resident memory of this process, ["gpumem": peak of GPU 0]} in GiB."""
    global _GPUS
    out = {}
    try:
        with open("/proc/self/statm") as f:
            out["cpumem"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError, IndexError):
        import resource
        out["cpumem"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
    if _GPUS is None:
        _GPUS = tf.config.list_logical_devices("GPU")
    if _GPUS:
        out["gpumem"] = tf.config.experimental.get_memory_info(_GPUS[0].name)["peak"] / 2 ** 30
    return out


class TickClock:
    """Wall time of the run (earlier processes of a resumed run included), of the tick, and the ETA.

    The ETA adds up the schedule still to run (`trainer.schedule_segments`, e.g. VGrow-PG's growing
    resolutions) at each level's sec/kimg measured in this process (training/eta.py); it is None until
    a tick after the process's first (which is mostly tracing) has been timed.
    """

    def __init__(self, cur_nimg, total_nimg, elapsed_before, segments=None):
        self.total_nimg, self.elapsed_before = total_nimg, elapsed_before
        self.segments = segments or eta_lib.single_level(total_nimg)
        self.levels = eta_lib.LevelTimer(self.segments)
        self.process_start = time.time()
        self.tick_start, self.tick_start_nimg = self.process_start, cur_nimg

    def elapsed(self):
        return self.elapsed_before + time.time() - self.process_start

    def end_tick(self, cur_nimg, last_iteration_nimg=None):
        sec_per_tick = time.time() - self.tick_start
        sec_per_kimg = sec_per_tick / max(cur_nimg - self.tick_start_nimg, 1) * 1000
        self.levels.add_tick(self.tick_start_nimg, cur_nimg, sec_per_tick, last_iteration_nimg)
        eta = eta_lib.estimate_eta(cur_nimg, self.total_nimg, self.segments, self.levels.rates())
        return dict(elapsed=self.elapsed(), sec_per_tick=sec_per_tick, sec_per_kimg=sec_per_kimg, eta=eta)

    def start_tick(self, cur_nimg):
        self.tick_start, self.tick_start_nimg = time.time(), cur_nimg


def check_length(session, total_nimg, start):
    """A run that starts at or past its length: refused when it starts from another model (its image count
    comes from there, e.g. a PGVGrow checkpoint at 2400 kimg), said so when --resume finds it finished."""
    cur_nimg = int(session.progress.cur_nimg.numpy())
    if cur_nimg < total_nimg or cur_nimg == 0:
        return
    if start:
        raise UserError(f"--resume_from {start[0].path} is already at {cur_nimg / 1000:g} kimg, past the "
                        f"training length of {total_nimg / 1000:g} kimg; give a larger --total_kimg "
                        f"(e.g. --total_kimg={math.ceil(cur_nimg / 1000) + 100})")
    print(f"The run is already at {cur_nimg / 1000:g} kimg, the training length of {total_nimg / 1000:g} "
          "kimg: nothing to train (give a larger --total_kimg to continue)", flush=True)


def load_start_model(options, family, dataset_info):
    """--resume_from: (resolved source, loaded model), with the run's architecture options taken from the
    model (options_lib.adopt_architecture); refuses a model of another kind or channel count."""
    path = options.resume_from
    if hasattr(family.Trainer, "snapshot_arrays"):  # GLO: its latent table belongs to its training set
        raise UserError(f"--resume_from is not supported for --model={options.model}")
    source = snapshot.resolve(path, "--resume_from")
    model = snapshot.load(source.path, source_format=source.source_format, flag="--resume_from")
    if model.kind != options.model:
        raise UserError(f"--resume_from {path} is a '{model.kind}' model; this run trains --model={options.model}")
    channels = model.config.get("channels")
    if channels and dataset_info and not getattr(options, "dataset_b", None) and dataset_info.channels != channels:
        raise UserError(f"--resume_from {path} makes {channels}-channel images; dataset {dataset_info.path} has "
                        f"{dataset_info.channels} channel(s): use a dataset of the model's kind of images")
    taken = options_lib.adopt_architecture(options, path, model.config, getattr(family, "OPTION_OF_CONFIG", None))
    if taken:
        print(f"--resume_from {path}: taking its architecture: "
              + " ".join(f"--{k}={v}" for k, v in taken.items()), flush=True)
    return source, model


def train(options):
    """Trains `options.model` as the options say; returns the run directory.

    Raises `errors.Interrupted` after writing a checkpoint when SIGINT/SIGTERM asked it to stop.
    """
    family = models.get_family(options.model)
    trainer_cls = family.Trainer
    strategy = make_strategy(options.strategy)  # first: multi-worker needs a fresh TF runtime
    configure_runtime(options, trainer_cls)
    dataset_info = trainer_cls.inspect_data(options)
    start = None
    if getattr(options, "resume_from", None) and not options.resume:
        start = load_start_model(options, family, dataset_info)
    chief = is_chief(strategy)
    run_dir, note = run_dir_lib.choose(options.run_dir or default_run_dir(
        options, trainer_cls, dataset_info.name if dataset_info else options.model), options.resume,
        reuse_unfinished=isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))
    identity = {k: getattr(options, k) for k in run_dir_lib.IDENTITY_OPTIONS}
    identity.update(trainer_cls.identity(options) if hasattr(trainer_cls, "identity") else {})
    identity["dataset"] = dataset_info.path if dataset_info else options.dataset
    before = run_dir_lib.entries(run_dir)
    lock, notes = run_dir_lib.prepare(run_dir, options, identity, options.resume, chief)
    tee = run_dir_lib.Tee(os.path.join(run_dir, "log.txt")) if chief else None
    stdout, sys.stdout = sys.stdout, (tee or sys.stdout)
    session, training = None, False
    try:
        with StopRequested() as stop:
            for line in [note] + notes if note else notes:
                print(line, flush=True)
            options.jit_compile = xla_pays(options, options.model)  # XLA only where it is faster
            trainer = trainer_cls(options, strategy, dataset_info)
            session = TrainingSession(options, trainer, strategy, run_dir, chief)
            if options.resume:
                session.restore()
            elif start:
                session.start_from(*start)
            defaults = trainer.DEFAULTS
            total = options_lib.total_nimg(options, defaults["total_nimg"])
            check_length(session, total, start)
            tick_nimg = int((options.tick_kimg or defaults["tick_kimg"]) * 1000)
            snapshot_nimg = int((options.snapshot_kimg or defaults["snapshot_kimg"]) * 1000)
            print(f"Training {options.model} on {identity['dataset']} for {total / 1000:g} kimg "
                  f"in {run_dir} ({strategy.num_replicas_in_sync} replica(s))", flush=True)
            training = True
            final = session.run(total, tick_nimg, snapshot_nimg, stop)
            if final is None:
                raise Interrupted(stop.signal)
            elapsed = float(session.progress.elapsed_sec.numpy())
            print(f"Done: {int(session.progress.cur_nimg.numpy()) / 1000:g} kimg in {format_time(elapsed)}; "
                  f"final snapshot {final}", flush=True)
    except (tf.errors.UnavailableError, tf.errors.CancelledError) as e:
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise
        raise UserError(_lost_worker_message(e, session)) from None
    except tf.errors.DataLossError as e:  # a shard corrupt inside (its size was checked at start)
        raise data_lib.reader.data_loss_error([identity["dataset"], identity.get("dataset_b")], e) \
            from None
    except UserError:
        if chief and not training:  # refused before training: leave the run directory as it was
            _close(session, tee)
            run_dir_lib.undo(run_dir, before)
        raise
    finally:
        _close(session, tee)
        sys.stdout = stdout
        if lock:
            lock.release()
    return run_dir


def _lost_worker_message(error, session):
    """One line for a multi-worker run whose collective ops were aborted because a peer stopped."""
    import re
    text = str(getattr(error, "message", error))
    peers = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", text.split("unhealthy", 1)[-1])))
    who = f"worker {', '.join(peers)} stopped answering" if peers else "another worker stopped"
    latest = session and session.resume_source.latest_checkpoint
    return (f"{who} (killed or crashed), so this worker stops too; start every worker again with --resume "
            f"to continue from the last checkpoint{f' ({latest})' if latest else ''}")


def _close(session, tee):
    if session is not None:
        session.close()
    if tee:
        tee.close()

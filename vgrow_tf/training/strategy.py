"""Distribution strategies from the --strategy flag."""
import os

import tensorflow as tf

from vgrow_tf.errors import UserError


def make_strategy(name="auto"):
    if name == "multi_worker":  # before anything lists devices: collectives need a fresh runtime
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                            "(see README, 'Training on several machines')")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise UserError(f"unknown --strategy {name}")


def is_chief(strategy):
    """True on the process that writes files: always, except non-chief multi-worker processes."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0) \
        or task_type is None


def replica_slice(global_tensor):
    """The slice of a global-batch tensor that belongs to the calling replica (inside strategy.run)."""
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    per = tf.shape(global_tensor)[0] // n
    return global_tensor[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per]

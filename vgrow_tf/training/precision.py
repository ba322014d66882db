"""Which Keras dtype policy `--mixed_precision` gets on this machine, and why.

GPUs compute in float16 with dynamic loss scaling (`steps.make_adam` wraps Adam in a
LossScaleOptimizer); a family whose training cannot take float16 (GLO's latent table) gets bfloat16 on a
GPU that has it (compute capability 8.0 or newer), else float32. CPUs compute in bfloat16 only where
they have bfloat16 units (x86 flags `avx512_bf16` or `amx_bf16`): elsewhere TensorFlow emulates
bfloat16 and it is slower than float32, so such CPUs train in float32 and say so in one line.
Variables, optimizer state, EMA weights and snapshots stay float32 under every policy.
"""
import keras
import tensorflow as tf

CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def cpu_flags(cpuinfo=CPUINFO):
    """The CPU feature flags the kernel reports (an empty set where there is no /proc/cpuinfo)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_has_bfloat16(flags):
    return any(flag in flags for flag in CPU_BFLOAT16_FLAGS)


def gpu_has_bfloat16(gpus):
    """Whether every GPU is Ampere or newer (compute capability >= 8.0), where bfloat16 runs natively."""
    def capability(gpu):
        return tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
    return bool(gpus) and all(capability(gpu) >= (8, 0) for gpu in gpus)


def choose_policy(gpu, gpu_bfloat16, cpu_bfloat16, float16_ok=True):
    """(policy name, note or None) for --mixed_precision; the note says why it is not a mixed policy."""
    if gpu:
        if float16_ok:
            return "mixed_float16", None
        if gpu_bfloat16:
            return "mixed_bfloat16", None
        return "float32", ("--mixed_precision: this model does not train in float16 and the GPU has no "
                           "bfloat16 units (compute capability < 8.0); training in float32")
    if cpu_bfloat16:
        return "mixed_bfloat16", None
    return "float32", (f"--mixed_precision: this CPU has no bfloat16 units (flags {' / '.join(CPU_BFLOAT16_FLAGS)}"
                       " absent); training in float32")


def configure(mixed_precision, float16_ok=True):
    """Sets the global Keras policy for a run (float32 without --mixed_precision, so that one process
    training several runs never inherits the previous run's policy); returns the policy name."""
    policy, note = "float32", None
    if mixed_precision:
        gpus = tf.config.list_physical_devices("GPU")
        policy, note = choose_policy(bool(gpus), gpus and gpu_has_bfloat16(gpus),
                                     cpu_has_bfloat16(cpu_flags()), float16_ok)
    if note:
        print(note, flush=True)
    keras.mixed_precision.set_global_policy(policy)
    return policy

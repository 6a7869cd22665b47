"""Where a training runs: params' `devices` as a tf.distribute strategy, and the two changes that
make a training over several replicas the same training as on one device.

    devices: auto   every GPU TensorFlow sees (MirroredStrategy over 2+), else the CPU
             cpu    the CPU, even when GPUs are visible
             <n>    the first n GPUs; on a machine without GPU, n logical devices of the CPU
                    (not faster: it runs the multi-device code path, e.g. to test it)

Under MirroredStrategy each of the R replicas gets a slice of the global batch (`batch_size`
images) and the gradients are summed across replicas. Keras alone would then differ from one
device in two ways; `share_global_batch()` removes both:
- batch normalisation would normalise each replica's slice by its own statistics: its layers
  are made `synchronized` (mean and variance over the global batch);
- dropout would draw the *same* mask in every replica (one seed state, mirrored), so images i
  and i + B/R would lose the same units: each replica instead takes its slice of one mask drawn
  for the whole global batch, the mask one device draws.
batch_size must be a multiple of R (check_batch_size). What remains is float order (sums over
replicas, E[x^2] - E[x]^2 for the batch variance), and Keras's rule for the loss of the last batch
of an epoch when it does not split evenly: each replica's mean counts 1/R, not its share of images
(the center-loss trainer weights by share). The saved model is a plain Keras model again.
"""
from __future__ import annotations

import types

from study.errors import StageError


class DevicesError(StageError):
    """`devices` asks for more GPUs than TensorFlow sees or comes after TensorFlow started, or
    batch_size does not split evenly over the replicas: a one-line stage error."""


def strategy(devices):
    """The tf.distribute strategy for params' `devices` (see the module docstring). Call it before
    TensorFlow creates its devices (any tensor or model): it hides GPUs or splits the CPU."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if isinstance(devices, int) and gpus and devices > len(gpus):
        raise DevicesError(f"params.yaml: devices = {devices} is not allowed here; allowed: auto, cpu or a "
                           f"number in [1, {len(gpus)}] (TensorFlow sees {len(gpus)} GPU{'s' * (len(gpus) > 1)})")
    try:
        if devices == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        elif isinstance(devices, int) and gpus:
            tf.config.set_visible_devices(gpus[:devices], "GPU")
        elif isinstance(devices, int) and devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:  # "... cannot be modified after being initialized"
        raise DevicesError(f"devices = {devices!r}: TensorFlow had already started in this process; "
                           f"choose the devices before building a model") from None
    if devices == "cpu":
        return tf.distribute.get_strategy()
    replicas = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(replicas) < 2 or (devices == "auto" and not gpus):
        return tf.distribute.get_strategy()  # the default: one device, no replicas
    return tf.distribute.MirroredStrategy([d.name for d in replicas])


def check_batch_size(batch_size: int) -> None:
    """batch_size must split evenly over the replicas of the strategy in scope: tf.distribute gives
    replicas shares that differ by an image otherwise, and Keras weights each replica's mean loss
    1/R, not by its share (and fails on a first batch that leaves a replica empty)."""
    import tensorflow as tf
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if batch_size % replicas:
        raise DevicesError(f"params.yaml: batch_size = {batch_size} is not allowed with {replicas} replicas; "
                           f"allowed: a multiple of {replicas} (each replica takes an equal share of every batch)")


def check_last_batches(sizes: dict[str, int], batch_size: int) -> None:
    """With several replicas, each split's last (partial) batch must split evenly too: a last batch
    of fewer images than replicas leaves one empty and ends the epoch in a collective's shape error,
    an uneven one weights images unequally (check_batch_size). `sizes` is {param naming the split:
    its number of images}; a one-line DevicesError names the first that does not split."""
    import tensorflow as tf
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    for key, n in sizes.items():
        last = n % batch_size
        if replicas > 1 and last % replicas:
            raise DevicesError(f"params.yaml: the last batch of the {n} images of {key} holds {last} "
                               f"({n} mod batch_size {batch_size}), which {replicas} replicas cannot share "
                               f"equally; allowed: a {key} or batch_size that leaves a multiple of {replicas}")


def describe(strat) -> str:
    """The replicas of a strategy, for the training log ("" for one device)."""
    n = strat.num_replicas_in_sync
    if n < 2:
        return ""
    names = [d.rsplit("device:", 1)[-1] for d in strat.extended.worker_devices]   # "CPU:0", "GPU:1"
    kind = "logical devices of one CPU" if names[0].startswith("CPU") else "GPUs"
    return f"{n} replicas (MirroredStrategy over {n} {kind}: {', '.join(names)})"


def replica_share(n_local):
    """This replica's fraction of the global batch: n_local / (sum of n_local over replicas); 1.0
    on one device. Scaling a replica's mean loss by it makes the summed gradients the global mean's."""
    import tensorflow as tf
    ctx = tf.distribute.get_replica_context()
    n_local = tf.cast(n_local, tf.float32)
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tf.ones_like(n_local)
    return n_local / ctx.all_reduce(tf.distribute.ReduceOp.SUM, n_local)


def gather(x):
    """The global batch of a per-replica tensor (B_local, ...) -> (B, ...), in batch order; x itself
    on one device."""
    import tensorflow as tf
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_gather(x, axis=0)


def share_global_batch(model):
    """Under a strategy of 2+ replicas: batch normalisation over the global batch, and dropout masks
    sliced from one mask of the global batch (module docstring). One device: nothing changes.
    Returns a function that undoes it (before saving: the saved model is a plain Keras model)."""
    import keras
    import tensorflow as tf
    if tf.distribute.get_strategy().num_replicas_in_sync < 2:
        return lambda: None
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in model.layers
             if isinstance(layer, keras.layers.Dropout) and layer.noise_shape is None]
    for layer in norms:
        layer.synchronized = True
    for layer in drops:
        layer.call = types.MethodType(_global_batch_dropout, layer)

    def undo():
        for layer in norms:
            layer.synchronized = False
        for layer in drops:
            del layer.call          # back to the class's Dropout.call
    return undo


def _global_batch_dropout(layer, inputs, training=False):
    """Dropout.call for one replica: its rows of the mask drawn for the whole global batch, so the
    replicas together drop what one device would."""
    import keras
    import tensorflow as tf
    if not training or layer.rate == 0:
        return inputs
    ctx = tf.distribute.get_replica_context()
    sizes = ctx.all_gather(tf.shape(inputs)[:1], axis=0)                   # (R,) images per replica
    start = tf.reduce_sum(sizes[:ctx.replica_id_in_sync_group])
    shape = tf.concat([tf.reduce_sum(sizes, keepdims=True), tf.shape(inputs)[1:]], axis=0)
    kept = keras.random.dropout(tf.ones(shape, inputs.dtype), layer.rate,
                                seed=layer.seed_generator)                 # (B, ...): 0 or 1 / (1 - rate)
    return inputs * kept[start:start + tf.shape(inputs)[0]]


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of x86 bfloat16 arithmetic


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo; None where there is no such file (not Linux)."""
    try:
        with open(cpuinfo) as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None


def bfloat16_units() -> tuple[bool | None, str]:
    """Whether the devices a training runs on (the visible GPUs, else the CPU) have bfloat16
    arithmetic, and what told: (True, "CPU flags avx512_bf16"), (False, "a CPU without ..."), or
    None where the CPU's flags cannot be read."""
    import tensorflow as tf
    gpus = tf.config.get_visible_devices("GPU")
    if gpus:
        cap = min(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus)
        if cap >= (8, 0):
            return True, f"GPU compute capability {cap[0]}.{cap[1]}"
        return False, f"a GPU of compute capability {cap[0]}.{cap[1]} (bfloat16 units from 8.0)"
    flags = cpu_flags()
    if flags is None:
        return None, "could not read the CPU's flags to tell whether it has bfloat16 units"
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    if found:
        return True, f"CPU flags {', '.join(found)}"
    return False, f"a CPU without {' or '.join(BF16_CPU_FLAGS)}"


def resolve_dtype_policy(policy: str) -> str:
    """params' dtype_policy as the Keras policy a training uses: auto is mixed_bfloat16 where the
    devices have bfloat16 units (bfloat16_units), else float32; the others are themselves."""
    if policy != "auto":
        return policy
    return "mixed_bfloat16" if bfloat16_units()[0] else "float32"


def dtype_policy_line(policy: str) -> str:
    """The training log's line on params' dtype_policy: what auto chose and why, and for
    mixed_bfloat16 whether the devices have bfloat16 arithmetic (Keras then runs faster than
    float32; without it, slower)."""
    if policy == "float32":
        return f"dtype_policy {policy}"
    has, found = bfloat16_units()
    if policy == "auto":
        why = found if has is None else f"{found}: {'' if has else 'no '}bfloat16 units"
        return f"dtype_policy auto: {'mixed_bfloat16' if has else 'float32'} ({why})"
    if has is None:
        return f"dtype_policy {policy} ({found})"
    if has:
        return f"dtype_policy {policy} ({found}: bfloat16 units)"
    return (f"warning: dtype_policy {policy} on {found}: no bfloat16 arithmetic, so it may well be "
            f"slower than float32 (compare: python -m benchmarks.bench_dtype_policy)")

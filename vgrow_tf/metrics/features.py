"""Feature networks for the metrics, chosen by name (`--feature_net`, `--pr_feature_net`).

Every network takes NHWC uint8 images (any size; 1 or 3 channels) and returns a dict of numpy arrays:
`features` ([N, D], what FID/KID/PR use) and, where it has a classifier, `probs` ([N, C], for IS).

- `inception_pb`: TTUR's frozen graph classify_image_graph_def.pb (Inception 2015-12-05). Images are
  fed as float [0, 255] at `ExpandDims:0`, so the graph's own TF1 bilinear resize to 299
  (align_corners=False, half_pixel_centers=False) and (x - 128) / 128 run exactly as in TTUR /
  StyleGAN; features = pool_3 (2048); probs = softmax(pool_3 . softmax/weights) without the bias
  (the OpenAI Inception Score code). FIDs are comparable with published ones.
- `inception_keras`: keras.applications.InceptionV3 (ImageNet weights): avg_pool (2048) and the
  1000-way softmax, tf.image.resize to 299. Other weights and resize: NOT comparable to published FIDs.
- `vgg16`: keras.applications.VGG16 fc2 (4096) at 224 px, for precision/recall.
- a path: a Keras model file (.keras / .h5), a vgrow_tf classifier snapshot, or a SavedModel
  directory, optionally `path:layer` for the features of that layer. Images are given in [-1, 1]
  (resized to the model's input size and converted to its channel count).
"""
import hashlib
import logging
import os
import sys
import tarfile
import tempfile
import urllib.request

import numpy as np
import tensorflow as tf

from vgrow_tf.errors import UserError, require_file

INCEPTION_PB_NAME = "classify_image_graph_def.pb"
INCEPTION_PB_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
WEIGHTS_FLAG = {"inception_keras": "--inception_path", "vgg16": "--vgg16_path"}
KERAS_WEIGHTS = {
    "inception_keras": ("inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                        "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"),
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
              "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
              "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
}
BUILTIN = ("inception_pb", "inception_keras", "vgg16")


def cache_dir():
    return os.environ.get("VGROW_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vgrow_tf")


def offline():
    return os.environ.get("VGROW_OFFLINE", "") not in ("", "0")


def file_digest(path, block=1 << 20):
    """md5 of a file (or of the saved_model.pb of a SavedModel directory), for cache keys."""
    if os.path.isdir(path):
        path = os.path.join(path, "saved_model.pb")
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the run over a batch, on one device or over the replicas of a strategy -------------------------

def _to_rgb(x):
    return tf.tile(x, [1, 1, 1, 3]) if x.shape[-1] == 1 else x


class FeatureNet:
    """A named callable: uint8 NHWC numpy -> {"features": [N, D], "probs": [N, C] (optional)}."""

    def __init__(self, name, label, fn, outputs, digest, comparable=False):
        self.name, self.label, self.fn, self.outputs = name, label, fn, tuple(outputs)
        self.digest, self.comparable = digest, comparable
        self.strategy = None

    def __call__(self, images):
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"feature networks take uint8 images, got {images.dtype}")
        strategy = self.strategy
        n = len(images)
        if strategy is None or strategy.num_replicas_in_sync <= 1 or n < strategy.num_replicas_in_sync:
            out = self.fn(tf.convert_to_tensor(images))
            return {k: np.asarray(v.numpy()).reshape(n, -1) for k, v in out.items()}
        replicas = strategy.num_replicas_in_sync
        bounds = np.linspace(0, n, replicas + 1).astype(int)
        shards = [images[bounds[i]:bounds[i + 1]] for i in range(replicas)]
        values = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(shards[ctx.replica_id_in_sync_group]))
        if getattr(self, "_dist_for", None) is not strategy:
            self._dist_for = strategy
            fn = self.fn
            self._dist_fn = tf.function(lambda v: strategy.run(lambda x: fn(x), args=(v,)), reduce_retracing=True)
        out = self._dist_fn(values)
        return {k: np.concatenate([np.asarray(t.numpy()).reshape(len(s), -1) for t, s in
                                   zip(strategy.experimental_local_results(v), shards)])
                for k, v in out.items()}


# --- inception_pb: TTUR's frozen graph --------------------------------------------------------------

def find_inception_pb(inception_path=None, download=True):
    """Path of classify_image_graph_def.pb: --inception_path (file or directory), else the cache dir
    (downloading the TTUR archive there when online). UserError naming the file and URL otherwise."""
    candidates = []
    if inception_path:
        candidates.append(os.path.join(inception_path, INCEPTION_PB_NAME) if os.path.isdir(inception_path)
                          else inception_path)
        for c in candidates:
            if os.path.isfile(c):
                return c
        raise UserError(f"Inception graph {candidates[0]} does not exist; get {INCEPTION_PB_NAME} from "
                        f"{INCEPTION_PB_URL} (extract the .tgz) and pass its path to --inception_path")
    target = os.path.join(cache_dir(), INCEPTION_PB_NAME)
    if os.path.isfile(target):
        return target
    if download and not offline():
        try:
            return _download_inception_pb(target)
        except Exception as e:  # noqa: BLE001 - any network failure becomes the one-line error below
            logging.warning("downloading %s failed: %s", INCEPTION_PB_URL, e)
    raise UserError(f"the Inception graph {INCEPTION_PB_NAME} is not in {cache_dir()} and cannot be "
                    f"downloaded; get it from {INCEPTION_PB_URL} (extract the .tgz) and pass "
                    f"--inception_path=/path/to/{INCEPTION_PB_NAME} (or copy it to {target})")


def _download_inception_pb(target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        archive = os.path.join(tmp, "inception.tgz")
        with urllib.request.urlopen(INCEPTION_PB_URL, timeout=30) as r, open(archive, "wb") as f:
            f.write(r.read())
        with tarfile.open(archive) as tar:
            member = tar.getmember(INCEPTION_PB_NAME)
            with tar.extractfile(member) as src, open(os.path.join(tmp, INCEPTION_PB_NAME), "wb") as dst:
                dst.write(src.read())
        os.replace(os.path.join(tmp, INCEPTION_PB_NAME), target)
    return target


def load_graph_def(path):
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise UserError(f"{path} is not a frozen TensorFlow GraphDef ({e.__class__.__name__}); "
                        f"use {INCEPTION_PB_NAME} from {INCEPTION_PB_URL}") from None
    return graph_def


def inception_pb_function(graph_def):
    """A TF2 function: float32 NHWC [0, 255] (any size) -> {"features": pool_3 [N, D], "probs": [N, C]}.

    The GraphDef is imported with its input mapped at `ExpandDims:0` (TTUR), so the graph's own
    ResizeBilinear (TF1 semantics) and normalisation run unchanged.
    """
    names = {n.name for n in graph_def.node}
    for needed in ("ExpandDims", "pool_3", "softmax/logits/MatMul"):
        if needed not in names:
            raise UserError(f"the GraphDef has no node '{needed}'; it is not TTUR's {INCEPTION_PB_NAME} "
                            f"({INCEPTION_PB_URL})")

    def imported(images):
        pool3, matmul = tf.compat.v1.import_graph_def(
            graph_def, input_map={"ExpandDims:0": images},
            return_elements=["pool_3:0", "softmax/logits/MatMul"], name="FID_Inception_Net")
        weights = matmul.inputs[1]
        features = tf.reshape(pool3, [-1, int(weights.shape[0])])
        logits = tf.matmul(features, weights)
        return {"features": features, "probs": tf.nn.softmax(logits)}

    wrapped = tf.compat.v1.wrap_function(imported, [tf.TensorSpec([None, None, None, 3], tf.float32)])
    outputs = wrapped.structured_outputs
    pruned = wrapped.prune(feeds=wrapped.inputs[0], fetches=outputs)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
    def run(images):
        x = tf.cast(images, tf.float32)
        x = tf.cond(tf.shape(x)[-1] == 1, lambda: tf.tile(x, [1, 1, 1, 3]), lambda: x)
        x = tf.ensure_shape(x, [None, None, None, 3])
        return pruned(x)

    return run


def inception_pb(inception_path=None):
    path = find_inception_pb(inception_path)
    fn = inception_pb_function(load_graph_def(path))
    return FeatureNet("inception_pb", "Inception 2015-12-05 (TTUR graph)", fn, ("features", "probs"),
                      file_digest(path), comparable=True)


# --- keras.applications networks ---------------------------------------------------------------------

def keras_weights(name, weights_path=None):
    """The weights argument for keras.applications: a local file, or "imagenet" when it is cached or
    can be downloaded; UserError naming the file and URL otherwise."""
    fname, url = KERAS_WEIGHTS[name]
    if weights_path:
        require_file(weights_path, f"{WEIGHTS_FLAG[name]} weights file", f"; get {fname} from {url}")
        return weights_path
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    cached = os.path.join(keras_home, "models", fname)
    if os.path.isfile(cached) or not offline():
        return "imagenet"
    raise UserError(f"{name} needs ImageNet weights {fname}, which are not in {os.path.dirname(cached)} and "
                    f"cannot be downloaded offline; get them from {url} and pass their path as "
                    f"{WEIGHTS_FLAG[name]}")


def _build_keras_app(builder, name, weights, **kw):
    try:
        return builder(weights=weights, **kw)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a failed download surfaces as many exception types
        fname, url = KERAS_WEIGHTS[name]
        raise UserError(f"cannot load {name} weights ({e.__class__.__name__}: {str(e).splitlines()[0][:120]}); "
                        f"get {fname} from {url} and pass its path as {WEIGHTS_FLAG[name]}") from None


def inception_keras(weights_path=None, random_weights=False):
    import keras
    weights = None if random_weights else keras_weights("inception_keras", weights_path)
    model = _build_keras_app(keras.applications.InceptionV3, "inception_keras", weights,
                             include_top=True, classifier_activation="softmax")
    net = keras.Model(model.inputs, [model.get_layer("avg_pool").output, model.output])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
    def run(images):
        x = _to_rgb_dynamic(tf.cast(images, tf.float32))
        x = tf.image.resize(x, [299, 299], method="bilinear")
        features, probs = net(x / 127.5 - 1.0, training=False)
        return {"features": features, "probs": probs}

    digest = "random" if random_weights else (file_digest(weights_path) if weights_path else "imagenet")
    return FeatureNet("inception_keras", "keras InceptionV3 (not comparable to published FIDs)", run,
                      ("features", "probs"), digest)


def vgg16(weights_path=None, random_weights=False):
    import keras
    weights = None if random_weights else keras_weights("vgg16", weights_path)
    model = _build_keras_app(keras.applications.VGG16, "vgg16", weights, include_top=True)
    net = keras.Model(model.inputs, model.get_layer("fc2").output)
    mean_bgr = tf.constant([103.939, 116.779, 123.68], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
    def run(images):
        x = _to_rgb_dynamic(tf.cast(images, tf.float32))
        x = tf.image.resize(x, [224, 224], method="bilinear")
        return {"features": net(x[..., ::-1] - mean_bgr, training=False)}

    digest = "random" if random_weights else (file_digest(weights_path) if weights_path else "imagenet")
    return FeatureNet("vgg16", "keras VGG16 fc2", run, ("features",), digest)


def _to_rgb_dynamic(x):
    x = tf.cond(tf.shape(x)[-1] == 1, lambda: tf.tile(x, [1, 1, 1, 3]), lambda: x)
    return tf.ensure_shape(x, [None, None, None, 3])


# --- any model by path -------------------------------------------------------------------------------

def split_model_spec(spec):
    """'model.keras:dense_1' -> ('model.keras', 'dense_1'); a plain path -> (path, None)."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, layer = spec.rsplit(":", 1)
    return path, (layer or None)


def _is_snapshot(path):
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return "format" in f.attrs and "kind" in f.attrs
    except OSError:
        return False


def _load_keras(path):
    import keras
    if path.endswith(".h5") and _is_snapshot(path):
        from vgrow_tf import snapshot
        snap = snapshot.load(path)
        if snap.kind != "classifier":
            raise UserError(f"{path} is a '{snap.kind}' snapshot; a feature network must be a classifier "
                            "snapshot, a Keras model file or a SavedModel")
        return snap.networks["C"]
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot load the Keras model {path} ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0][:160]})") from None


def _adapt(x, size, channels):
    """uint8 NHWC -> float [-1, 1] resized to `size` and converted to `channels`."""
    x = tf.cast(x, tf.float32) / 127.5 - 1.0
    if channels == 3:
        x = _to_rgb_dynamic(x)
    elif channels == 1:
        x = tf.cond(tf.shape(x)[-1] == 3, lambda: tf.reduce_mean(x, -1, keepdims=True), lambda: x)
        x = tf.ensure_shape(x, [None, None, None, 1])
    if size:
        x = tf.cond(tf.reduce_all(tf.shape(x)[1:3] == size), lambda: x,
                    lambda: tf.image.resize(x, size, method="bilinear"))
    return x


def _as_probs(y):
    """The output as class probabilities: itself if rows are already distributions, else softmax."""
    y = tf.reshape(tf.cast(y, tf.float32), [tf.shape(y)[0], -1])
    is_dist = tf.logical_and(tf.reduce_all(y >= 0.0),
                             tf.reduce_all(tf.abs(tf.reduce_sum(y, axis=1) - 1.0) < 1e-3))
    return tf.cond(is_dist, lambda: y, lambda: tf.nn.softmax(y))


def _layer_before_output(model):
    """The layer whose output a model's final Dense layer reads (a classifier's penultimate features), or
    None when the model does not end in a Dense layer fed by one layer."""
    import keras
    layers = model.layers
    if len(layers) < 2 or not isinstance(layers[-1], keras.layers.Dense):
        return None
    if isinstance(model, keras.Sequential):
        return layers[-2].name
    try:
        return layers[-2].name if layers[-2].output is layers[-1].input else None
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return None


def model_from_path(spec):
    path, layer = split_model_spec(spec)
    if not os.path.exists(path):
        raise UserError(f"feature network {path} does not exist; give inception_pb, inception_keras, vgg16, "
                        "a Keras model file (.keras/.h5) or a SavedModel directory (optionally path:layer)")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UserError(f"feature network {path} is a directory without saved_model.pb, so not a SavedModel; "
                        "give inception_pb, inception_keras, vgg16, a Keras model file (.keras/.h5) or a "
                        "SavedModel directory (optionally path:layer)")
    label = os.path.basename(os.path.normpath(path)) + (f":{layer}" if layer else "")
    digest = file_digest(path) + (f":{layer}" if layer else "")
    if os.path.isdir(path):
        return _saved_model_net(path, layer, label, digest)
    model = _load_keras(path)
    shape = model.inputs[0].shape
    size = [int(shape[1]), int(shape[2])] if shape[1] is not None and shape[2] is not None else None
    channels = shape[-1]
    if not layer:
        layer = _layer_before_output(model)
        if layer:  # a classifier's logits or softmax scale KID absurdly and carry little of the image
            print(f"feature network {label}: features from layer '{layer}', the input of its output layer "
                  f"(as Inception's pool_3; name another as {path}:LAYER)", file=sys.stderr, flush=True)
            label, digest = f"{label}:{layer}", f"{digest}:{layer}"
    if layer:
        try:
            feat = model.get_layer(layer).output
        except ValueError:
            names = ", ".join(l.name for l in model.layers)
            raise UserError(f"model {path} has no layer '{layer}'; its layers: {names}") from None
        net = __import__("keras").Model(model.inputs, [feat, model.outputs[0]])
    else:
        net = model

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
    def run(images):
        x = _adapt(images, size, channels)
        if layer:
            feat, out = net(x, training=False)
        else:
            out = net(x, training=False)
            feat = out
        n = tf.shape(x)[0]
        return {"features": tf.reshape(tf.cast(feat, tf.float32), [n, -1]), "probs": _as_probs(out)}

    return FeatureNet(f"model:{label}", f"model {label}", run, ("features", "probs"), digest)


def _saved_model_net(path, key, label, digest):
    try:
        obj = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot load the SavedModel {path} ({e.__class__.__name__})") from None
    sig = getattr(obj, "signatures", {}).get("serving_default") if hasattr(obj, "signatures") else None
    if sig is not None:
        spec = list(sig.structured_input_signature[1].values())[0]
        arg = list(sig.structured_input_signature[1].keys())[0]
        call = lambda x: sig(**{arg: tf.cast(x, spec.dtype)})  # noqa: E731
    elif callable(obj):
        spec = None
        call = obj
    else:
        raise UserError(f"SavedModel {path} has no serving_default signature and is not callable")
    shape = spec.shape if spec is not None else None
    size = [int(shape[1]), int(shape[2])] if shape is not None and shape.rank == 4 and shape[1] and shape[2] \
        else None
    channels = int(shape[-1]) if shape is not None and shape.rank == 4 and shape[-1] else None

    def run(images):
        x = _adapt(images, size, channels)
        out = call(x)
        if isinstance(out, dict):
            if key and key not in out:
                raise UserError(f"SavedModel {path} has no output '{key}'; it has {', '.join(sorted(out))}")
            names = sorted(out)
            feat = out[key] if key else out[names[0]]
            last = out[names[-1]]
        else:
            feat = last = out
        n = tf.shape(x)[0]
        return {"features": tf.reshape(tf.cast(feat, tf.float32), [n, -1]), "probs": _as_probs(last)}

    return FeatureNet(f"savedmodel:{label}", f"SavedModel {label}", run, ("features", "probs"), digest)


# --- the chooser ---------------------------------------------------------------------------------------

_CACHE = {}


def get_feature_net(name, inception_path=None, vgg16_path=None, strategy=None):
    """A FeatureNet for a --feature_net value (kept per process: a graph is imported once)."""
    key = (name, inception_path, vgg16_path)
    if key not in _CACHE:
        if name == "inception_pb":
            net = inception_pb(inception_path)
        elif name == "inception_keras":
            net = inception_keras(inception_path)
        elif name == "vgg16":
            net = vgg16(vgg16_path)
        else:
            net = model_from_path(name)
        _CACHE[key] = net
    net = _CACHE[key]
    net.strategy = strategy
    return net

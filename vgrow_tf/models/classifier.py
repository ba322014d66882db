"""The domain classifier SCoGAN's semantic loss needs: `train.py --model=classifier`.

Trains a small convnet on the labels of `--dataset` (and of `--dataset_b` when given, half of each
batch from each, e.g. MNIST + SVHN digits, or the two CelebA attribute domains). One-hot labels
(every row sums to 1) give a softmax classifier (MNIST+SVHN: 10 digits); other labels (CelebA's
attribute flags in {0, 1}) a multi-label sigmoid one. The snapshot (`network-final.h5`, kind
"classifier") is what `--classifier_path` takes. Inputs are NHWC [-1, 1]; images of another size or
channel count are resized / converted inside `probabilities`.
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from vgrow_tf import data as data_lib
from vgrow_tf.data import pairs as pairs_lib
from vgrow_tf.errors import UserError
from vgrow_tf.training.options import Option
from vgrow_tf.training.steps import apply_if_finite, host_stats, make_adam, reduce_sum

KIND = "classifier"
KINDS = (KIND,)

OPTIONS = [
    Option("dataset_b", None, "CoGAN/SCoGAN/classifier: the second domain's dataset directory (or name)."),
    Option("learning_rate", None, "Adam learning rate (VGrow-PG 1e-3, MSG 3e-3, ...).", "float"),
    Option("classifier_fmaps", 32, "Classifier width: feature maps of its first convolution (doubling).",
           "integer"),
    Option("classifier_labels", "auto", "Classifier output: softmax (one-hot labels), sigmoid (attribute "
           "flags), or auto from the label file.", "enum", ["auto", "softmax", "sigmoid"]),
]


def make_config(resolution, channels, num_outputs, output="softmax", fmaps=32):
    return dict(resolution=int(resolution), channels=int(channels), num_outputs=int(num_outputs),
                output=output, fmaps=int(fmaps))


def build_networks(config):
    fm, res = config["fmaps"], config["resolution"]
    lrelu = lambda: keras.layers.LeakyReLU(0.2)  # noqa: E731
    layers = [keras.layers.Conv2D(fm, 3, padding="same"), lrelu()]
    size, width = res, fm
    while size > 4:
        width = min(width * 2, 8 * fm)
        layers += [keras.layers.Conv2D(width, 3, strides=2, padding="same"), lrelu()]
        size //= 2
    layers += [keras.layers.Flatten(),
               keras.layers.Dense(config["num_outputs"], name="logits")]
    net = keras.Sequential([keras.Input((res, res, config["channels"]))] + layers, name="C")
    return {"C": net}


def latent_dim(config):
    return 0


def generate(networks, config, latents, **unused):
    raise UserError("a classifier snapshot has no generator; pass it to --classifier_path instead")


def fit_images(images, config):
    """Resizes / converts NHWC [-1, 1] images to the classifier's input."""
    res, ch = config["resolution"], config["channels"]
    if images.shape[1] != res:
        images = tf.image.resize(images, [res, res], method="bilinear")
    if ch == 3 and images.shape[-1] == 1:
        images = tf.tile(images, [1, 1, 1, 3])
    elif ch == 1 and images.shape[-1] == 3:
        images = tf.reduce_mean(images, axis=-1, keepdims=True)
    return images


def probabilities(net, config, images):
    logits = tf.cast(net(fit_images(images, config), training=False), tf.float32)
    return tf.nn.softmax(logits) if config["output"] == "softmax" else tf.sigmoid(logits)


def classify(networks, config, images):
    return probabilities(networks["C"], config, tf.convert_to_tensor(images, tf.float32)).numpy()


def _label_kind(info):
    labels = data_lib.read_labels(info)
    one_hot = np.allclose(labels.sum(axis=1), 1.0) and np.all((labels == 0) | (labels == 1))
    return "softmax" if one_hot else "sigmoid"


class Trainer:
    DEFAULTS = dict(total_nimg=200_000, tick_kimg=5, snapshot_kimg=50)

    @staticmethod
    def inspect_data(options):
        info_a, info_b = pairs_lib.inspect_pair(options, need_b=False)
        for info in (info_a, info_b):
            if info is not None and not info.label_size:
                raise UserError(f"dataset {info.path} has no labels; the classifier needs a labelled dataset "
                                "(create_mnist, create_svhn, create_mnist_edge, create_celeba --attribute ...)")
        if info_b is not None and info_b.label_size != info_a.label_size:
            raise UserError(f"{info_a.path} has {info_a.label_size} labels per image but {info_b.path} "
                            f"{info_b.label_size}; the two datasets must share one label space")
        pairs_lib.pair_resolution(options, info_a, info_b)
        return info_a if info_b is None else \
            dataclasses.replace(info_a, name=pairs_lib.pair_name(info_a.name, info_b.name))

    @staticmethod
    def identity(options):
        return {k: getattr(options, k) for k in ("dataset_b", "classifier_fmaps", "classifier_labels")}

    def __init__(self, options, strategy, info):
        self.options, self.strategy = options, strategy
        info_a, info_b = pairs_lib.inspect_pair(options, need_b=False)
        self.infos = [info_a] + ([info_b] if info_b is not None else [])
        self.dataset_path = info_a.path
        self.resolution = pairs_lib.pair_resolution(options, info_a, info_b)
        channels = max(i.channels for i in self.infos)
        output = options.classifier_labels
        if output == "auto":
            kinds = {_label_kind(i) for i in self.infos}
            output = "softmax" if kinds == {"softmax"} else "sigmoid"
        self.arch = make_config(self.resolution, channels, info_a.label_size, output, options.classifier_fmaps)
        self.replicas = strategy.num_replicas_in_sync
        self.batch = options.batch_size or 64
        if self.batch % (len(self.infos) * self.replicas):
            raise UserError(f"batch size {self.batch} must be divisible by {len(self.infos)} dataset(s) x "
                            f"{self.replicas} replica(s)")
        with strategy.scope():
            self.net = build_networks(self.arch)["C"]
            self.opt = make_adam(options.learning_rate or 1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
            self.opt.build(self.net.trainable_variables)
            self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
        self._step = self._iterators = None

    def checkpoint_items(self):
        return dict(C=self.net, opt_c=self.opt, batches=self.batches)

    def after_restore(self, cur_nimg):
        self._iterators = None

    def config(self):
        return dict(self.arch)

    def networks(self):
        return {"C": self.net}

    def progress_scalars(self, cur_nimg):
        return {}

    def grids(self, count):
        return {}

    def _make_iterators(self):
        per = self.batch // len(self.infos)
        its = []
        for k, info in enumerate(self.infos):
            ds = data_lib.load_dataset(info.path, batch_size=per, resolution=self.resolution, labels=True,
                                       shuffle=True, repeat=True, seed=self.options.seed + k)
            ds = ds.skip(int(self.batches.numpy()))
            its.append(iter(self.strategy.experimental_distribute_dataset(ds)))
        return its

    def _grads(self, *batches):
        images = tf.concat([fit_images(b["image"], self.arch) for b in batches], axis=0)
        labels = tf.concat([b["label"] for b in batches], axis=0)
        with tf.GradientTape() as tape:
            logits = tf.cast(self.net(images, training=True), tf.float32)
            if self.arch["output"] == "softmax":
                per = tf.nn.softmax_cross_entropy_with_logits(labels, logits)
                correct = tf.cast(tf.argmax(logits, -1) == tf.argmax(labels, -1), tf.float32)
            else:
                per = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), axis=-1)
                correct = tf.reduce_mean(tf.cast((logits > 0) == (labels > 0.5), tf.float32), axis=-1)
            loss = tf.reduce_sum(per) / self.batch
        grads = tape.gradient(loss, self.net.trainable_variables)
        return grads, {"loss": loss, "accuracy": tf.reduce_sum(correct) / self.batch}

    def _make_step(self):
        def step(*iterators):
            batches = [next(it) for it in iterators]
            grads, stats = self.strategy.run(self._grads, args=tuple(batches))
            finite = apply_if_finite(self.strategy, self.opt, grads, self.net.trainable_variables)
            return dict({k: reduce_sum(self.strategy, v) for k, v in stats.items()}, finite=finite)
        return tf.function(step)

    def train_iteration(self, cur_nimg):
        if self._iterators is None:
            self._iterators = self._make_iterators()
        if self._step is None:
            self._step = self._make_step()
        stats = self._step(*self._iterators)
        self.batches.assign_add(1)
        stats, finite = host_stats(stats)
        return dict(stats, nimg=self.batch, nonfinite=not finite)

"""Latent directions (VGrow's latent manipulation): fit a linear boundary between labelled generated
samples with logistic regression and move latents along its unit normal.

Labels come from a CSV of `seed,label` rows (labels given by hand or by any tool for the images that
`generate_samples.py --mode samples` wrote) or from a classifier applied to the generated images: a
vgrow_tf classifier snapshot (train.py --model=classifier) or a Keras model file.
"""
import csv
import os

import numpy as np

from vgrow_tf.errors import UserError, require_file


def read_label_csv(path):
    """`seed,label` rows (a header line is allowed) -> (seeds [N] int, labels [N] int)."""
    require_file(path, "--labels file")
    seeds, labels = [], []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise UserError(f"{path}:{lineno}: expected 'seed,label', got {','.join(row)!r}")
            try:
                seed, label = int(row[0]), int(float(row[1]))
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise UserError(f"{path}:{lineno}: seed and label must be numbers, got {','.join(row)!r}") from None
            seeds.append(seed)
            labels.append(label)
    if not seeds:
        raise UserError(f"{path} holds no seed,label rows")
    return np.asarray(seeds, np.int64), np.asarray(labels, np.int64)


def load_classifier(path):
    """A callable images [N,H,W,C] in [-1,1] -> scores [N, K] from a classifier snapshot or Keras file."""
    if not os.path.isfile(path):
        raise UserError(f"classifier {path} does not exist")
    from vgrow_tf import snapshot as snapshot_lib
    try:
        kind, _ = snapshot_lib.read_header(path)
    except UserError:
        kind = None
    if kind is not None:
        if kind != "classifier":
            raise UserError(f"{path} is a '{kind}' snapshot, not a classifier")
        snap = snapshot_lib.load(path, expect_kind="classifier")
        return lambda images: snap.family.classify(snap.networks, snap.config, images)
    import keras
    import tensorflow as tf
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise UserError(f"cannot load the Keras classifier {path} ({e.__class__.__name__}); "
                        "give a .keras file or a vgrow_tf classifier snapshot") from None
    shape = model.inputs[0].shape

    def classify(images):
        x = tf.convert_to_tensor(images, tf.float32)
        if shape[1] is not None and x.shape[1] != shape[1]:
            x = tf.image.resize(x, [shape[1], shape[2]])
        if shape[-1] is not None and x.shape[-1] != shape[-1]:
            x = tf.tile(x, [1, 1, 1, shape[-1]]) if x.shape[-1] == 1 else tf.reduce_mean(x, -1, keepdims=True)
        return np.asarray(model(x, training=False))
    return classify


def labels_from_scores(scores, class_index=None):
    """Binary labels from classifier outputs: one column -> above 0.5 (probabilities) or 0 (logits);
    several columns -> argmax == class_index (required)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim == 1 or scores.shape[1] == 1:
        scores = scores.reshape(-1)
        threshold = 0.5 if scores.min() >= 0.0 and scores.max() <= 1.0 else 0.0
        return (scores > threshold).astype(np.int64)
    if class_index is None:
        raise UserError(f"the classifier has {scores.shape[1]} outputs; choose the class with --direction_class")
    if not 0 <= class_index < scores.shape[1]:
        raise UserError(f"--direction_class {class_index} is out of range for {scores.shape[1]} outputs")
    return (np.argmax(scores, axis=1) == class_index).astype(np.int64)


def fit_direction(latents, labels, C=1.0, max_iter=1000):
    """Logistic regression on latents -> (unit direction [dim] pointing toward label 1, info dict with
    intercept, norm of the raw coefficients and training accuracy)."""
    from sklearn.linear_model import LogisticRegression
    latents = np.asarray(latents, np.float64)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(latents):
        raise UserError(f"{len(labels)} labels for {len(latents)} latents")
    classes = np.unique(labels)
    if len(classes) != 2:
        raise UserError(f"a direction needs two classes of labelled samples, got {sorted(classes.tolist())}")
    y = (labels == classes.max()).astype(np.int64)
    clf = LogisticRegression(C=C, max_iter=max_iter).fit(latents, y)
    coef = clf.coef_.reshape(-1)
    norm = float(np.linalg.norm(coef))
    if norm == 0.0:
        raise UserError("the fitted direction is zero: the labels do not depend on the latents")
    return (coef / norm).astype(np.float32), dict(intercept=float(clf.intercept_[0]) / norm, coef_norm=norm,
                                                  accuracy=float(clf.score(latents, y)),
                                                  num_positive=int(y.sum()), num=len(y))


def move_along(latents, direction, amounts):
    """latents [N, dim] moved by each amount along the unit direction: [N, len(amounts), dim]."""
    latents = np.asarray(latents, np.float32)
    amounts = np.asarray(amounts, np.float32)
    return latents[:, None, :] + amounts[None, :, None] * np.asarray(direction, np.float32)[None, None, :]

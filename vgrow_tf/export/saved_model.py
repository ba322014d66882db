"""SavedModel export: TensorFlow Serving's format; loading it needs only TensorFlow.

Signatures as listed in `vgrow_tf.export.serving`; the same metadata is also written as
`assets/vgrow_tf_metadata.json` (read it with any JSON reader).
"""
import json
import os

import tensorflow as tf

METADATA_FILE = "vgrow_tf_metadata.json"


def write(module, path, quantize=None, verbose=False):
    tf.saved_model.save(module, path, signatures=module.functions)
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", METADATA_FILE), "w") as f:
        json.dump(module.info, f, indent=1, sort_keys=True)
    return path

"""Datasets: the tfrecord writer and sources behind dataset_tool.py, and the tf.data reader."""
from vgrow_tf.data.reader import (DatasetInfo, image_pyramid, inspect_dataset, load_dataset,  # noqa: F401
                                  read_labels, resolve_dataset)

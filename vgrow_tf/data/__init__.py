"""Datasets: the tfrecord writer and sources behind dataset_tool.py, and the tf.data reader."""
from vgrow_tf.data.reader import (DatasetInfo, dataset_from_options, image_pyramid, inspect_dataset,
                                  load_dataset, read_labels, resolve_dataset)

__all__ = ["DatasetInfo", "dataset_from_options", "image_pyramid", "inspect_dataset", "load_dataset",
           "read_labels", "resolve_dataset"]

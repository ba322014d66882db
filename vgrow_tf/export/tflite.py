"""LiteRT (TFLite) export: one .tflite file with the serving_default signature (z -> images);
the batch size is free (resize the input tensor before allocating)."""
import tensorflow as tf


def write(module, path, quantize=None, verbose=False):
    function = module.functions["serving_default"].get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    if quantize == "dynamic":  # int8 weights, float activations
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    with open(path, "wb") as f:
        f.write(converter.convert())
    return path

"""ONNX export through tf2onnx: one .onnx file, input `z` [N, z_dim] float32, output `images`
uint8 [N, H, W, C]; the metadata is in the model's metadata_props (onnxruntime:
session.get_modelmeta().custom_metadata_map)."""
import json
import logging

OPSET = 17


def write(module, path, quantize=None, verbose=False):
    import tf2onnx
    if not verbose:  # its optimizer logs tracebacks of passes it skips (harmless) and INFO per step
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    function = module.functions["serving_default"]
    model, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=OPSET)
    for key, value in module.info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path

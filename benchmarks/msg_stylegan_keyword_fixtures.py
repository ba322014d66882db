"""Makes tests/fixtures/msg_stylegan_keywords: msg-stylegan-tf networks built with non-default keywords,
by running the original code (needs a checkout of it; nothing of it is stored).

For each configuration in CONFIGS the original's own code, under `tf.compat.v1` (the same import-patched
copy of the checkout's dnnlib/ and training/ as msg_stylegan_original_check.py), builds G (`G_style`),
D (`D_basic`) and Gs = G.clone() as its training_loop does, overwrites every variable with random values
(G and Gs independently), computes the outputs and writes

  <out>/<name>/network.pkl   (G, D, Gs) pickled by `pickle.dump(..., HIGHEST_PROTOCOL)` as misc.save_pkl,
                             each network's build_module_src replaced by "# source omitted";
  <out>/<name>/expected.npz  in/latents; out/{G,Gs}_mapping/dlatents; out/{G,Gs}/{notrunc,trunc}/<s>x<s>
                             (randomize_noise=False; trunc = psi 0.6, cutoff 3); out/Gs/static/<s>x<s> (Gs.run
                             with no truncation arguments: the pickle's own truncation keywords);
                             in/D_random/<s>x<s> U(-1, 1); out/D/{random,Gs_notrunc} (all 8 in one batch);
  <out>/<name>/config.json   the keywords, the variable names and shapes.

    python benchmarks/msg_stylegan_keyword_fixtures.py --original=<msg-stylegan-tf checkout> \\
        --out=tests/fixtures/msg_stylegan_keywords
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from msg_stylegan_original_check import patched_copy  # noqa: E402

# Widths all differ from each other and from G to D; every switch of G_synthesis / D_basic is off somewhere.
CONFIGS = {
    "dense_input_relu": dict(
        resolution=16, num_channels=3,
        G=dict(latent_size=24, mapping_fmaps=56, dlatent_size=40, mapping_layers=3, mapping_lrmul=0.1,
               mapping_nonlinearity="relu", normalize_latents=False, fmap_base=128, fmap_max=48, fmap_decay=0.8,
               use_noise=False, const_input_layer=False, use_pixel_norm=True, use_instance_norm=False,
               nonlinearity="relu", blur_filter=[1, 3, 3, 1], fused_scale=True, truncation_psi=0.5,
               truncation_cutoff=2, dlatent_avg_beta=0.99),
        D=dict(fmap_base=112, fmap_max=40, mbstd_group_size=2, mbstd_num_features=2, nonlinearity="relu",
               blur_filter=None, fused_scale=True)),
    "no_styles_plain_weights": dict(
        resolution=16, num_channels=1,
        G=dict(latent_size=20, mapping_fmaps=36, dlatent_size=28, mapping_layers=2, fmap_base=64, fmap_max=32,
               use_styles=False, const_input_layer=False, use_wscale=False, dlatent_avg_beta=None),
        D=dict(fmap_base=96, fmap_max=24, mbstd_group_size=0, nonlinearity="relu", use_wscale=False,
               blur_filter=[1, 1], fmap_decay=1.0)),
}

# Run by the original's code in a child process: argv = work dir, output dir, name, config JSON.
CHILD = r'''
import copyreg, json, os, pickle, sys
import numpy as np
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
_get_variable = tf.get_variable
def get_variable(name, shape=None, *args, **kwargs):  # G_synthesis puts use_noise=True in a shape
    shape = None if shape is None else [int(s) if isinstance(s, bool) else s for s in shape]
    return _get_variable(name, shape, *args, **kwargs)
tf.get_variable = get_variable
work, out, name, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path.insert(0, work)
import dnnlib.tflib as tflib
from dnnlib.tflib.network import Network
tflib.init_tf({"allow_soft_placement": True})  # Network.run pins ops to /gpu:0
res, ch = cfg["resolution"], cfg["num_channels"]
num_scales = int(np.log2(res)) - 1
G = tflib.Network(name="G", num_inputs=2, func_name="training.networks_stylegan.G_style", num_channels=ch,
                  resolution=res, label_size=0, **cfg["G"])
D = tflib.Network(name="D", num_inputs=num_scales + 1, func_name="training.networks_stylegan.D_basic",
                  num_channels=ch, resolution=res, label_size=0, **cfg["D"])
Gs = G.clone("Gs")
rng = np.random.RandomState(20240)

def random_value(full, shape, kwargs):
    wscale = kwargs.get("use_wscale", True)
    mapping = full.startswith("G_mapping/")
    lrmul = kwargs.get("mapping_lrmul", 0.01) if mapping else 1.0
    base = full.split("/")[-1]
    if base.startswith("noise"):
        return rng.randn(*shape)
    if base == "dlatent_avg" or full.endswith("Noise/weight"):
        return rng.randn(*shape) * 0.5
    if base == "const":
        return 1 + rng.randn(*shape) * 0.5
    if base == "bias":
        return rng.randn(*shape) * 0.2 / lrmul
    std = 1.0 / lrmul if wscale else np.sqrt(2.0 / np.prod(shape[:-1])) / lrmul
    return rng.randn(*shape) * std

values = {}
for net, kwargs in ((G, cfg["G"]), (D, cfg["D"]), (Gs, cfg["G"])):
    for full, var in net.vars.items():
        values[var] = random_value(full, var.shape.as_list(), kwargs).astype(np.float32)
tflib.set_vars(values)

latents = rng.randn(8, cfg["G"]["latent_size"]).astype(np.float32)
labels = np.zeros([8, 0], np.float32)
arrays = {"in/latents": latents}
for tag, net in (("G", G), ("Gs", Gs)):
    arrays[f"out/{tag}_mapping/dlatents"] = net.components.mapping.run(latents, labels)
    for trunc, kw in (("notrunc", dict(truncation_psi=None)), ("trunc", dict(truncation_psi=0.6, truncation_cutoff=3))):
        for i, image in enumerate(net.run(latents, labels, randomize_noise=False, return_as_list=True, **kw)):
            arrays[f"out/{tag}/{trunc}/{image.shape[2]}x{image.shape[2]}"] = image
for i, image in enumerate(Gs.run(latents, labels, randomize_noise=False, return_as_list=True)):
    arrays[f"out/Gs/static/{image.shape[2]}x{image.shape[2]}"] = image
randoms = [rng.uniform(-1, 1, [8, ch, 2 ** (2 + i), 2 ** (2 + i)]).astype(np.float32) for i in range(num_scales)]
arrays.update({f"in/D_random/{r.shape[2]}x{r.shape[2]}": r for r in randoms})
arrays["out/D/random"] = D.run(*randoms, labels)
arrays["out/D/Gs_notrunc"] = D.run(*[arrays[f"out/Gs/notrunc/{r.shape[2]}x{r.shape[2]}"] for r in randoms], labels)

class NoSourcePickler(pickle.Pickler):  # misc.save_pkl's stream, each network's source replaced
    def reducer_override(self, obj):
        if not isinstance(obj, Network):
            return NotImplemented
        func, args, state = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[:3]
        return func, args, dict(state, build_module_src="# source omitted"), None, None

os.makedirs(os.path.join(out, name), exist_ok=True)
with open(os.path.join(out, name, "network.pkl"), "wb") as f:
    NoSourcePickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump((G, D, Gs))
np.savez_compressed(os.path.join(out, name, "expected.npz"), **arrays)
variables = {tag: {k: v.shape.as_list() for k, v in net.vars.items()} for tag, net in (("G", G), ("D", D))}
with open(os.path.join(out, name, "config.json"), "w") as f:
    json.dump(dict(cfg, G_static_kwargs=dict(G.static_kwargs), D_static_kwargs=dict(D.static_kwargs),
                   variables=variables), f, indent=1, sort_keys=True)
print(json.dumps(dict(name=name, pickle_bytes=os.path.getsize(os.path.join(out, name, "network.pkl")))))
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="checkout of msg-stylegan-tf")
    parser.add_argument("--out", default="tests/fixtures/msg_stylegan_keywords", help="fixture folder")
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), help="configurations to make")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        patched_copy(args.original, work)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        for name in args.only:
            command = [sys.executable, "-c", CHILD, work, os.path.abspath(args.out), name, json.dumps(CONFIGS[name])]
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode:
                sys.exit(f"the original code failed on {name}:\n{result.stderr[-3000:]}")
            print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()

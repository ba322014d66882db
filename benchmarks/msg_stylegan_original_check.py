"""Checks MSG-StyleGAN pickle interop against the original code itself (needs a checkout of it).

1. Imports an original `(G, D, Gs)` pickle, writes it back with `save_original_pickle`, and a fresh random
   MSG-StyleGAN of ours at --resolution (>= 128 px: the original's fused resampling convs) likewise.
2. Loads both written pickles with the original's loader (`pickle.load(f, encoding="latin1")`, i.e.
   `misc.load_pkl`, with its dnnlib) under `tf.compat.v1`, in a copy of the checkout's `dnnlib/` and
   `training/` whose `import tensorflow as tf` lines are changed to `tensorflow.compat.v1` (nothing else),
   and compares what the original computes with our outputs: G and Gs at every scale (stored noise; with
   and without truncation) and D. Prints JSON lines with the max relative differences.
3. With --count_resolutions, the trainable parameter counts of the original's own G and D at those sizes.

    python benchmarks/msg_stylegan_original_check.py --original=<msg-stylegan-tf checkout> \
        --pickle=tests/fixtures/msg_stylegan/network.pkl --count_resolutions 256 1024
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgrow_tf.interop import msg_stylegan_pickle  # noqa: E402
from vgrow_tf.models import msg_gan  # noqa: E402

# Run by the original's code in a child process: argv = work dir; prints one JSON line per pickle.
CHILD = r'''
import json, pickle, sys
import numpy as np
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
_get_variable = tf.get_variable
def get_variable(name, shape=None, *args, **kwargs):  # G_synthesis puts use_noise=True in a shape
    shape = None if shape is None else [int(s) if isinstance(s, bool) else s for s in shape]
    return _get_variable(name, shape, *args, **kwargs)
tf.get_variable = get_variable
work = sys.argv[1]
sys.path.insert(0, work)
import dnnlib.tflib as tflib
tflib.init_tf({"allow_soft_placement": True})  # Network.run pins ops to /gpu:0
for tag in ("reimported", "fresh"):
    with open(f"{work}/{tag}.pkl", "rb") as f:
        G, D, Gs = pickle.load(f, encoding="latin1")  # = misc.load_pkl
    ours = np.load(f"{work}/{tag}_ours.npz")
    z = ours["z"]
    labels = np.zeros([len(z), 0], np.float32)
    rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())
    worst = {}
    for name, net in (("G", G), ("Gs", Gs)):
        for trunc, psi, cutoff in (("notrunc", None, None), ("trunc", 0.6, 5)):
            outs = net.run(z, labels, randomize_noise=False, truncation_psi=psi, truncation_cutoff=cutoff,
                           return_as_list=True)
            worst[f"{name}/{trunc}"] = max(rel(o, ours[f"{name}/{trunc}/{i}"]) for i, o in enumerate(outs))
    scales = [ours[f"Gs/notrunc/{i}"] for i in range(len(outs))]
    worst["D"] = rel(D.run(*scales, labels)[:, 0], ours["D"])
    print(json.dumps(dict(pickle=tag, resolution=int(G.static_kwargs.resolution), max_rel_diff=worst)))
count = lambda net: sum(int(np.prod(v.shape.as_list())) for v in net.trainables.values())
for res in map(int, sys.argv[2:]):  # the original's networks at full size, default kwargs
    for group in (4, 0):
        G = tflib.Network(name=f"G{res}_{group}", num_inputs=2, func_name="training.networks_stylegan.G_style",
                          num_channels=3, resolution=res, label_size=0)
        D = tflib.Network(name=f"D{res}_{group}", num_inputs=int(np.log2(res)),
                          func_name="training.networks_stylegan.D_basic", num_channels=3, resolution=res,
                          label_size=0, mbstd_group_size=group)
        print(json.dumps(dict(original_parameters=res, mbstd_group_size=group, G=count(G), D=count(D))))
'''


def our_outputs(networks, z):
    out = {"z": z}
    for name in ("G", "Gs"):
        for trunc, psi, cutoff in (("notrunc", None, 8), ("trunc", 0.6, 5)):
            images = networks[name](z, truncation_psi=psi, truncation_cutoff=cutoff, randomize_noise=False)
            out.update({f"{name}/{trunc}/{i}": np.transpose(x.numpy(), (0, 3, 1, 2)) for i, x in enumerate(images)})
    out["D"] = networks["D"](networks["Gs"](z, randomize_noise=False)).numpy()
    return out


def patched_copy(original, work):
    for part in ("dnnlib", "training"):
        shutil.copytree(os.path.join(original, part), os.path.join(work, part))
    for root, _, files in os.walk(work):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8-sig") as f:
                    text = f.read()
                with open(path, "w", encoding="utf-8") as f:
                    f.write(re.sub(r"^import tensorflow as tf$", "import tensorflow.compat.v1 as tf", text, flags=re.M))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="checkout of msg-stylegan-tf")
    parser.add_argument("--pickle", required=True, help="a (G, D, Gs) pickle written by the original")
    parser.add_argument("--resolution", type=int, default=128, help="resolution of the fresh model of ours")
    parser.add_argument("--count_resolutions", type=int, nargs="*", default=[],
                        help="also print the original's trainable parameter counts at these sizes (e.g. 256 1024)")
    args = parser.parse_args()
    rng = np.random.RandomState(3)
    with tempfile.TemporaryDirectory() as work:
        imported = msg_stylegan_pickle.convert(args.pickle)
        msg_stylegan_pickle.save_original_pickle(imported.networks, imported.config, f"{work}/reimported.pkl")
        z = rng.randn(8, imported.config["z_dim"]).astype(np.float32)
        np.savez(f"{work}/reimported_ours.npz", **our_outputs(imported.networks, z))
        config = msg_gan.make_config("msg_stylegan", args.resolution, 3, z_dim=16, fmap_base=256, fmap_max=32,
                                     mapping_layers=2, mapping_fmaps=16)
        fresh = msg_gan.build_networks(config)
        for net in fresh.values():  # random values everywhere (the initial ones leave biases and noise weights 0)
            for w in net.weights:
                w.assign(rng.randn(*w.shape).astype(np.float32) * (0.2 if "bias" in w.path else 1.0))
        msg_stylegan_pickle.save_original_pickle(fresh, config, f"{work}/fresh.pkl")
        np.savez(f"{work}/fresh_ours.npz", **our_outputs(fresh, rng.randn(8, 16).astype(np.float32)))
        patched_copy(args.original, work)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-c", CHILD, work] + [str(r) for r in args.count_resolutions]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode:
            sys.exit(f"the original's loader failed:\n{result.stderr[-3000:]}")
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                print(line)
        print(json.dumps(dict(summary=imported.summary)))


if __name__ == "__main__":
    main()

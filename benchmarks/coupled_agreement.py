"""How well a CoGAN/SCoGAN snapshot learned the joint distribution of two digit domains.

    python benchmarks/coupled_agreement.py --classifier results/mnist+svhn-classifier/network-final.h5 \
        results/mnist+svhn-cogan/network-final.h5 results/mnist+svhn-scogan/network-final.h5

For each snapshot: the fraction of z whose two images G1(z), G2(z) the classifier puts in the same
class (chance is about 1/10 for digits; a perfect joint model scores 1), over --count latents drawn from
the distribution the model was trained on, and the entropy (bits) of each domain's class histogram: a
domain collapsed to one image scores near 0 (log2 10 = 3.32 for ten equally likely digits), and its
agreement means little; and the mutual information (bits) between the two domains' classes, which counts
a coupling whatever classes it pairs (about 0.03 for independent domains at 2000 latents, from the finite
sample). Prints one JSON line per snapshot.

    python benchmarks/coupled_agreement.py --classifier results/digits2edge-classifier/network-final.h5 \
        results/digits2edge-cogan/network-final.h5 results/digits2edge-scogan/network-final.h5
"""
import argparse
import json
import sys
import time

import numpy as np

from vgrow_tf.errors import run_cli


def entropy_bits(classes):
    p = np.bincount(classes) / len(classes)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def mutual_information_bits(a, b):
    joint = np.zeros((max(a.max(), b.max()) + 1,) * 2)
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    seen = joint > 0
    return float((joint[seen] * np.log2(joint[seen] / outer[seen])).sum())


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("snapshots", nargs="+")
    parser.add_argument("--classifier", required=True, help="classifier snapshot (train.py --model=classifier)")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv[1:])
    from vgrow_tf import snapshot
    from vgrow_tf.models import coupled_gan
    classify, _ = coupled_gan.load_classifier(args.classifier)
    for path in args.snapshots:
        snap = snapshot.load(path, expect_kind=coupled_gan.KINDS)
        start = time.time()
        a, b = coupled_gan.pair_classes(snap.networks, snap.config, classify, args.count, args.seed)
        print(json.dumps(dict(snapshot=path, model=snap.kind, same_class=round(float(np.mean(a == b)), 4),
                              entropy_a=round(entropy_bits(a), 2), entropy_b=round(entropy_bits(b), 2),
                              mutual_information=round(mutual_information_bits(a, b), 3),
                              count=args.count, seconds=round(time.time() - start, 1))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

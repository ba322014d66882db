"""GLO against PCA with the same latent size (the paper's comparison): per-pixel reconstruction MSE
([-1, 1] pixels) of training images and of held-out images (latents fitted with G frozen).

    python benchmarks/glo_reconstruction.py <run_dir>/network-final.h5 [--count 297] [--steps 300]
"""
import argparse



from vgrow_tf.errors import run_cli
from vgrow_tf.models import glo
from vgrow_tf.sampling import glo_eval


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot")
    parser.add_argument("--dataset", default=None, help="dataset directory (default: the one in the snapshot)")
    parser.add_argument("--count", type=int, default=512, help="held-out images to fit")
    parser.add_argument("--steps", type=int, default=300, help="latent-fitting steps")
    parser.add_argument("--grid", default=None, help="write a sample grid PNG here")
    args = parser.parse_args(argv)
    snap = glo_eval.load(args.snapshot)
    cfg = snap.config
    n = cfg["num_latents"]
    path = args.dataset or cfg["dataset"]
    train = glo.read_images(path, cfg["resolution"], 0, n)
    train_glo = glo_eval.mse(train, snap.generate(glo_eval.learned_latents(snap)))
    held = glo_eval.reconstruct_heldout(snap, dataset_path=path, count=args.count, steps=args.steps)
    pca_train = glo_eval.pca_baseline_mse(train, train, cfg["z_dim"])
    pca_held = glo_eval.pca_baseline_mse(train, held["images"], cfg["z_dim"])
    print(f"z_dim {cfg['z_dim']}, {n} training images, {len(held['images'])} held out")
    print(f"{'':12s}{'train MSE':>12s}{'held-out MSE':>14s}")
    print(f"{'GLO':12s}{train_glo.mean():12.4f}{held['mse'].mean():14.4f}")
    print(f"{'PCA':12s}{pca_train.mean():12.4f}{pca_held.mean():14.4f}")
    print(f"{'random z':12s}{'':12s}{held['mse_random'].mean():14.4f}")
    if args.grid:
        from vgrow_tf.sampling.images import save_grid
        save_grid(args.grid, glo_eval.generate(snap, 100, seed=0), 10, 10)
        print(f"samples: {args.grid}")


if __name__ == "__main__":
    run_cli(lambda argv: main(argv[1:]))

"""Models of the GLO TF reference: its TF1 checkpoint and data.hdf5 codes, imported and compared with the
outputs the original code computed on them (tests/fixtures/glo, see its README)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import interop, losses, snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.interop import glo_checkpoint
from vgrow_tf.models import glo
from vgrow_tf.sampling import glo_eval
from vgrow_tf.sampling.latents import LatentSampler

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "glo")
EXPECTED = np.load(os.path.join(FIXTURE, "expected.npz"))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def relative(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def snap():
    return snapshot.load(FIXTURE)


@pytest.mark.parametrize("codes, key, bn_mode", [
    ("recon_z", "G_recon", "batch"), ("gen_z", "G_gen", "batch"),
    ("recon_z", "G_recon_bn_inference", "moving"), ("gen_z", "G_gen_bn_inference", "moving")])
def test_generator_reproduces_the_original(snap, codes, key, bn_mode):
    assert relative(snap.generate(EXPECTED[codes], bn_mode=bn_mode), EXPECTED[key]) <= 1e-5


def test_architecture_codes_and_split_come_from_the_files(snap):
    config = snap.config
    assert (config["arch"], config["resolution"], config["channels"], config["z_dim"]) == ("reference", 32, 1, 10)
    assert config["widths"] == [100, 50, 25, 6, 1] and config["num_latents"] == 64
    assert [bn.epsilon for bn in snap.networks["G"].bns] == [1e-3] * 4
    np.testing.assert_array_equal(snap.arrays["latents"], EXPECTED["codes"])
    np.testing.assert_array_equal(snap.arrays["learned"], EXPECTED["codes_has_update"])
    np.testing.assert_array_equal(snap.arrays["train_order"][:16], EXPECTED["recon_ids"])


def test_reconstruct_mode_decodes_the_originals_batch(snap):
    """The first 16 training examples of the original's split, decoded as one batch with the original's
    BN, are its G_recon; their images are what it fed, and the local-moment loss is its loss."""
    rec = glo_eval.reconstruct_training(snap, count=16, bn_mode="batch")
    np.testing.assert_array_equal(rec["indices"], EXPECTED["recon_ids"])
    np.testing.assert_array_equal(rec["images"], EXPECTED["recon_x"])
    assert relative(rec["reconstructions"], EXPECTED["G_recon"]) <= 1e-5
    loss = np.mean(losses.local_moment_loss(tf.constant(rec["images"]), tf.constant(rec["reconstructions"])))
    assert relative(loss, EXPECTED["loss_recon"]) <= 1e-5


def test_sampling_fits_the_learned_codes_only(snap):
    learned = EXPECTED["codes"][EXPECTED["codes_has_update"]]
    mean = learned.astype(np.float64).mean(0)
    cov = np.cov(learned.T.astype(np.float64), bias=True)
    expect = glo.sample_gaussian(mean, cov, 5, seed=7)
    np.testing.assert_allclose(LatentSampler(snap).draw(5, 7), expect, rtol=1e-5, atol=1e-6)


def test_every_spelling_of_the_checkpoint_is_detected():
    for path in (FIXTURE, os.path.join(FIXTURE, "model-3"), os.path.join(FIXTURE, "model-3.index"),
                 os.path.join(FIXTURE, "model-3.data-00000-of-00001")):
        assert interop.detect(path) == "glo_tf_ckpt", path
    assert not glo_checkpoint.detect(os.path.join(FIXTURE, "expected.npz"))


def test_roundtrip_through_our_snapshot(snap, tmp_path):
    path = snapshot.save(str(tmp_path / "glo.h5"), snap.kind, snap.config, snap.networks, snap.arrays)
    again = snapshot.load(path)
    assert relative(again.generate(EXPECTED["recon_z"], bn_mode="batch"), EXPECTED["G_recon"]) <= 1e-5
    np.testing.assert_array_equal(again.arrays["train_order"], snap.arrays["train_order"])


# --- the original's run layout and bad files -------------------------------------------------------

def _copy_checkpoint(dest):
    os.makedirs(dest, exist_ok=True)
    for name in ("checkpoint", "model-3.index", "model-3.data-00000-of-00001"):
        shutil.copy(os.path.join(FIXTURE, name), dest)
    return dest


def test_codes_found_in_the_originals_layout_or_named(tmp_path):
    """The original runs from its repo root: train_dir/<run>/model-N and datasets/<name>/data.hdf5."""
    run = _copy_checkpoint(str(tmp_path / "train_dir" / "default-MNIST_lr_0.0001-20260101"))
    with open(os.path.join(run, "checkpoint"), "w") as f:  # as the trainer's Saver records it, cwd-relative
        f.write('model_checkpoint_path: "./train_dir/default-MNIST_lr_0.0001-20260101/model-3"\n')
    with pytest.raises(UserError, match="no GLO latent-code files"):
        snapshot.load(run)
    shutil.copytree(os.path.join(FIXTURE, "datasets"), str(tmp_path / "datasets"))
    assert snapshot.load(run).config["dataset"] == str(tmp_path / "datasets" / "mnist" / "data.hdf5")
    elsewhere = _copy_checkpoint(str(tmp_path / "elsewhere"))
    named = snapshot.load(elsewhere, data_file=str(tmp_path / "datasets" / "mnist" / "data.hdf5"))
    np.testing.assert_array_equal(named.arrays["latents"], EXPECTED["codes"])


def _save_v2(prefix, tensors):
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(tensors), shape_and_slices=[""] * len(tensors),
                      tensors=[tf.constant(v) for v in tensors.values()])


def test_missing_variable_is_one_clear_line(tmp_path):
    reader = tf.train.load_checkpoint(os.path.join(FIXTURE, "model-3"))
    kept = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.startswith("g/") and n != "g/BatchNorm_2/gamma"}
    _save_v2(str(tmp_path / "model-5"), kept)
    with pytest.raises(UserError) as e:
        glo_checkpoint.convert(str(tmp_path / "model-5"), data_file=os.path.join(FIXTURE, "datasets/mnist/data.hdf5"))
    assert "g/BatchNorm_2/gamma" in str(e.value) and "\n" not in str(e.value)


def test_truncated_files_are_one_clear_line(tmp_path):
    run = _copy_checkpoint(str(tmp_path / "run"))
    data = os.path.join(run, "model-3.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 3)
    hdf5 = os.path.join(FIXTURE, "datasets/mnist/data.hdf5")
    with pytest.raises(UserError, match="truncated") as e:
        glo_checkpoint.convert(run, data_file=hdf5)
    assert "\n" not in str(e.value)
    index = os.path.join(run, "model-3.index")
    with open(index, "r+b") as f:
        f.truncate(100)
    assert not interop.detect(run)
    with pytest.raises(UserError, match="truncated") as e:
        glo_checkpoint.convert(run, data_file=hdf5)
    assert "\n" not in str(e.value)
    short = str(tmp_path / "data.hdf5")
    with open(hdf5, "rb") as src, open(short, "wb") as dst:
        dst.write(src.read(5000))
    with pytest.raises(UserError, match="truncated or not HDF5"):
        glo_checkpoint.convert(FIXTURE, data_file=short)


def test_generate_samples_reconstructs_the_original_as_typed(tmp_path):
    """As a user types it: the run dir given relative from the original's repo root, the original's BN."""
    run = _copy_checkpoint(str(tmp_path / "train_dir" / "default-MNIST_lr_0.0001-1"))
    shutil.copytree(os.path.join(FIXTURE, "datasets"), str(tmp_path / "datasets"))
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, os.path.join(REPO, "generate_samples.py"),
                          f"--snapshot={os.path.relpath(run, tmp_path)}", "--out_dir=out", "--mode=reconstruct",
                          "--bn_mode=batch", "--count=16"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    expect = np.mean(np.square(EXPECTED["G_recon"].astype(np.float64) - EXPECTED["recon_x"]))
    assert f"train_mse {expect:.5f}" in out.stdout
    assert os.listdir(tmp_path / "out") == ["reconstruct-train.png"]
    # pairs original | reconstruction, 4 per row: 1 px of dark grey inside a pair, 4 px of mid-grey between
    from PIL import Image
    grid = np.asarray(Image.open(tmp_path / "out" / "reconstruct-train.png"))
    h, w = EXPECTED["recon_x"].shape[1:3]
    assert grid.shape[:2] == (4 * h + 3 * 4, 4 * (2 * w + 1) + 3 * 4)
    quantise = lambda x: np.clip(np.rint(x * 127.5 + 127.5), 0, 255).reshape(h, w)  # noqa: E731
    assert np.abs(grid[:h, :w] - quantise(EXPECTED["recon_x"][0])).max() <= 1
    assert np.abs(grid[:h, w + 1:2 * w + 1] - quantise(EXPECTED["G_recon"][0])).max() <= 1
    assert (grid[:h, w] == 64).all() and (grid[:h, 2 * w + 1:2 * w + 5] == 128).all()


def test_generate_and_interpolate_modes_on_the_original(snap, tmp_path):
    from vgrow_tf.sampling import modes
    for mode, name in (("generate", "glo-samples.png"), ("interpolate", "glo-interpolations.png")):
        paths = modes.save_glo(snap, str(tmp_path), mode, rows=2, cols=3, steps=3, pairs=2, bn_mode="batch")
        assert paths == [str(tmp_path / name)] and os.path.getsize(paths[0]) > 0

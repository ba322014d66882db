"""convert_snapshot.py and the sampling/metrics programs on models saved by the original codes, typed as a
user would: a fresh current directory and relative paths."""
import os
import shutil

import numpy as np
import pytest

from test_cli_as_typed import ROOT, TF_NOISE, ok, typed

FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def test_convert_writes_a_snapshot_that_computes_what_the_pickle_does(tmp_path):
    from vgrow_tf import snapshot
    shutil.copy(os.path.join(FIXTURES, "msg_stylegan", "network.pkl"), tmp_path / "best_model.pkl")
    result = ok(typed(tmp_path, "convert_snapshot.py", "best_model.pkl", "model.h5"))
    assert "msg_stylegan_pkl -> msg_stylegan" in result.stdout
    for setting in ("fmap_base=512", "fmap_max=64", "mapping_fmaps=64", "mapping_layers=4"):  # every setting
        assert f" {setting} " in result.stdout, setting
    assert not TF_NOISE.search(result.stderr), result.stderr
    converted = snapshot.load(str(tmp_path / "model.h5"))
    original = snapshot.load(str(tmp_path / "best_model.pkl"))
    z = np.random.RandomState(0).randn(2, converted.latent_dim).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(converted.generate(z, randomize_noise=False)),
                                  np.asarray(original.generate(z, randomize_noise=False)))

    again = typed(tmp_path, "convert_snapshot.py", "best_model.pkl", "model.h5")
    assert again.returncode == 2 and "--overwrite" in again.stderr.strip().splitlines()[-1]


def test_convert_refuses_what_no_original_wrote(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    result = typed(tmp_path, "convert_snapshot.py", "notes.txt", "out.h5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: notes.txt is neither a vgrow_tf snapshot nor a model file of an original code (msg_stylegan_pkl, pgvgrow_ckpt, glo_tf_ckpt, "
        "scogan_keras, bmsg_gan_npz); pass --kind to name its format"]
    assert not (tmp_path / "out.h5").exists()


def test_generate_samples_reads_an_original_checkpoint_directly(tmp_path):
    shutil.copytree(os.path.join(FIXTURES, "vgrow_pg"), tmp_path / "pgvgrow_run")
    ok(typed(tmp_path, "generate_samples.py", "--snapshot=pgvgrow_run", "--mode=grid", "--rows=2", "--cols=2",
             "--out_dir=out"))
    assert os.listdir(tmp_path / "out")


def test_train_resume_from_an_original_pickle_starts_from_its_weights(tmp_path):
    """--resume_from with an msg-stylegan-tf pickle: the final snapshot of a run of one tiny tick (4 images
    and a learning rate of 0) holds the pickle's weights, and a wrong --model is refused."""
    from vgrow_tf import snapshot
    from vgrow_tf.data import tool
    from vgrow_tf.errors import UserError
    from vgrow_tf.training import loop
    from vgrow_tf.training.options import make_options

    data = str(tmp_path / "rgb32")
    images = np.random.RandomState(0).randint(0, 256, [8, 3, 32, 32]).astype(np.uint8)
    tool.write_dataset(data, tool.array_images(images, range(8)), 8)
    pickle = os.path.join(FIXTURES, "msg_stylegan", "network.pkl")
    original = snapshot.load(pickle)
    arch = dict(z_dim=64, fmap_base=512, fmap_max=64, mapping_layers=4, mapping_fmaps=64, batch_size=4,
                total_kimg=0.004, tick_kimg=0.004, snapshot_kimg=0.004, num_row=2, num_line=2)
    run_dir = tmp_path / "run"
    loop.train(make_options("msg_stylegan", dataset=data, run_dir=str(run_dir), resume_from=pickle,
                            learning_rate=0.0, G_smoothing_kimg=0.0, **arch))
    trained = snapshot.load(str(run_dir / "network-final.h5"))
    for name in ("G", "D"):  # learning rate 0: the trained weights are the pickle's
        for a, b in zip(original.networks[name].trainable_weights, trained.networks[name].trainable_weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{name} {a.path}")
    with pytest.raises(UserError, match="is a 'msg_stylegan' model; this run trains --model=msg_progan"):
        loop.train(make_options("msg_progan", dataset=data, run_dir=str(tmp_path / "other"), resume_from=pickle,
                                **arch))

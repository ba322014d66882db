"""convert_snapshot.py and the sampling/metrics programs on models saved by the original codes, typed as a
user would: a fresh current directory and relative paths."""
import os
import shutil

import numpy as np

from test_cli_as_typed import ROOT, TF_NOISE, ok, typed

FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def test_convert_writes_a_snapshot_that_computes_what_the_pickle_does(tmp_path):
    from vgrow_tf import snapshot
    shutil.copy(os.path.join(FIXTURES, "msg_stylegan", "network.pkl"), tmp_path / "best_model.pkl")
    result = ok(typed(tmp_path, "convert_snapshot.py", "best_model.pkl", "model.h5"))
    assert "msg_stylegan_pkl -> msg_stylegan" in result.stdout
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
        "Error: notes.txt is not a model file of an original code (msg_stylegan_pkl, pgvgrow_ckpt, glo_tf_ckpt, "
        "scogan_keras); pass --kind to name its format"]
    assert not (tmp_path / "out.h5").exists()


def test_generate_samples_reads_an_original_checkpoint_directly(tmp_path):
    shutil.copytree(os.path.join(FIXTURES, "vgrow_pg"), tmp_path / "pgvgrow_run")
    ok(typed(tmp_path, "generate_samples.py", "--snapshot=pgvgrow_run", "--mode=grid", "--rows=2", "--cols=2",
             "--out_dir=out"))
    assert os.listdir(tmp_path / "out")

"""PGVGrow checkpoints: the import reproduces what the original code computed, and --resume_from.

The fixture (tests/fixtures/vgrow_pg, see its README) was written by PGVGrow's own train.py: a 16 px,
3-channel, z 32, 16-feature-map model after two training iterations, with the outputs its graph
computed for the stored latents and real batches at lod 0 and lod 1.25.
"""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import interop, snapshot
from vgrow_tf.data import tool
from vgrow_tf.errors import UserError
from vgrow_tf.interop import pgvgrow_checkpoint as pgvgrow
from vgrow_tf.models import vgrow_pg
from vgrow_tf.training import loop
from vgrow_tf.training.options import make_options

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "vgrow_pg")
PREFIX = os.path.join(FIXTURE, "networks-02400256.ckpt")
LODS = (0.0, 1.25)


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


@pytest.fixture(scope="module")
def imported():
    return snapshot.load(PREFIX)


def rel_diff(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


@pytest.mark.parametrize("lod", LODS)
def test_every_stored_output_is_reproduced(imported, expected, lod):
    key = f"lod{lod:g}"
    level, alpha = vgrow_pg._level(imported.config, lod)
    nets = imported.networks
    for g in ("G", "Gs"):  # G and Gs hold different weights: a swap fails here
        assert rel_diff(nets[g](expected["z"], level=level, alpha=alpha), expected[f"{g}_{key}"]) <= 1e-5
    d_real = nets["D"](expected[f"x_{key}"], level=level, alpha=alpha)  # minibatch stddev: the whole batch
    d_fake = nets["D"](expected[f"G_{key}"], level=level, alpha=alpha)
    assert rel_diff(d_real, expected[f"D_real_{key}"][:, 0]) <= 1e-5
    assert rel_diff(d_fake, expected[f"D_fake_{key}"][:, 0]) <= 1e-5


def test_architecture_and_lod_are_inferred(imported, expected):
    assert imported.kind == "vgrow_pg"
    assert {k: imported.config[k] for k in ("resolution", "channels", "z_dim", "fmaps", "lod")} == \
        dict(resolution=16, channels=3, z_dim=32, fmaps=16, lod=0.0)  # lod(2400256) = 0 in train.py
    assert not imported.config["fix_4x4_pixelnorm"]
    assert rel_diff(imported.generate(expected["z"]), expected["Gs_lod0"]) <= 1e-5


@pytest.mark.parametrize("name", ["networks-02400256.ckpt", "networks-02400256.ckpt.index",
                                  "networks-02400256.ckpt.data-00000-of-00001", ""])
def test_prefix_file_names_and_run_directory_are_accepted(name):
    path = os.path.join(FIXTURE, name)
    assert interop.detect(path) == "pgvgrow_ckpt"
    assert pgvgrow.resolve_prefix(path) == PREFIX


def test_lod_given_or_from_the_image_count(expected, tmp_path):
    given = interop.load(PREFIX, lod=1.25)
    assert given.config["lod"] == 1.25 and "lod 1.25 (given)" in given.summary
    snap = snapshot.load(PREFIX, lod=1.25)
    assert rel_diff(snap.generate(expected["z"]), expected["Gs_lod1.25"]) <= 1e-5
    # The same weights saved mid-fade: 900000 images = the 8x8 fade half done in train.py's lod().
    for ext in (".index", ".data-00000-of-00001"):
        shutil.copy(PREFIX + ext, tmp_path / f"networks-00900000.ckpt{ext}")
    assert interop.load(str(tmp_path)).config["lod"] == 1.5
    with pytest.raises(UserError, match="lod 3 is outside 0..2"):
        interop.load(PREFIX, lod=3)


# --- bad input: one line each -----------------------------------------------------------------------

def _write_checkpoint(prefix, arrays):
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[n]) for n in names])


def test_missing_variables_are_named(tmp_path):
    reader = tf.train.load_checkpoint(PREFIX)
    arrays = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
              if not n.startswith("generator_smoothing/")}
    _write_checkpoint(tmp_path / "networks-00000000.ckpt", arrays)
    with pytest.raises(UserError, match=r"lacks generator_smoothing/.* and 17 more; the checkpoint is incomplete"):
        interop.load(str(tmp_path / "networks-00000000.ckpt"))


def test_truncated_files_are_reported(tmp_path):
    for ext in (".index", ".data-00000-of-00001"):
        shutil.copy(PREFIX + ext, tmp_path / f"networks-00000001.ckpt{ext}")
    data = tmp_path / "networks-00000001.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        interop.load(str(tmp_path))
    index = tmp_path / "networks-00000001.ckpt.index"
    index.write_bytes(index.read_bytes()[:100])
    with pytest.raises(UserError, match="index is truncated or corrupt"):
        interop.load(str(tmp_path), source_format="pgvgrow_ckpt")


def test_checkpoint_of_another_project_is_refused(tmp_path):
    prefix = tf.train.Checkpoint(w=tf.Variable([1.0])).write(str(tmp_path / "ckpt-1"))
    assert interop.detect(prefix) is None
    with pytest.raises(UserError, match="neither a vgrow_tf snapshot nor a model file"):
        snapshot.load(prefix)
    with pytest.raises(UserError, match="is a TF checkpoint but not PGVGrow's"):
        interop.load(prefix, source_format="pgvgrow_ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no checkpoint"):
        interop.load(str(tmp_path / "empty"), source_format="pgvgrow_ckpt")


def test_attention_is_dropped_only_when_it_is_an_identity():
    class Reader:
        def __init__(self, gamma):
            self.gamma = gamma

        def get_tensor(self, name):
            return np.array([self.gamma], np.float32)

    shapes = {"generator/32x32/Attention/Gamma": [1], "discriminator/32x32/Attention/Gamma": [1]}
    pgvgrow._check_attention("p", Reader(0.0), shapes)
    with pytest.raises(UserError, match="self-attention block has gamma 0.5"):
        pgvgrow._check_attention("p", Reader(0.5), shapes)


# --- fine-tuning from the original: --resume_from -----------------------------------------------------

@pytest.fixture(scope="module")
def rgb16(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data") / "rgb16")
    images = np.random.RandomState(0).randint(0, 256, [16, 3, 16, 16]).astype(np.uint8)
    tool.write_dataset(path, tool.array_images(images, range(16)), 16)
    return path


ARCH = dict(z_dim=32, fmaps=16, batch_size=8)


def test_trainer_starts_from_the_originals_weights_and_adam_state(rgb16, expected):
    options = make_options("vgrow_pg", dataset=rgb16, **ARCH)
    trainer = vgrow_pg.Trainer(options, tf.distribute.get_strategy(), vgrow_pg.Trainer.inspect_data(options))
    assert trainer.start_from(FIXTURE) == 2400256
    assert rel_diff(trainer.G(expected["z"], level=4), expected["G_lod0"]) <= 1e-5
    assert rel_diff(trainer.Gs(expected["z"], level=4), expected["Gs_lod0"]) <= 1e-5
    reader = tf.train.load_checkpoint(PREFIX)
    kernel = trainer.D.blocks[1][0].kernel  # D's 16x16/Conv1
    index = trainer.opt_d._get_variable_index(kernel)
    np.testing.assert_array_equal(trainer.opt_d._velocities[index],
                                  reader.get_tensor("discriminator/16x16/Conv1/Kernel/opt_d_1"))
    assert int(trainer.opt_g.iterations) == 2 and int(trainer.opt_d.iterations) == 2  # 0.99**3 stored
    # The reals as the original's process_real feeds them to D (uint8 -> [-1, 1], fade, upscale).
    for lod in LODS:
        level, alpha = vgrow_pg._level(trainer.config(), lod)
        reals = tf.constant(expected[f"x_uint8_lod{lod:g}"], tf.float32) / 127.5 - 1.0
        assert rel_diff(trainer._canvas_reals(reals, level, alpha), expected[f"x_lod{lod:g}"]) <= 1e-6
    # Training continues the original's Adam (no reset at lod 0): the step count goes on from 2.
    trainer.train_iteration(2400256)
    assert int(trainer.opt_g.iterations) == 3 and int(trainer.opt_d.iterations) == 3


def test_train_resume_from_continues_at_the_originals_image_count(rgb16, tmp_path):
    run_dir = tmp_path / "run"  # total = the original's count: the loop starts there, with nothing to do
    with pytest.raises(UserError, match="already at 2400.26 kimg, past the training length of 2400.26 kimg"):
        loop.train(make_options("vgrow_pg", dataset=rgb16, run_dir=str(run_dir), resume_from=PREFIX,
                                total_nimg=2400256, **ARCH))
    assert not run_dir.exists()  # a run refused at start leaves nothing behind
    with pytest.raises(UserError, match="another architecture than --z_dim=64 \\(the model has z_dim=32\\)"):
        loop.train(make_options("vgrow_pg", dataset=rgb16, run_dir=str(tmp_path / "other"), resume_from=PREFIX,
                                total_nimg=2400264, batch_size=8, z_dim=64))
    with pytest.raises(UserError, match="--resume_from is not supported for --model=glo"):
        loop.train(make_options("glo", dataset=rgb16, run_dir=str(tmp_path / "glo"), resume_from=PREFIX,
                                total_nimg=8, batch_size=8, z_dim=8))

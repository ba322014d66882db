"""SCoGAN models saved by the original code (Keras-2 SavedModel folders) load here and compute the
original's outputs; a bad folder is one clear line."""
import os
import shutil

import numpy as np
import pytest

from vgrow_tf import interop, snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.interop import scogan_keras

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "scogan")
TOLERANCE = 1e-5  # max |ours - original| / max |original|


def relative_error(ours, expected):
    ours = np.asarray(ours, np.float64).reshape(expected.shape)
    return np.max(np.abs(ours - expected)) / np.max(np.abs(expected))


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


@pytest.fixture(scope="module")
def imported():
    return snapshot.load(FIXTURE)


def test_detected_and_architecture_inferred(imported):
    assert interop.detect(FIXTURE) == "scogan_keras"
    assert imported.kind == "scogan"
    c = imported.config
    assert (c["arch"], c["resolution"], c["channels"], c["z_dim"], c["fmaps"]) == ("digits", 32, 3, 100, 64)
    assert c["prelu"] == "element" and c["cycle"] and c["noise_type"] == "uniform"
    assert set(imported.networks) == {"G1", "G2", "D1", "D2", "E"}
    # the parameter counts the original printed into config.txt (gen: 144,379 of which 144,139
    # trainable; disc: 8,738)
    g1 = imported.networks["G1"]
    assert g1.count_params() == 144379
    assert sum(int(np.prod(v.shape)) for v in g1.trainable_weights) == 144139
    assert imported.networks["D1"].count_params() == 8738


def test_every_stored_output_is_reproduced(imported, expected):
    n, e = imported.networks, expected
    count = len(e["x"])
    z = e["z"]
    for g in ("G1", "G2"):
        out = [o.numpy() for o in n[g](z, training=False)]
        assert relative_error(out[0][:count], e[f"{g}_feat0_8x8"]) <= TOLERANCE
        assert relative_error(out[1][:count], e[f"{g}_feat1_16x16"]) <= TOLERANCE
        assert relative_error(out[-1][:count], e[f"{g}_image"]) <= TOLERANCE
    for d in ("D1", "D2"):
        assert relative_error(n[d](e["x"]), e[f"{d}_real"]) <= TOLERANCE
        assert relative_error(n[d](e[f"G{d[1]}_image"]), e[f"{d}_fake"]) <= TOLERANCE
    assert relative_error(n["E"](e["x"]), e["E_real"]) <= TOLERANCE
    assert relative_error(n["E"](e["G1_image"]), e["E_fake1"]) <= TOLERANCE
    # sampling through the family's generate() is G1's image in inference mode
    images = imported.generate(z[:count], domain="a")
    assert relative_error(images, e["G1_image"]) <= TOLERANCE


def test_training_mode_uses_batch_statistics_as_the_original(expected):
    nets = snapshot.load(FIXTURE).networks  # its own copy: training=True moves the BN statistics
    for g in ("G1", "G2"):
        image = nets[g](expected["z"], training=True)[-1]
        assert relative_error(image, expected[f"{g}_image_trainmode"]) <= TOLERANCE


def test_a_model_folder_stands_for_its_run_and_converts_to_our_snapshot(expected, tmp_path):
    imported = scogan_keras.convert(os.path.join(FIXTURE, "generator1"))
    assert "digits 32 px" in imported.summary and imported.config["fmaps"] == 64
    path = str(tmp_path / "scogan.h5")
    snapshot.save(path, imported.kind, imported.config, imported.networks)
    again = snapshot.load(path)
    count = len(expected["x"])
    assert relative_error(again.generate(expected["z"][:count], domain="b"), expected["G2_image"]) <= TOLERANCE


def _copy(tmp_path, skip=None):
    root = tmp_path / "run"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(*(skip or [])))
    return root


def test_without_encoder_imports_without_cycle(tmp_path):
    root = _copy(tmp_path, ["encoder"])
    imported = scogan_keras.convert(str(root))
    assert "E" not in imported.networks and not imported.config["cycle"]


@pytest.mark.parametrize("damage,message", [
    ("no_d2", "lacks the SCoGAN model folder.*discriminator2"),
    ("no_variables", "generator1 has no variables/variables.index"),
    ("truncated", "cannot read the weights"),
    ("cogan", "gan_type cogan"),
    ("swapped", r"discriminator1 weight layer 0 \(kernel\) has shape \[3, 3, 3, 4\]"),
])
def test_bad_folders_are_one_clear_line(tmp_path, damage, message):
    root = _copy(tmp_path)
    if damage == "no_d2":
        shutil.rmtree(root / "discriminator2")
    elif damage == "no_variables":
        shutil.rmtree(root / "generator1" / "variables")
        (root / "generator1" / "saved_model.pb").write_bytes(b"")
    elif damage == "truncated":
        data = root / "generator2" / "variables" / "variables.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:1000])
    elif damage == "swapped":  # the encoder's weights where discriminator1's belong
        shutil.rmtree(root / "discriminator1")
        shutil.copytree(root / "encoder", root / "discriminator1")
    else:
        text = (root / "config.txt").read_text().replace("gan_type: scogan", "gan_type: cogan")
        (root / "config.txt").write_text(text)
    with pytest.raises(UserError, match=message) as info:
        snapshot.load(str(root))
    assert "\n" not in str(info.value)


def test_other_folders_are_not_detected(tmp_path):
    assert not scogan_keras.detect(str(tmp_path))
    assert not scogan_keras.detect(os.path.join(FIXTURE, "expected.npz"))


FACES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "scogan_faces")


def test_faces_architecture_with_nested_discriminator_is_reproduced():
    imported = snapshot.load(FACES)
    e = dict(np.load(os.path.join(FACES, "expected.npz")))
    c, n = imported.config, imported.networks
    assert (c["arch"], c["resolution"], c["fmaps"], c["cycle"]) == ("faces", 128, 32, False)
    assert n["G1"].count_params() == 95193 and n["D1"].count_params() == 38529  # Keras 2's counts
    for g in ("G1", "G2"):
        out = n[g](e["z"], training=False)
        assert len(out) == 5
        for i, o in enumerate(out):
            assert relative_error(o, e[f"{g}_out{i}"]) <= TOLERANCE, (g, i)
        assert relative_error(n["D" + g[1]](out[-1]), e[f"D{g[1]}_fake"]) <= TOLERANCE

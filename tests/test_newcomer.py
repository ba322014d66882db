"""What a new user meets first, typed as they type it (a scratch current directory, relative paths): every
form of an original model in every program, fine-tuning that takes the model's architecture, refusals
instead of silent mistakes, one-line errors that say what is wrong, the installed commands."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from test_cli_as_typed import ROOT, ok, typed, user_env
from vgrow_tf import snapshot
from vgrow_tf.errors import UserError

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
FORMS = {  # every way the docs show to name an original model -> its format
    "pg": "pgvgrow_ckpt", "pg/networks-02400256.ckpt": "pgvgrow_ckpt",
    "pg/networks-02400256.ckpt.index": "pgvgrow_ckpt",
    "pg/networks-02400256.ckpt.data-00000-of-00001": "pgvgrow_ckpt",
    "glo": "glo_tf_ckpt", "glo/model-3": "glo_tf_ckpt", "glo/model-3.index": "glo_tf_ckpt",
    "sco": "scogan_keras", "sco/generator1": "scogan_keras", "network.pkl": "msg_stylegan_pkl",
}


def refused(result, *fragments):
    """Exit 2 with one `Error:` line holding every fragment, and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines and lines[-1].startswith("Error: "), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


def installed(cwd, program, *args):
    """The installed console command `vgrow-<program>` (what its entry point runs), typed in `cwd`."""
    command = "vgrow-" + program.replace("_", "-")
    code = f"import sys; sys.argv[0] = {command!r}; from vgrow_tf.cli.{program} import run; sys.exit(run())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=user_env(), capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def cwd(tmp_path_factory):
    """A user's folder: the original models as they copied them, a 16 px RGB dataset like the PGVGrow model's,
    8 px grayscale digits, a small feature network, one of our snapshots."""
    import keras

    from vgrow_tf.data import tool
    from vgrow_tf.models import vgrow_pg
    root = tmp_path_factory.mktemp("user")
    shutil.copytree(os.path.join(FIXTURES, "vgrow_pg"), root / "pg")
    shutil.copytree(os.path.join(FIXTURES, "glo"), root / "glo")
    shutil.copytree(os.path.join(FIXTURES, "scogan"), root / "sco")
    shutil.copy(os.path.join(FIXTURES, "msg_stylegan", "network.pkl"), root / "network.pkl")
    images = np.random.RandomState(0).randint(0, 256, [32, 3, 16, 16]).astype(np.uint8)
    tool.write_dataset(str(root / "rgb16"), tool.array_images(images, range(32)), 32)
    tool.create_digits(str(root / "digits8"), resolution=8)
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
                      keras.layers.GlobalAveragePooling2D(name="pool"),
                      keras.layers.Dense(10, name="logits")]).save(str(root / "classifier.keras"))
    config = vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8)
    snapshot.save(str(root / "ours.h5"), vgrow_pg.KIND, config, vgrow_pg.build_networks(config))
    return root


# --- 1. one resolution of "what is this path" -----------------------------------------------------------

def test_every_form_of_every_original_model_resolves_to_its_format(cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    for path, source_format in FORMS.items():
        assert snapshot.resolve(path) == snapshot.Source(path, source_format), path
        assert snapshot.resolve(path, source_format=source_format).source_format == source_format  # --kind
    assert snapshot.resolve("ours.h5") == snapshot.Source("ours.h5")
    with pytest.raises(UserError, match="^--snapshot pg is not a glo_tf_ckpt model: it is pgvgrow_ckpt; drop --kind"):
        snapshot.resolve("pg", source_format="glo_tf_ckpt")
    with pytest.raises(UserError, match="^--snapshot nothing.pkl does not exist$"):
        snapshot.resolve("nothing.pkl")


def test_run_metrics_takes_a_pgvgrow_checkpoint_prefix_and_a_classifier_feature_net(cwd):
    """Refused before as 'does not exist'. The classifier's features are its layer before the logits, and
    KID is of the order a KID is (the logits gave 28324942 x10^3)."""
    result = ok(typed(cwd, "run_metrics.py", "--snapshot=pg/networks-02400256.ckpt", "--dataset=rgb16",
                      "--metrics=kid32", "--feature_net=classifier.keras", "--cache_dir=cache", "--noprogress",
                      "--output=scores"))
    assert "features from layer 'pool'" in result.stderr
    with open(cwd / "scores" / "metrics.jsonl") as f:
        record = json.loads(f.readline())
    assert record["feature_net"].endswith("classifier.keras:pool") and abs(record["value"]) < 1.0


def test_generate_samples_refines_an_imported_scogan_named_by_its_generator_folder(cwd):
    """`sco/generator1` was refused; DGflow said the imported SCoGAN has no discriminator."""
    ok(typed(cwd, "generate_samples.py", "--snapshot=sco/generator1", "--out_dir=refined", "--seeds=0-1",
             "--refine=dgflow", "--dgflow_steps=2", "--domain=b"))
    assert {"seed0000.png", "seed0001.png", "dgflow.npz"} <= set(os.listdir(cwd / "refined"))
    with open(cwd / "refined" / "dgflow-logits.json") as f:
        by_step = json.load(f)["mean_logit_by_step"]
    assert by_step["2"] > by_step["0"]  # the flow climbs D2's logit


def test_dgflow_reads_each_domains_imported_discriminator():
    expected = np.load(os.path.join(FIXTURES, "scogan", "expected.npz"))
    snap = snapshot.load(os.path.join(FIXTURES, "scogan"))
    assert snap.has_discriminator()
    for domain, name in (("a", "D1"), ("b", "D2")):
        ours = np.asarray(snap.discriminator_logit(expected["x"], domain=domain), np.float64).reshape(-1, 1)
        assert np.max(np.abs(ours - expected[f"{name}_real"])) / np.max(np.abs(expected[f"{name}_real"])) <= 1e-5


def test_convert_snapshot_on_our_own_snapshot_says_so(cwd):
    refused(typed(cwd, "convert_snapshot.py", "ours.h5", "copy.h5"),
            "ours.h5 is already a vgrow_tf snapshot (vgrow_pg, ", "fmaps=8", "nothing to convert")
    assert not (cwd / "copy.h5").exists()


# --- 2 and 3. --resume_from takes the architecture; a run past its length is refused --------------------

def test_resume_from_a_pgvgrow_checkpoint_takes_its_architecture_and_refuses_a_run_past_its_length(cwd):
    result = typed(cwd, "train.py", "--model=vgrow_pg", "--dataset=rgb16", "--run_dir=ft",
                   "--resume_from=pg/networks-02400256.ckpt.index", "--total_kimg=1")
    assert "taking its architecture: --fmaps=16 --resolution=16 --z_dim=32" in result.stdout
    refused(result, "already at 2400.26 kimg, past the training length of 1 kimg", "--total_kimg=2501")
    assert not (cwd / "ft" / "network-final.h5").exists()


@pytest.mark.parametrize("model, source, taken, contradiction", [
    ("msg_stylegan", "network.pkl", dict(fmap_base=512, fmap_max=64, z_dim=64, mapping_layers=4, mapping_fmaps=64),
     dict(mapping_layers=8)),
    ("scogan", "sco", dict(coupled_arch="digits", z_dim=100, resolution=32, fmaps=64), dict(z_dim=64)),
])
def test_resume_from_takes_every_architecture_setting_of_msg_and_scogan(cwd, monkeypatch, model, source, taken,
                                                                        contradiction):
    """What the command above does for PGVGrow (a contradiction is refused for it in test_interop_pgvgrow)."""
    from vgrow_tf import models
    from vgrow_tf.training import loop
    from vgrow_tf.training.options import make_options
    monkeypatch.chdir(cwd)
    family = models.get_family(model)
    options = make_options(model, resume_from=source, dataset_b="b")
    loop.load_start_model(options, family, None)
    assert {k: getattr(options, k) for k in taken} == taken
    (name, value), = contradiction.items()
    with pytest.raises(UserError, match=f"another architecture than --{name}={value} \\(the model has {name}="):
        loop.load_start_model(make_options(model, resume_from=source, dataset_b="b", **contradiction), family, None)


def test_run_metrics_refuses_a_model_unlike_the_reals(cwd):
    refused(typed(cwd, "run_metrics.py", "--snapshot=pg", "--dataset=digits8", "--metrics=fid32",
                  "--feature_net=classifier.keras"),
            "makes 16x16 images with 3 channel(s), the reals of digits8 are 8x8 with 1", "--resolution=16")


# --- 4. ordinary mistakes are one line ---------------------------------------------------------------------

def test_a_file_as_out_dir_and_a_directory_as_feature_net_are_one_line(cwd):
    (cwd / "taken").write_text("")
    refused(typed(cwd, "generate_samples.py", "--snapshot=ours.h5", "--out_dir=taken", "--seeds=0"),
            "--out_dir taken is a file, not a directory")
    os.makedirs(cwd / "bad" / "dir.h5", exist_ok=True)
    refused(typed(cwd, "run_metrics.py", "--snapshot=pg", "--dataset=rgb16", "--metrics=fid32",
                  "--feature_net=bad/dir.h5"), "bad/dir.h5 is a directory without saved_model.pb")


# --- 6. installed commands outside the checkout ----------------------------------------------------------

def test_installed_train_finds_the_packaged_configs_from_any_directory(tmp_path):
    result = installed(tmp_path, "train", "--flagfile=configs/vgrow_pg/digits.cfg")
    refused(result, "dataset directory digits does not exist")  # the config was read: its --dataset=digits
    helped = installed(tmp_path, "train", "--config=glo/digits", "--help")
    assert helped.returncode == 0 and "Options of --model=glo" in helped.stdout
    assert "vgrow-train --flagfile=configs/<model>/<dataset>.cfg" in helped.stdout


@pytest.mark.parametrize("program", ["run_metrics", "generate_samples", "convert_snapshot"])
def test_installed_commands_help_names_them_as_installed(tmp_path, program):
    result = installed(tmp_path, program, "--help")
    command = "vgrow-" + program.replace("_", "-")
    assert result.returncode == 0 and f"    {command} " in result.stdout and "python " not in result.stdout


def test_the_packaged_configs_are_every_config():
    import glob
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["vgrow_tf"]
    packaged = {p for pattern in patterns for p in glob.glob(os.path.join(ROOT, "vgrow_tf", pattern))}
    listed = set(glob.glob(os.path.join(ROOT, "configs", "*", "*.cfg")))
    assert len(listed) > 30 and {os.path.realpath(p) for p in listed} == packaged


# --- 7. messages that say what is wrong ---------------------------------------------------------------------

def test_dataset_tool_names_the_image_and_its_stored_mode(tmp_path):
    from PIL import Image
    os.makedirs(tmp_path / "photos")
    Image.new("RGBA", (64, 48), (10, 20, 30, 128)).save(tmp_path / "photos" / "a.png")
    result = typed(tmp_path, "dataset_tool.py", "create_from_images", "data", "photos")
    refused(result, "photos/a.png is 64x48, not square")
    assert "The first image (photos/a.png) is RGBA, read as RGB, so the dataset is RGB" in result.stdout


def test_a_file_where_a_directory_belongs_and_the_reverse_are_named(cwd, monkeypatch):
    from vgrow_tf.data import images
    from vgrow_tf.metrics import features, reference
    from vgrow_tf.sampling import direction
    monkeypatch.chdir(cwd)
    with pytest.raises(UserError, match="^image directory ours.h5 is a file, not a directory$"):
        images.list_image_files("ours.h5")
    with pytest.raises(UserError, match="^--labels file glo is a directory; give a file$"):
        direction.read_label_csv("glo")
    with pytest.raises(UserError, match="^--ref_stats file glo is a directory; give a file$"):
        reference.load_ref_stats("glo")
    monkeypatch.setenv("VGROW_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(cwd / "no_keras_home"))
    with pytest.raises(UserError, match="pass their path as --vgg16_path$"):
        features.keras_weights("vgg16")


# --- 12. setup.py for the tools that still call it -----------------------------------------------------------

def test_setup_py_reads_the_project_from_pyproject():
    result = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split()[-2:] == ["vgrow_tf", "0.1.0"], result.stderr

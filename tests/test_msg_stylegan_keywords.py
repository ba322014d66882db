"""msg-stylegan-tf models built with non-default keywords: imported, reproduced, written back and trained on.

fixtures/msg_stylegan_keywords/<name>/ hold (G, D, Gs) pickles written by the original code with widths that
all differ (latent, mapping, dlatent, G and D feature maps) and G_synthesis / D_basic switches turned off
(see the README there, and benchmarks/msg_stylegan_keyword_fixtures.py, which made them).
"""
import json
import os

import numpy as np
import pytest

from test_cli_as_typed import ROOT, ok, typed
from vgrow_tf.errors import UserError
from vgrow_tf.interop import msg_stylegan_pickle as msp

HERE = os.path.join(ROOT, "tests", "fixtures", "msg_stylegan_keywords")
NAMES = ("dense_input_relu", "no_styles_plain_weights")
# Flags that rebuild dense_input_relu's architecture (train.py --resume_from accepts them: they agree).
DENSE_INPUT_RELU_FLAGS = [
    "--z_dim=24", "--mapping_fmaps=56", "--dlatent_size=40", "--mapping_layers=3", "--mapping_lrmul=0.1",
    "--mapping_nonlinearity=relu", "--normalize_latents=false", "--fmap_base=128", "--fmap_max=48",
    "--fmap_decay=0.8", "--use_noise=false", "--const_input_layer=false", "--use_pixel_norm=true",
    "--use_instance_norm=false", "--nonlinearity=relu", "--blur_filter=1,3,3,1", "--fused_scale=true",
    "--d_fmap_base=112", "--d_fmap_max=40", "--d_fmap_decay=1", "--mbstd_group_size=2", "--mbstd_num_features=2",
    "--d_nonlinearity=relu", "--d_blur_filter=none", "--truncation_psi=0.5", "--truncation_cutoff=2",
    "--dlatent_avg_beta=0.99"]


def rel_err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def nchw(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def nhwc(x):
    return np.transpose(np.asarray(x), (0, 2, 3, 1))


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    path = os.path.join(HERE, request.param, "network.pkl")
    expected = dict(np.load(os.path.join(HERE, request.param, "expected.npz")))
    with open(os.path.join(HERE, request.param, "config.json")) as f:
        keywords = json.load(f)
    return request.param, path, msp.convert(path), expected, keywords


def scales_of(expected, prefix):
    keys = sorted((k for k in expected if k.startswith(prefix + "/")), key=lambda k: int(k.split("x")[-1]))
    return [expected[k] for k in keys]


def test_every_keyword_becomes_the_config(case):
    _, _, imported, _, keywords = case
    c, g, d = imported.config, keywords["G"], keywords["D"]
    assert (c["z_dim"], c["mapping_fmaps"], c["dlatent_size"], c["mapping_layers"]) == (
        g["latent_size"], g["mapping_fmaps"], g["dlatent_size"], g["mapping_layers"])
    assert (c["fmap_base"], c["fmap_max"], c["d_fmap_base"], c["d_fmap_max"]) == (
        g["fmap_base"], g["fmap_max"], d["fmap_base"], d["fmap_max"])
    for key in ("use_noise", "use_styles", "const_input_layer", "use_pixel_norm", "use_instance_norm",
                "nonlinearity", "mapping_nonlinearity", "normalize_latents", "fused_scale", "fmap_decay"):
        if key in g:
            assert c[key] == g[key], key
    assert c["d_nonlinearity"] == d.get("nonlinearity", "lrelu")
    assert c["d_blur_filter"] == list(d.get("blur_filter", [1, 2, 1]) or [])
    assert c["mbstd_group_size"] == d["mbstd_group_size"]
    assert c["mbstd_num_features"] == d.get("mbstd_num_features", 1)


def test_mapping_and_generators_match_the_original(case):
    _, _, imported, expected, _ = case
    z = expected["in/latents"]
    for name in ("G", "Gs"):
        g = imported.networks[name]
        assert rel_err(g.broadcast(g.map(z)).numpy(), expected[f"out/{name}_mapping/dlatents"]) <= 1e-5
        for trunc, psi, cutoff in (("notrunc", None, 8), ("trunc", 0.6, 3)):
            ours = g(z, truncation_psi=psi, truncation_cutoff=cutoff, randomize_noise=False)
            ref = scales_of(expected, f"out/{name}/{trunc}")
            assert len(ours) == len(ref) == 3
            for o, r in zip(ours, ref):
                assert rel_err(nchw(o), r) <= 1e-5, (name, trunc, r.shape)


def test_the_pickles_truncation_keywords(case):
    """Gs.run with no truncation arguments uses the pickle's truncation_psi/cutoff (G_style's defaults 0.7/8
    when it sets none); ours records them and applies the cutoff whenever a psi is asked for."""
    name, _, imported, expected, keywords = case
    psi = keywords["G"].get("truncation_psi", 0.7)
    assert imported.config["truncation_psi"] == keywords["G"].get("truncation_psi")
    from vgrow_tf.models import msg_gan
    ours = msg_gan.generate(imported.networks, imported.config, expected["in/latents"], all_scales=True,
                            truncation_psi=psi, randomize_noise=False)
    for o, r in zip(ours, scales_of(expected, "out/Gs/static")):
        assert rel_err(nchw(o), r) <= 1e-5


def test_discriminator_matches_the_original(case):
    _, _, imported, expected, _ = case
    d = imported.networks["D"]
    random = [nhwc(x) for x in scales_of(expected, "in/D_random")]
    assert rel_err(d(random).numpy(), expected["out/D/random"][:, 0]) <= 1e-5
    fakes = [nhwc(x) for x in scales_of(expected, "out/Gs/notrunc")]
    assert rel_err(d(fakes).numpy(), expected["out/D/Gs_notrunc"][:, 0]) <= 1e-5


def test_written_pickle_has_the_originals_keywords_and_variables(case, tmp_path):
    _, path, imported, _, _ = case
    out = str(tmp_path / "back.pkl")
    msp.save_original_pickle(imported.networks, imported.config, out)
    original, written = msp.read_pickle(path), msp.read_pickle(out)
    for name in ("G", "D", "Gs"):
        kw = written[name]["static_kwargs"]
        assert {k: kw[k] for k in original[name]["static_kwargs"]} == dict(original[name]["static_kwargs"])
        a, b = msp._variables(original[name], path), msp._variables(written[name], out)
        assert list(a) == list(b)
        for var in a:
            np.testing.assert_array_equal(a[var], b[var], err_msg=f"{name} {var}")
    assert msp.convert(out).config == imported.config


@pytest.mark.parametrize("edit, message", [
    (dict(nonlinearity="tanh"), "G was built with nonlinearity='tanh', which msg-stylegan-tf does not define"),
    (dict(blur_filter=[[1, 2], [2, 1]]), "only a list of taps"),
    (dict(label_size=3), "label_size=3; only 0 can be imported"),
])
def test_settings_the_original_cannot_build_are_one_line(tmp_path, edit, message):
    states = msp.read_pickle(os.path.join(HERE, NAMES[1], "network.pkl"))
    states["G"]["static_kwargs"].update(edit)
    with pytest.raises(UserError, match=message):
        msp.architecture(states, "edited.pkl")


def test_train_resume_from_the_pickle_as_typed(tmp_path):
    """train.py --resume_from=<pickle> takes its architecture: one iteration (4 images) at learning rate 0,
    and its snapshot's G and D hold the pickle's weights; a flag that contradicts it is one line."""
    from vgrow_tf import snapshot
    from vgrow_tf.data import tool

    images = np.random.RandomState(0).randint(0, 256, [8, 3, 16, 16]).astype(np.uint8)
    tool.write_dataset(str(tmp_path / "datasets" / "rgb16"), tool.array_images(images, range(8)), 8)
    pkl = os.path.join(HERE, NAMES[0], "network.pkl")
    os.symlink(pkl, tmp_path / "network.pkl")
    common = ["--model=msg_stylegan", "--dataset=rgb16", "--resume_from=network.pkl", "--batch_size=4",
              "--total_kimg=0.004", "--tick_kimg=0.004", "--snapshot_kimg=0.004", "--num_row=2", "--num_line=2"]
    # No architecture flag given: every setting is taken from the pickle (dlatent_size 40, not the default 56).
    ok(typed(tmp_path, "train.py", *common, "--run_dir=run", "--learning_rate=0", "--G_smoothing_kimg=0"))
    first = snapshot.load(str(tmp_path / "run" / "network-final.h5"))
    source = msp.convert(pkl)
    assert first.config == source.config
    for name in ("G", "D"):
        for a, b in zip(source.networks[name].trainable_weights, first.networks[name].trainable_weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{name} {a.path}")
    agreeing = [f for f in DENSE_INPUT_RELU_FLAGS if not f.startswith("--dlatent_size")]
    result = typed(tmp_path, "train.py", *common, "--run_dir=other", *agreeing, "--dlatent_size=32")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: --resume_from network.pkl was trained with another architecture")
    assert "--dlatent_size=32 (the model has dlatent_size=40)" in last and "z_dim" not in last


def test_configs_written_before_these_keywords_build_the_default_networks():
    """Our older snapshots' configs have none of the new keys: they build what the defaults build."""
    from vgrow_tf.models import msg_gan
    new = msg_gan.make_config("msg_stylegan", 8, 1, z_dim=8, fmap_base=64, fmap_max=16, mapping_fmaps=8,
                              mapping_layers=2)
    old = {k: v for k, v in new.items() if k not in msg_gan.STYLE_KEYWORDS}
    assert len(old) < len(new)
    built_new, built_old = msg_gan.build_networks(new), msg_gan.build_networks(old)
    for name in ("G", "D", "Gs"):
        assert [tuple(w.shape) for w in built_new[name].weights] == [tuple(w.shape) for w in built_old[name].weights]


@pytest.mark.parametrize("flag, message", [
    (dict(d_nonlinearity="tanh"), "--d_nonlinearity 'tanh': choose one of lrelu, relu"),
    (dict(blur_filter="1,x"), "--blur_filter '1,x' is not a list of numbers"),
    (dict(d_fused_scale="maybe"), "--d_fused_scale 'maybe': choose auto, true or false"),
    (dict(mbstd_num_features=0), "--mbstd_num_features must be >= 1"),
])
def test_bad_keyword_flags_are_one_line(flag, message):
    from vgrow_tf.models import msg_gan
    with pytest.raises(UserError, match=message):
        msg_gan.make_config("msg_stylegan", 8, 1, **flag)

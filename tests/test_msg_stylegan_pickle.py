"""msg-stylegan-tf pickles: outputs of the original code reproduced, restricted unpickling, reverse writer.

fixtures/msg_stylegan/network.pkl is a (G, D, Gs) pickle written by the original code (32 px, random
weights); expected.npz holds the inputs it was fed and the outputs it computed (see the README there).
"""
import os
import pickle
import pickletools
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import interop, layers, snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.interop import convert, msg_stylegan_pickle as msp, restricted_pickle

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "msg_stylegan")
PKL = os.path.join(HERE, "network.pkl")
SCALES = (4, 8, 16, 32)
TRUNCATIONS = {"notrunc": (None, 8), "psi0p7_cutoff8": (0.7, 8), "psi0p5_cutoff3": (0.5, 3)}


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(HERE, "expected.npz")))


@pytest.fixture(scope="module")
def imported():
    return msp.convert(PKL)


def rel_err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def nchw(images):
    return [np.transpose(np.asarray(x), (0, 3, 1, 2)) for x in images]


def nhwc(images):
    return [np.transpose(np.asarray(x), (0, 2, 3, 1)) for x in images]


# --- the original's outputs ----------------------------------------------------------------------

def test_architecture_from_static_kwargs(imported):
    c = imported.config
    assert imported.kind == "msg_stylegan"
    assert (c["resolution"], c["channels"], c["z_dim"], c["mapping_fmaps"]) == (32, 3, 64, 64)
    assert (c["fmap_base"], c["fmap_max"], c["mapping_layers"], c["mbstd_group_size"]) == (512, 64, 4, 4)
    assert c["mapping_lrmul"] == 0.01 and c["combine"] == "cat_lin"
    assert "32 px" in imported.summary


@pytest.mark.parametrize("net", ["G", "Gs"])
def test_mapping_matches_the_original(imported, expected, net):
    w = imported.networks[net].map(expected["in/latents"]).numpy()
    ref = expected[f"out/{net}_mapping/dlatents"]
    assert rel_err(np.repeat(w[:, None], ref.shape[1], axis=1), ref) <= 1e-5


@pytest.mark.parametrize("net,trunc", [("G", "notrunc"), ("G", "psi0p7_cutoff8"), ("Gs", "notrunc"),
                                       ("Gs", "psi0p7_cutoff8"), ("Gs", "psi0p5_cutoff3")])
def test_generator_matches_the_original_at_every_scale(imported, expected, net, trunc):
    """Stored noise inputs (randomize_noise=False); truncation towards each network's own dlatent_avg."""
    psi, cutoff = TRUNCATIONS[trunc]
    ref = [expected[f"out/{net}/{trunc}/{s}x{s}"] for s in SCALES]
    n = len(ref[0])
    out = imported.networks[net](expected["in/latents"][:n], truncation_psi=psi, truncation_cutoff=cutoff,
                                 randomize_noise=False)
    errors = [rel_err(o, r) for o, r in zip(nchw(out), ref)]
    assert max(errors) <= 1e-5, errors


@pytest.mark.parametrize("inputs,key", [("in/D_reals", "out/D/reals"), ("in/D_random", "out/D/random"),
                                        ("out/Gs/notrunc", "out/D/Gs_notrunc")])
def test_discriminator_matches_the_original(imported, expected, inputs, key):
    scales = nhwc(expected[f"{inputs}/{s}x{s}"] for s in SCALES)  # all 8 together: mbstd groups
    assert rel_err(imported.networks["D"](scales).numpy(), expected[key][:, 0]) <= 1e-5


def test_real_pyramid_is_the_originals_process_reals(expected):
    from vgrow_tf.models import msg_gan

    top = np.transpose(expected["in/reals_uint8"], (0, 2, 3, 1)).astype(np.float32) / 127.5 - 1.0
    ours = nchw(msg_gan.real_pyramid(tf.constant(top), len(SCALES)))
    for o, s in zip(ours, SCALES):
        np.testing.assert_allclose(o, expected[f"in/D_reals/{s}x{s}"], atol=1e-6)


def test_snapshot_load_and_converter_take_the_pickle(tmp_path, expected):
    assert interop.detect(PKL) == "msg_stylegan_pkl"
    direct = snapshot.load(PKL)
    out = tmp_path / "model.h5"
    summary = convert.convert_to_snapshot(PKL, str(out)).summary
    assert "MSG-StyleGAN 32 px" in summary and snapshot.is_native(str(out))
    loaded = snapshot.load(str(out))
    assert loaded.kind == direct.kind == "msg_stylegan" and loaded.config == direct.config
    for snap in (direct, loaded):
        scales = snap.generate(expected["in/latents"][:4], all_scales=True, truncation_psi=0.7,
                               randomize_noise=False)
        ref = [expected[f"out/Gs/psi0p7_cutoff8/{s}x{s}"] for s in SCALES]
        assert max(rel_err(o, r) for o, r in zip(nchw(scales), ref)) <= 1e-5


# --- refusing what is not such a pickle ------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvilExec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _fake_dnnlib(monkeypatch):
    """A stand-in class pickled under the original's name (pickle looks classes up in sys.modules)."""
    class Network:
        def __init__(self, state):
            self.state = state

        def __getstate__(self):
            return self.state

    module = types.ModuleType("dnnlib.tflib.network")
    Network.__module__, Network.__qualname__ = module.__name__, "Network"
    module.Network = Network
    for name in ("dnnlib", "dnnlib.tflib"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return Network


@pytest.mark.parametrize("evil", [_Evil, _EvilExec])
def test_malicious_pickle_is_refused_without_running_anything(tmp_path, monkeypatch, evil):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(evil(marker)))
    with pytest.raises(UserError, match="references (posix|os|builtins)\\.(system|exec).*refused"):
        msp.convert(str(path))
    # Hidden inside an otherwise well-formed network state, after the allowed globals.
    network = _fake_dnnlib(monkeypatch)
    state = dict(version=3, name="G", static_kwargs={}, components={}, build_func_name="G_style",
                 build_module_src="", variables=[("w", np.zeros(3, np.float32)), ("x", evil(marker))])
    path.write_bytes(pickle.dumps((network(state),) * 3, protocol=5))
    with pytest.raises(UserError, match="refused without running anything"):
        snapshot.load(str(path))
    assert not marker.exists()


def test_truncated_pickle_is_one_clear_line(tmp_path):
    path = tmp_path / "cut.pkl"
    with open(PKL, "rb") as f:
        path.write_bytes(f.read()[:1_000_000])
    with pytest.raises(UserError, match="truncated or not a pickle") as e:
        snapshot.load(str(path))
    assert "\n" not in str(e.value)


def test_pickles_of_other_projects_are_one_clear_line(tmp_path):
    plain = tmp_path / "dict.pkl"
    plain.write_bytes(pickle.dumps({"weights": np.zeros(3)}, protocol=4))
    with pytest.raises(UserError, match="not an msg-stylegan-tf \\(G, D, Gs\\) network tuple \\(found dict\\)"):
        snapshot.load(str(plain))
    # An sklearn estimator as pickle writes it: GLOBAL, NEWOBJ, BUILD (no sklearn needed to make it).
    estimator = tmp_path / "model.pkl"
    estimator.write_bytes(b"\x80\x04csklearn.linear_model._base\nLinearRegression\n)\x81}b.")
    with pytest.raises(UserError, match="references sklearn.linear_model._base.LinearRegression"):
        snapshot.load(str(estimator))
    assert restricted_pickle.looks_like_pickle(str(estimator)) and not msp.detect(str(tmp_path))


# --- our snapshot -> the original's format ----------------------------------------------------------

def test_written_pickle_holds_exactly_the_originals_variables(imported, tmp_path):
    """Import then export gives back every stored array bit for bit, under the same names."""
    out = tmp_path / "back.pkl"
    msp.save_original_pickle(imported.networks, imported.config, str(out))
    data = out.read_bytes()
    assert data[:2] == b"\x80\x03" and b"cdnnlib.tflib.network\nNetwork\n" in data
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"numpy._core" not in data  # NumPy 1.x names
    original, written = msp.read_pickle(PKL), msp.read_pickle(str(out))
    for name in ("G", "D", "Gs"):
        a, b = msp._variables(original[name], PKL), msp._variables(written[name], str(out))
        assert list(a) == list(b)  # names, in the original's creation order
        for var in a:
            np.testing.assert_array_equal(a[var], b[var], err_msg=f"{name} {var}")
        kw = written[name]["static_kwargs"]
        assert {k: kw[k] for k in original[name]["static_kwargs"]} == original[name]["static_kwargs"]
        assert written[name]["build_func_name"] == original[name]["build_func_name"]
    assert written["G"]["components"]["mapping"].state["static_kwargs"]["dlatent_broadcast"] == 8
    assert msp.convert(str(out)).config == imported.config


# --- >= 128 px: fused resampling convolutions ---------------------------------------------------------

def _original_variables(res_log2, nf, channels, latent, mapping_layers, mbstd):
    """Names and shapes of the original's variables (networks_stylegan.py's layer plan), per network."""
    syn = [(f"noise{i}", [1, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2)]) for i in range(2 * res_log2 - 2)]

    def layer(scope, cin, cout, conv=True):
        return ([(f"{scope}/weight", [3, 3, cin, cout])] if conv else []) + [
            (f"{scope}/Noise/weight", [cout]), (f"{scope}/bias", [cout]),
            (f"{scope}/StyleMod/weight", [latent, 2 * cout]), (f"{scope}/StyleMod/bias", [2 * cout])]
    syn += [("4x4/Const/const", [1, nf(1), 4, 4])] + layer("4x4/Const", 0, nf(1), conv=False)
    syn += layer("4x4/Conv", nf(1), nf(1))
    for r in range(2, res_log2 + 1):
        if r > 2:
            syn += layer(f"{2 ** r}x{2 ** r}/Conv0_up", nf(r - 2), nf(r - 1))
            syn += layer(f"{2 ** r}x{2 ** r}/Conv1", nf(r - 1), nf(r - 1))
        syn += [(f"ToRGB_lod{res_log2 - r}/weight", [1, 1, nf(r - 1), channels]),
                (f"ToRGB_lod{res_log2 - r}/bias", [channels])]
    mapping = [(f"Dense{i}/{p}", s) for i in range(mapping_layers)
               for p, s in (("weight", [latent, latent]), ("bias", [latent]))]
    d = [("FromRGB_lod0/weight", [1, 1, channels, nf(res_log2 - 1)]), ("FromRGB_lod0/bias", [nf(res_log2 - 1)])]
    for r in range(res_log2, 1, -1):
        b = f"{2 ** r}x{2 ** r}"
        if r < res_log2:
            d += [(f"{b}/combine/weight", [1, 1, nf(r - 1) + channels, nf(r - 1)])]
        if r > 2:
            d += [(f"{b}/Conv0/weight", [3, 3, nf(r - 1) + mbstd, nf(r - 1)]), (f"{b}/Conv0/bias", [nf(r - 1)]),
                  (f"{b}/Conv1_down/weight", [3, 3, nf(r - 1), nf(r - 2)]), (f"{b}/Conv1_down/bias", [nf(r - 2)])]
    d += [("4x4/Conv/weight", [3, 3, nf(1) + mbstd, nf(1)]), ("4x4/Conv/bias", [nf(1)]),
          ("4x4/Dense0/weight", [16 * nf(1), nf(0)]), ("4x4/Dense0/bias", [nf(0)]),
          ("4x4/Dense1/weight", [nf(0), 1]), ("4x4/Dense1/bias", [1])]
    return syn, mapping, d


@pytest.fixture(scope="module")
def synthetic128(tmp_path_factory):
    """A 128 px (G, D, Gs) pickle built here, as the original writes it (protocol 5, NumPy 2 names)."""
    monkeypatch = pytest.MonkeyPatch()
    network = _fake_dnnlib(monkeypatch)
    rng = np.random.RandomState(5)
    kwargs = dict(num_channels=3, resolution=128, label_size=0, fmap_base=128, fmap_max=16, latent_size=8,
                  dlatent_size=8, mapping_layers=2, mapping_fmaps=8)
    nf = lambda s: min(int(128 / 2 ** s), 16)  # noqa: E731
    syn, mapping, d = _original_variables(7, nf, 3, 8, 2, mbstd=1)
    arrays = lambda spec: [(n, rng.randn(*s).astype(np.float32)) for n, s in spec]  # noqa: E731

    def net(name, func, n_in, kw, variables, components=None):
        return network(dict(num_inputs=n_in, version=3, name=name, static_kwargs=kw, components=components or {},
                            build_module_src="# not used", build_func_name=func, variables=variables))

    def generator(name):
        comps = {"synthesis": net("G_synthesis", "G_synthesis", 1, kwargs, arrays(syn)),
                 "mapping": net("G_mapping", "G_mapping", 2, dict(kwargs, dlatent_broadcast=12), arrays(mapping))}
        return net(name, "G_style", 2, kwargs, arrays([("dlatent_avg", [8])]), comps)
    d_kwargs = {k: kwargs[k] for k in ("num_channels", "resolution", "label_size", "fmap_base", "fmap_max")}
    path = tmp_path_factory.mktemp("synthetic") / "net128.pkl"
    path.write_bytes(pickle.dumps((generator("G"), net("D", "D_basic", 7, d_kwargs, arrays(d)), generator("Gs")),
                                  protocol=5))
    monkeypatch.undo()
    states = msp.read_pickle(str(path))
    return msp.convert(str(path)), {n: msp._variables(s, str(path)) for n, s in states.items()}


def fused_upsample_conv(x, w):
    """The original's fused 2x upsample + 3x3 conv (NHWC here): a stride-2 transposed conv whose 4x4
    kernel is the 3x3 kernel zero-padded and summed over its four one-pixel shifts."""
    w = np.pad(np.transpose(w, (0, 1, 3, 2)), ((1, 1), (1, 1), (0, 0), (0, 0)))
    w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
    n, h, width, _ = x.shape
    return tf.nn.conv2d_transpose(x, w, [n, 2 * h, 2 * width, w.shape[2]], strides=2, padding="SAME").numpy()


def fused_conv_downsample(x, w):
    """The original's fused 3x3 conv + 2x2 mean: a stride-2 conv with the padded, shift-summed kernel / 4."""
    w = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
    return tf.nn.conv2d(x, w, strides=2, padding="SAME").numpy()


def test_fused_upsampling_conv_is_imported_rotated(synthetic128):
    imported, stored = synthetic128
    g = imported.networks["Gs"]
    rng = np.random.RandomState(1)
    for k, res, fused in ((4, 64, False), (5, 128, True)):
        conv = g.convs[k][0]
        w = stored["Gs"][f"G_synthesis/{res}x{res}/Conv0_up/weight"] * conv.scale
        x = rng.randn(2, res // 2, res // 2, w.shape[2]).astype(np.float32)
        ours = conv(layers.upscale2d(tf.constant(x), 2)).numpy()
        plain = tf.nn.conv2d(layers.upscale2d(tf.constant(x), 2), w, 1, "SAME").numpy()
        ref = fused_upsample_conv(x, w) if fused else plain
        assert rel_err(ours, ref) <= 1e-5
        if fused:  # the rotation matters: the unrotated kernel gives another function
            assert rel_err(plain, ref) > 0.1


def test_fused_downsampling_conv_is_the_same_function(synthetic128):
    imported, stored = synthetic128
    d = imported.networks["D"]
    conv = d.blocks[0][1]  # the 128x128 block's Conv1_down (input >= 128: fused in the original)
    w = stored["D"]["128x128/Conv1_down/weight"] * conv.scale
    x = np.random.RandomState(2).randn(2, 128, 128, w.shape[2]).astype(np.float32)
    ours = layers.downscale2d(conv(tf.constant(x)), 2).numpy()
    ref = fused_conv_downsample(x, w) + stored["D"]["128x128/Conv1_down/bias"]
    assert rel_err(ours, ref) <= 1e-5


def test_synthetic_128px_pickle_architecture(synthetic128):
    imported, _ = synthetic128
    c = imported.config
    assert (c["resolution"], c["fmap_base"], c["fmap_max"], c["z_dim"], c["mapping_layers"]) == (128, 128, 16, 8, 2)
    images = imported.networks["Gs"](tf.random.normal([4, 8]), randomize_noise=False)
    assert [i.shape[1] for i in images] == [4, 8, 16, 32, 64, 128]
    assert imported.networks["D"](images).shape == (4,)


def test_imported_weights_copy_into_freshly_built_networks(imported, expected):
    """What fine-tuning from an original model starts with: the Trainer's own networks, imported weights."""
    from vgrow_tf.models import msg_gan

    fresh = msg_gan.build_networks(imported.config)
    convert.copy_networks(imported.networks, fresh)
    out = fresh["G"](expected["in/latents"][:4], truncation_psi=None, randomize_noise=False)
    assert rel_err(nchw(out)[-1], expected["out/G/notrunc/32x32"]) <= 1e-5
    other = msg_gan.build_networks(msg_gan.make_config("msg_stylegan", 16, 3, z_dim=64, fmap_base=512, fmap_max=64))
    with pytest.raises(UserError, match="another architecture"):
        convert.copy_networks(imported.networks, other)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_and_scalars_load_in_numpy_1_and_2_spellings(tmp_path, protocol):
    """Published pickles (NumPy 1.x) name numpy.core.multiarray._reconstruct / .scalar; NumPy 2 numpy._core."""
    value = (np.arange(6, dtype=np.float32).reshape(2, 3), np.float32(2.5), np.asfortranarray(np.eye(2)))
    data = pickle.dumps(value, protocol=protocol)
    if protocol >= 4:  # drop the FRAME opcodes (length hints) so that names can change length
        ops = list(pickletools.genops(data)) + [(None, None, len(data))]
        data = b"".join(data[pos:ops[i + 1][2]] for i, (op, _, pos) in enumerate(ops[:-1]) if op.name != "FRAME")
    old_names = data.replace(b"numpy._core", b"numpy.core")  # GLOBAL: newline-terminated text
    old_names = old_names.replace(b"\x8c\x16numpy.core.multiarray", b"\x8c\x15numpy.core.multiarray")
    old_names = old_names.replace(b"\x8c\x13numpy.core.numeric", b"\x8c\x12numpy.core.numeric")
    assert b"numpy.core" in old_names and b"numpy._core" not in old_names
    for spelling in (data, old_names):
        path = tmp_path / "arrays.pkl"
        path.write_bytes(spelling)
        got = restricted_pickle.load(str(path), {})
        for a, b in zip(got, value):
            np.testing.assert_array_equal(a, b)
            assert np.asarray(a).dtype == np.asarray(b).dtype


def _rewritten(tmp_path, monkeypatch, edit):
    """The fixture with `edit(states)` applied, pickled again as the original does."""
    network = _fake_dnnlib(monkeypatch)

    def rebuild(state):
        comps = {k: rebuild(v.state) for k, v in state["components"].items()}
        return network(dict(state, components=comps))
    states = msp.read_pickle(PKL)
    edit(states)
    path = tmp_path / "edited.pkl"
    path.write_bytes(pickle.dumps(tuple(rebuild(states[n]) for n in ("G", "D", "Gs")), protocol=4))
    return str(path)


def test_missing_variable_or_other_shapes_or_settings_are_one_clear_line(tmp_path, monkeypatch):
    def drop(states):
        states["D"]["variables"] = [v for v in states["D"]["variables"] if v[0] != "8x8/combine/weight"]
    with pytest.raises(UserError, match="network D does not have the variables.*missing \\['8x8/combine/weight'\\]"):
        msp.convert(_rewritten(tmp_path, monkeypatch, drop))

    def reshape(states):
        states["D"]["variables"] = [(n, v[..., :-1] if n == "4x4/Dense1/weight" else v)
                                    for n, v in states["D"]["variables"]]
    with pytest.raises(UserError, match="4x4/Dense1/weight has shape \\(64, 0\\)"):
        msp.convert(_rewritten(tmp_path, monkeypatch, reshape))

    def labels(states):
        states["G"]["static_kwargs"]["label_size"] = 10
    with pytest.raises(UserError, match="G was built with label_size=10; only 0"):
        msp.convert(_rewritten(tmp_path, monkeypatch, labels))

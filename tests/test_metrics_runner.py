"""Feature-network loaders (fake TTUR graph, Keras file, SavedModel), the runner end to end on a tiny
snapshot and dataset, the reference-statistics cache, and run_metrics.py's error lines."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf import snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.metrics import features, fid, runner
from vgrow_tf.models import vgrow_pg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_fake_inception_graph(path, dim=16, classes=10, size=8, seed=0):
    """A tiny frozen GraphDef with the TTUR tensor names: DecodeJpeg -> Cast -> ExpandDims ->
    ResizeBilinear (TF1) -> Sub -> Mul -> ... -> pool_3 -> pool_3/_reshape ([1, D], as in the real
    graph) -> softmax/logits/MatMul with softmax/weights. Returns the numpy parameters."""
    rng = np.random.RandomState(seed)
    kernel = rng.randn(3, dim).astype(np.float32)
    weights = rng.randn(dim, classes).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
        x = tf.cast(tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg"), tf.float32, name="Cast")
        x = tf.expand_dims(x, 0, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, [size, size], name="ResizeBilinear")
        x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        x = tf.nn.relu(tf.nn.conv2d(x, tf.constant(kernel[None, None]), 1, "SAME"))
        pool = tf.nn.avg_pool2d(x, size, 1, "VALID", name="pool_3")
        flat = tf.reshape(pool, [1, dim], name="pool_3/_reshape")
        logits = tf.matmul(flat, tf.constant(weights, name="softmax/weights"), name="softmax/logits/MatMul")
        tf.nn.softmax(logits + 1.0, name="softmax")
    with open(path, "wb") as f:
        f.write(g.as_graph_def().SerializeToString())
    return kernel, weights


def fake_inception_reference(images, kernel, weights, size=8):
    x = tf.compat.v1.image.resize_bilinear(images.astype(np.float32), [size, size]).numpy()
    x = (x - 128.0) / 128.0
    feats = np.maximum(np.einsum("nhwc,cd->nhwd", x, kernel), 0).mean((1, 2))
    logits = feats @ weights
    p = np.exp(logits - logits.max(1, keepdims=True))
    return feats, p / p.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from vgrow_tf.data import tool
    root = tmp_path_factory.mktemp("metrics")
    data = str(root / "digits8")
    tool.create_digits(data, resolution=8)
    keras.utils.set_random_seed(0)
    config = vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8)
    run_dir = root / "run"
    run_dir.mkdir()
    nets = vgrow_pg.build_networks(config)
    for name in ("network-snapshot-000000.h5", "network-final.h5"):
        snapshot.save(str(run_dir / name), vgrow_pg.KIND, config, nets)
    feat_model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
                                   keras.layers.GlobalAveragePooling2D(name="pool"),
                                   keras.layers.Dense(5, activation="softmax", name="probs")])
    model_path = str(root / "digits_features.keras")
    feat_model.save(model_path)
    pb = str(root / "classify_image_graph_def.pb")
    params = make_fake_inception_graph(pb)
    return dict(root=root, data=data, run_dir=str(run_dir), snap=str(run_dir / "network-final.h5"),
                model=model_path, pb=pb, params=params, cache=str(root / "cache"))


def test_inception_pb_loader_matches_ttur_pipeline(env):
    net = features.get_feature_net("inception_pb", inception_path=env["pb"])
    assert net.comparable and net.outputs == ("features", "probs")
    images = np.random.RandomState(1).randint(0, 256, (5, 12, 12, 3)).astype(np.uint8)
    out = net(images)
    want_f, want_p = fake_inception_reference(images, *env["params"])
    np.testing.assert_allclose(out["features"], want_f, atol=1e-5)
    np.testing.assert_allclose(out["probs"], want_p, atol=1e-5)  # the softmax bias is left out (OpenAI IS)
    gray = net(images[..., :1])  # grayscale is tiled to RGB
    np.testing.assert_allclose(gray["features"], net(np.repeat(images[..., :1], 3, -1))["features"], atol=1e-6)


def test_inception_pb_missing_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("VGROW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VGROW_OFFLINE", "1")
    with pytest.raises(UserError, match="classify_image_graph_def.pb.*inception-2015-12-05.tgz"):
        features.find_inception_pb()
    with pytest.raises(UserError, match="does not exist.*inception-2015-12-05.tgz"):
        features.find_inception_pb(str(tmp_path / "nope.pb"))
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"not a graph")
    with pytest.raises(UserError):
        features.inception_pb_function(features.load_graph_def(str(bad)))
    with pytest.raises(UserError, match="vgg16_weights"):
        features.keras_weights("vgg16")


def test_keras_model_file_and_layer(env):
    net = features.model_from_path(env["model"])
    images = np.random.RandomState(2).randint(0, 256, (4, 8, 8, 1)).astype(np.uint8)
    out = net(images)
    pooled = features.model_from_path(env["model"] + ":pool")(images)
    assert pooled["features"].shape == (4, 6)
    # Without a layer: the one before the output layer (a classifier's logits make KID absurd).
    np.testing.assert_array_equal(out["features"], pooled["features"])
    assert np.allclose(out["probs"].sum(1), 1, atol=1e-5)
    probs_only = features.model_from_path(env["model"] + ":probs")(images)
    np.testing.assert_allclose(probs_only["probs"], probs_only["features"])  # already softmax: kept as it is
    rgb = net(np.repeat(images, 3, -1))  # RGB input is averaged to the model's one channel
    np.testing.assert_allclose(rgb["features"], out["features"], atol=1e-5)
    with pytest.raises(UserError, match="no layer 'nope'"):
        features.model_from_path(env["model"] + ":nope")


def test_saved_model_feature_net(tmp_path):
    class Tiny(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.random.RandomState(3).randn(3, 4).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, x):
            return {"embedding": tf.reduce_mean(x, [1, 2]) @ self.w, "logits": tf.reduce_mean(x, [1, 2])}

    module = Tiny()
    path = str(tmp_path / "sm")
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    net = features.model_from_path(path + ":embedding")
    images = np.random.RandomState(4).randint(0, 256, (3, 16, 16, 1)).astype(np.uint8)
    out = net(images)
    x = tf.image.resize(np.repeat(images, 3, -1).astype(np.float32) / 127.5 - 1, [8, 8]).numpy()
    np.testing.assert_allclose(out["features"], x.mean((1, 2)) @ module.w.numpy(), atol=1e-5)
    assert out["probs"].shape == (3, 3)


def test_runner_end_to_end_with_cache(env, monkeypatch):
    runner._REAL_MEMO.clear()
    metrics = ["fid64", "kid64", "is20", "pr32"]
    kw = dict(feature_net=env["model"], pr_feature_net=env["model"] + ":pool", cache_dir=env["cache"],
              batch_size=32, progress=False)
    results = runner.evaluate_snapshot(env["snap"], env["data"], metrics, run_dir=env["run_dir"], **kw)
    by = {r["metric"]: r for r in results}
    # Names stay the metric's own; the feature network is recorded in its own field.
    assert set(by) == {"fid64", "kid64", "is20", "pr32_precision", "pr32_recall"}
    assert "digits_features.keras" in by["fid64"]["feature_net"]
    assert "digits_features.keras:pool" in by["pr32_precision"]["feature_net"]
    assert by["fid64"]["value"] > 0 and by["fid64"]["num_reals"] == 64
    assert 1.0 <= by["is20"]["value"] <= 5.0 and by["is20"]["std"] >= 0
    assert all(0 <= by[f"pr32_{p}"]["value"] <= 1 for p in ("precision", "recall"))
    assert by["fid64"]["kimg"] is None and by["fid64"]["snapshot_name"] == "network-final"
    lines = open(os.path.join(env["run_dir"], "metric-fid64.txt")).read().splitlines()
    assert len(lines) == 1 and "network-final" in lines[0] and "digits_features" in lines[0]
    jsonl = [json.loads(l) for l in open(os.path.join(env["run_dir"], "metrics.jsonl"))]
    assert {j["metric"] for j in jsonl} == set(by)
    stats = [f for f in os.listdir(os.path.join(env["cache"], "ref")) if f.endswith("-stats.npz")]
    assert len(stats) == 1
    with np.load(os.path.join(env["cache"], "ref", stats[0])) as f:
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (6, 6)  # the layer before the output

    # Cache hit: a fresh process state reads the reals from disk and gives the same numbers.
    runner._REAL_MEMO.clear()
    monkeypatch.setattr(runner.Evaluator, "_extract_reals", lambda *a: pytest.fail("reals recomputed"))
    again = runner.evaluate_snapshot(env["snap"], env["data"], metrics, **kw)
    for r in again:
        assert r["value"] == pytest.approx(by[r["metric"]]["value"], rel=1e-6, abs=1e-9)

    # Invalidation: a rewritten dataset file changes the key, so the reals are recomputed.
    runner._REAL_MEMO.clear()
    top = [os.path.join(env["data"], f) for f in os.listdir(env["data"]) if f.endswith("-r03.tfrecords")][0]
    st = os.stat(top)
    os.utime(top, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    with pytest.raises(pytest.fail.Exception, match="reals recomputed"):
        runner.evaluate_snapshot(env["snap"], env["data"], ["fid64"], **kw)


def test_runner_repeats_and_ref_stats_with_fake_inception(env, tmp_path):
    runner._REAL_MEMO.clear()
    kw = dict(feature_net="inception_pb", inception_path=env["pb"], cache_dir=str(tmp_path), batch_size=32,
              progress=False)
    results = runner.evaluate_snapshot(env["snap"], env["data"], ["fid40", "is20"], repeats=2, **kw)
    fid_r = results[0]
    assert fid_r["metric"] == "fid40" and fid_r["repeats"] == 2 and len(fid_r["values"]) == 2
    assert fid_r["value"] == pytest.approx(np.mean(fid_r["values"])) and fid_r["comparable"]
    assert fid_r["values"][0] != fid_r["values"][1]  # fresh latents per repeat (seeds 1000, 2000)
    # The cached .npz is a TTUR/pytorch-fid style file: --ref_stats gives the same number.
    ref = fid_r["reference"]
    again = runner.evaluate_snapshot(env["snap"], None, ["fid40"], ref_stats=ref, **kw)
    assert again[0]["value"] == pytest.approx(fid_r["values"][0], rel=1e-9)
    # Independent check of the first repeat: fakes from seed 1000, quantised, through the fake graph.
    from vgrow_tf.sampling.images import to_uint8
    snap = snapshot.load(env["snap"])
    z = np.random.RandomState(1000).randn(40, snap.latent_dim).astype(np.float32)
    fake = np.repeat(to_uint8(snap.generate(z)), 3, -1)
    f_fake, _ = fake_inception_reference(fake, *env["params"])
    with np.load(ref) as f:
        direct = fid.frechet_distance(*fid.feature_statistics(f_fake), f["mu"], f["sigma"])
    assert fid_r["values"][0] == pytest.approx(direct, rel=1e-3, abs=1e-6)


def test_list_snapshots_order_and_errors(env):
    listed = [os.path.basename(p) for p in runner.list_snapshots(env["run_dir"])]
    assert listed == ["network-snapshot-000000.h5", "network-final.h5"]
    assert runner.list_snapshots(env["run_dir"], 0)[0].endswith("network-snapshot-000000.h5")
    with pytest.raises(UserError, match="snapshots at kimg: 0"):
        runner.list_snapshots(env["run_dir"], 600)


def _cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "run_metrics.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, VGROW_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3"),
                          timeout=300)


def test_cli_bad_input_gives_one_line(env, tmp_path):
    r = _cli("--snapshot", str(tmp_path / "missing.h5"), "--dataset", env["data"])
    assert r.returncode == 2 and "Error: --snapshot" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("--snapshot", env["snap"], "--dataset", env["data"], "--metrics", "fid50k,bogus")
    assert r.returncode == 2 and "unknown metric 'bogus'" in r.stderr
    r = _cli("--snapshot", env["snap"], "--dataset", env["data"], "--metrics", "fid64",
             "--inception_path", str(tmp_path / "none.pb"))
    assert r.returncode == 2 and "none.pb does not exist" in r.stderr and "inception-2015-12-05.tgz" in r.stderr


def test_cli_run_dir(env, tmp_path):
    out = tmp_path / "out"
    r = _cli("--run_dir", env["run_dir"], "--snapshot_kimg", "0", "--dataset", env["data"], "--metrics", "fid32",
             "--feature_net", env["model"], "--cache_dir", str(tmp_path / "c"), "--output", str(out),
             "--batch_size", "32", "--noprogress")
    assert r.returncode == 0, r.stderr
    assert "fid32" in r.stdout and "digits_features.keras" in r.stdout and "network-snapshot-000000" in r.stdout
    assert (out / "metric-fid32.txt").exists() and (out / "metrics.jsonl").exists()


_MULTI_REPLICA = """
import sys; sys.path.insert(0, {tests!r})
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from test_metrics_runner import make_fake_inception_graph
from vgrow_tf.metrics import features
make_fake_inception_graph({pb!r})
net = features.get_feature_net("inception_pb", inception_path={pb!r})
images = np.random.RandomState(0).randint(0, 256, (7, 10, 10, 3)).astype(np.uint8)
one = net(images)
net.strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
two = net(images)
assert all(np.allclose(one[k], two[k], atol=1e-5) for k in one), "replicas disagree"
print("OK", two["features"].shape)
"""


def test_feature_extraction_over_two_replicas(tmp_path):
    code = _MULTI_REPLICA.format(tests=os.path.join(ROOT, "tests"), pb=str(tmp_path / "g.pb"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0 and "OK (7, 16)" in r.stdout, r.stderr[-2000:]


def test_ppl_with_lpips_model_file(env, tmp_path):
    a, b = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    d = keras.layers.Subtract()([a, b])
    dist = keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([d, d]))
    lpips_path = str(tmp_path / "lpips.keras")
    keras.Model([a, b], dist).save(lpips_path)
    with pytest.raises(UserError, match="lpips_path"):
        runner.evaluate_snapshot(env["snap"], None, ["ppl_zend16"], progress=False)
    res = runner.evaluate_snapshot(env["snap"], None, ["ppl_zend16", "ppl_zfull16"], lpips_path=lpips_path,
                                   batch_size=8, progress=False)
    assert [r["metric"] for r in res] == ["ppl_zend16", "ppl_zfull16"]
    assert all(np.isfinite(r["value"]) and r["value"] > 0 for r in res)
    with pytest.raises(UserError, match="StyleGAN-type"):
        runner.evaluate_snapshot(env["snap"], None, ["ppl_wend16"], lpips_path=lpips_path, progress=False)


def test_runner_scores_dgflow_refined_samples(env):
    """--refine dgflow: names get -dgflow, zero steps is the plain score, real steps change it, and the
    flow on the same seed's latents climbs the discriminator's logit."""
    runner._REAL_MEMO.clear()
    kw = dict(feature_net=env["model"], cache_dir=env["cache"], batch_size=32, progress=False)
    plain = runner.evaluate_snapshot(env["snap"], env["data"], ["fid32"], **kw)[0]
    zero = runner.evaluate_snapshot(env["snap"], env["data"], ["fid32"], refine=dict(steps=0), **kw)[0]
    assert zero["metric"] == plain["metric"] + "-dgflow"
    assert zero["value"] == pytest.approx(plain["value"], rel=1e-6)
    flow = dict(steps=3, eta=0.5, gamma=0.0, divergence="KL")
    refined = runner.evaluate_snapshot(env["snap"], env["data"], ["fid32"], refine=flow, **kw)[0]
    assert refined["value"] != pytest.approx(plain["value"], rel=1e-6)
    from vgrow_tf.sampling import refine
    from vgrow_tf.sampling.latents import LatentSampler
    snap = snapshot.load(env["snap"])
    latents = np.asarray(LatentSampler(snap).draw(32, 1000))
    saved, logits = refine.refine_snapshot(snap, latents, eta=0.5, gamma=0.0, steps=3, save_every=3, seed=1000)
    assert np.mean(logits[3]) > np.mean(logits[0])  # the flow climbs the discriminator's logit


def test_cli_progress_in_a_redirected_log_is_plain_lines(env):
    """Typed in the folder holding the files, stderr a file (not a terminal): progress as whole lines, no `\\r`
    redraws, ending at 100%."""
    root = str(env["root"])
    with open(os.path.join(root, "progress.log"), "w+") as log:
        r = subprocess.run([sys.executable, os.path.join(ROOT, "run_metrics.py"), "--snapshot=run/network-final.h5",
                            "--dataset=digits8", "--metrics=fid32", "--feature_net=digits_features.keras",
                            "--cache_dir=progress-cache", "--batch_size=8"], cwd=root, stdout=subprocess.PIPE,
                           stderr=log, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
        log.seek(0)
        err = log.read()
    assert r.returncode == 0, err[-2000:]
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("fakes (seed")]
    assert lines and lines[-1].startswith("fakes (seed 1000): 100% (32/32 img,"), err[-2000:]

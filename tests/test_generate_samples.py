"""generate_samples.py and vgrow_tf.sampling: seeds, interpolation, walks, videos, directions, the CLI."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from vgrow_tf import snapshot
from vgrow_tf.errors import UserError
from vgrow_tf.models import vgrow_pg
from vgrow_tf.sampling import direction, latents, modes, video
from vgrow_tf.sampling.images import to_uint8

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pg_snapshot(tmp_path_factory):
    keras.utils.set_random_seed(0)
    config = vgrow_pg.make_config(8, 1, z_dim=8, fmaps=8)
    path = str(tmp_path_factory.mktemp("snap") / "pg.h5")
    snapshot.save(path, vgrow_pg.KIND, config, vgrow_pg.build_networks(config))
    return path


@pytest.fixture(scope="module")
def pg(pg_snapshot):
    return snapshot.load(pg_snapshot)


# --- seeds and latents ---------------------------------------------------------------------------------

def test_parse_seeds():
    assert latents.parse_seeds("0-3") == [0, 1, 2, 3]
    assert latents.parse_seeds("1,5,7") == [1, 5, 7]
    assert latents.parse_seeds(" 0-2, 10 ,4-5") == [0, 1, 2, 10, 4, 5]
    assert latents.parse_seeds("42") == [42]
    for bad in ("", "a-b", "5-2", "1,,2", "-3", "1.5", "0-"):
        with pytest.raises(UserError):
            latents.parse_seeds(bad)
    assert latents.resolve_seeds(None, 3, 10) == [10, 11, 12]
    assert latents.resolve_seeds("4-5", 3, 10) == [4, 5]
    with pytest.raises(UserError):
        latents.resolve_seeds(None, None, 0)


def test_latent_of_a_seed_does_not_depend_on_the_other_seeds(pg):
    a = latents.latents_for_seeds(pg, [3, 7, 9])
    b = latents.latents_for_seeds(pg, [9, 3])
    np.testing.assert_array_equal(a[0], b[1])
    np.testing.assert_array_equal(a[2], b[0])
    np.testing.assert_array_equal(a[1], np.random.RandomState(7).randn(1, 8)[0].astype(np.float32))


def test_lerp_and_slerp_formulas():
    rng = np.random.RandomState(0)
    a, b = rng.randn(2, 5)
    t = np.linspace(0, 1, 7)
    lin = latents.lerp(a, b, t)
    np.testing.assert_allclose(lin[3], 0.5 * (a + b), rtol=1e-6)
    for path in (lin, latents.slerp(a, b, t)):
        np.testing.assert_allclose(path[0], a, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(path[-1], b, rtol=1e-6, atol=1e-6)
    ua, ub = a / np.linalg.norm(a), b / np.linalg.norm(b)
    sph = latents.slerp(ua, ub, t)
    np.testing.assert_allclose(np.linalg.norm(sph, axis=1), 1.0, atol=1e-6)
    # constant angular speed: equal angles between consecutive points
    angles = np.arccos(np.clip(np.sum(sph[1:] * sph[:-1], 1), -1, 1))
    np.testing.assert_allclose(angles, angles[0], rtol=1e-4)
    # midpoint of orthogonal unit vectors is (a + b) / sqrt(2)
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    np.testing.assert_allclose(latents.slerp(e1, e2, [0.5])[0], (e1 + e2) / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(latents.slerp(e1, e1, [0.3])[0], e1, atol=1e-6)  # degenerate -> lerp
    batch = latents.slerp(rng.randn(4, 5), rng.randn(4, 5), t)
    assert batch.shape == (7, 4, 5)


def test_smoothed_walk_wraps_around():
    z = latents.smooth_walk(16, num_points=5, transition_points=12, smoothing=1.0, seed=3)
    assert z.shape == (60, 16)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 4.0, rtol=1e-5)
    steps = np.linalg.norm(np.diff(z, axis=0), axis=1)
    wrap = np.linalg.norm(z[0] - z[-1])
    assert wrap <= 1.5 * steps.max()  # the loop closes as smoothly as any other step
    raw = latents.smooth_walk(16, 5, 12, smoothing=0.0, seed=3)
    assert np.linalg.norm(np.diff(raw, axis=0), axis=1).mean() > 5 * steps.mean()


# --- video -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_video_written_with_right_frame_count(tmp_path, ext):
    rng = np.random.RandomState(0)
    frames = (rng.rand(9, 10, 14, 1) * 255).astype(np.uint8)
    path = str(tmp_path / f"v{ext}")
    video.write_video(path, frames, fps=10)
    back = video.read_video(path)
    assert back.shape == (9, 10, 14, 3)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    with pytest.raises(UserError):
        video.write_video(str(tmp_path / "v.txt"), frames)


def test_video_mode_latent_walk(pg, tmp_path):
    path = str(tmp_path / "walk.mp4")
    modes.save_video(pg, path, num_points=2, transition_points=4, fps=8, resize=(12, 20))
    back = video.read_video(path)
    assert back.shape == (8, 12, 20, 3)
    gif = str(tmp_path / "walk.gif")
    modes.save_video(pg, gif, num_points=3, transition_points=2, fps=8)
    assert video.read_video(gif).shape[:3] == (6, 8, 8)


def test_multiscale_video_frames_tile_scales():
    scales = [np.full([2, s, s, 1], k, np.float32) for k, s in enumerate((4, 8, 16))]
    frames = video.scales_frame(scales, [0, 2])
    assert frames.shape == (2, 16, 32, 1)
    assert (frames[:, :, :16] == 0).all() and (frames[:, :, 16:] == 2).all()


# --- direction ---------------------------------------------------------------------------------------

def test_direction_fit_recovers_planted_direction():
    rng = np.random.RandomState(1)
    z = rng.randn(400, 12)
    planted = np.zeros(12)
    planted[4] = 1.0
    labels = (z @ planted + 0.1 * rng.randn(400) > 0).astype(int)
    d, info = direction.fit_direction(z, labels)
    assert abs(np.linalg.norm(d) - 1) < 1e-5
    assert d @ planted > 0.95 and info["accuracy"] > 0.9
    moved = direction.move_along(z[:3], d, [-1.0, 0.0, 2.0])
    np.testing.assert_allclose(moved[:, 1], z[:3], atol=1e-6)
    np.testing.assert_allclose(moved[:, 2] - moved[:, 1], np.tile(2 * d, (3, 1)), atol=1e-5)
    with pytest.raises(UserError):
        direction.fit_direction(z, np.ones(400))


def test_labels_from_scores():
    np.testing.assert_array_equal(direction.labels_from_scores([[0.2], [0.7]]), [0, 1])
    np.testing.assert_array_equal(direction.labels_from_scores([-1.0, 3.0]), [0, 1])
    np.testing.assert_array_equal(direction.labels_from_scores([[0.1, 0.9], [0.8, 0.2]], 1), [1, 0])
    with pytest.raises(UserError):
        direction.labels_from_scores([[0.1, 0.9], [0.8, 0.2]])


def test_direction_mode_from_csv(pg, tmp_path):
    seeds = list(range(40))
    z = latents.latents_for_seeds(pg, seeds)
    csv = tmp_path / "labels.csv"
    csv.write_text("seed,label\n" + "".join(f"{s},{int(z[i, 2] > 0)}\n" for i, s in enumerate(seeds)))
    out = str(tmp_path / "dir")
    paths = modes.save_direction(pg, out, labels_csv=str(csv), show_seeds=[0, 1, 2], steps=5,
                                 video_file="walk.gif", fps=10)
    d = np.load(os.path.join(out, "direction.npy"))
    assert d[2] == np.max(d) and d[2] > 0.7
    assert video.read_video(os.path.join(out, "walk.gif")).shape[0] == 2 * 5 + 2 * 5 - 2
    assert os.path.join(out, "direction-strips.png") in paths


def test_direction_mode_from_keras_classifier(pg, tmp_path):
    # a "classifier" that says whether the mean pixel is above the median of the samples
    seeds = list(range(30))
    images = pg.generate(latents.latents_for_seeds(pg, seeds))
    threshold = float(np.median(images.mean(axis=(1, 2, 3))))
    inp = keras.Input((8, 8, 1))
    dense = keras.layers.Dense(1)
    model = keras.Model(inp, dense(keras.layers.GlobalAveragePooling2D()(inp)))
    dense.set_weights([np.ones([1, 1], np.float32), np.array([-threshold], np.float32)])
    path = str(tmp_path / "clf.keras")
    model.save(path)
    seeds_out, labels = modes.direction_labels(pg, seeds, classifier=path)
    assert set(labels.tolist()) == {0, 1}


# --- modes --------------------------------------------------------------------------------------------

def test_samples_named_by_seed_equal_snapshot_generate(pg, tmp_path):
    from PIL import Image
    paths = modes.save_samples(pg, str(tmp_path), [5, 2, 11], batch_size=2)
    assert sorted(os.path.basename(p) for p in paths) == ["seed0002.png", "seed0005.png", "seed0011.png"]
    for seed in (5, 2, 11):
        expected = to_uint8(pg.generate(np.random.RandomState(seed).randn(1, 8).astype(np.float32)))[0, ..., 0]
        got = np.asarray(Image.open(tmp_path / f"seed{seed:04d}.png"))
        np.testing.assert_array_equal(got, expected)


def test_grid_and_interpolation(pg, tmp_path):
    from PIL import Image
    modes.save_grid_images(pg, str(tmp_path), list(range(6)), rows=2, cols=3)
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (16, 24)
    with pytest.raises(UserError):
        modes.save_grid_images(pg, str(tmp_path), list(range(5)), rows=2, cols=3)
    modes.save_interpolation(pg, str(tmp_path), [1, 2, 3], steps=4, method="lerp")
    grid = np.asarray(Image.open(tmp_path / "interpolate-lerp.png"))
    assert grid.shape == (16, 32)
    ends = to_uint8(pg.generate(latents.latents_for_seeds(pg, [1, 2])))[..., 0]
    np.testing.assert_array_equal(grid[:8, :8], ends[0])
    np.testing.assert_array_equal(grid[:8, 24:], ends[1])


def test_options_the_model_lacks_are_clear_errors(pg, tmp_path, capsys):
    with pytest.raises(UserError, match="MSG"):
        modes.save_multiscale(pg, str(tmp_path), [0])
    assert modes.generation_kwargs(pg, truncation_psi=0.7) == {}  # ignored, with a notice
    assert "--truncation_psi is ignored" in capsys.readouterr().out
    with pytest.raises(UserError, match="GLO"):
        modes.save_glo(pg, str(tmp_path), "reconstruct")


# --- the command line -----------------------------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(ROOT, "generate_samples.py"), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)


def test_cli_bad_inputs_give_one_line(pg_snapshot, tmp_path):
    cases = [(["--snapshot", str(tmp_path / "missing.h5"), "--out_dir", str(tmp_path), "--seeds", "0-3"],
              "does not exist"),
             (["--snapshot", pg_snapshot, "--out_dir", str(tmp_path), "--seeds", "3-x"], "--seeds"),
             (["--snapshot", pg_snapshot, "--out_dir", str(tmp_path), "--seeds", "0-1", "--mode", "multiscale"],
              "MSG")]
    for args, needle in cases:
        r = _cli(*args)
        assert r.returncode != 0, r.stderr
        lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
        assert lines[-1].startswith("Error:") and needle in lines[-1], r.stderr
        assert "Traceback" not in r.stderr


def test_cli_samples_and_dgflow_grid(pg_snapshot, tmp_path):
    r = _cli("--snapshot", pg_snapshot, "--out_dir", str(tmp_path), "--num_samples", "3", "--seed", "4")
    assert r.returncode == 0, r.stderr
    assert sorted(p for p in os.listdir(tmp_path)) == ["seed0004.png", "seed0005.png", "seed0006.png"]
    r = _cli("--snapshot", pg_snapshot, "--out_dir", str(tmp_path / "g"), "--mode", "grid", "--seeds", "0-3",
             "--refine", "dgflow", "--dgflow_steps", "2", "--dgflow_save_every", "1")
    assert r.returncode == 0, r.stderr
    names = set(os.listdir(tmp_path / "g"))
    assert {"grid.png", "grid-dgflow-step00.png", "grid-dgflow-step02.png", "grid-dgflow.npz"} <= names
    assert int(np.load(tmp_path / "g" / "grid-dgflow.npz")["group_size"]) == 64  # the refinement batch


# --- other families ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def msg(tmp_path_factory):
    from vgrow_tf.models import msg_gan
    keras.utils.set_random_seed(2)
    config = msg_gan.make_config("msg_stylegan", 8, 1, z_dim=8, mapping_fmaps=16, mapping_layers=2,
                                 fmap_base=32, fmap_max=16)
    path = str(tmp_path_factory.mktemp("msg") / "msg.h5")
    snapshot.save(path, "msg_stylegan", config, msg_gan.build_networks(config))
    return snapshot.load(path)


def test_msg_multiscale_truncation_and_scale_video(msg, tmp_path):
    from PIL import Image
    gen_kw = modes.generation_kwargs(msg, truncation_psi=0.6)
    assert gen_kw == {"truncation_psi": 0.6, "randomize_noise": False}
    paths = modes.save_multiscale(msg, str(tmp_path), [1, 4], gen_kw, padding=2)
    strip = np.asarray(Image.open(tmp_path / "seed0004.png"))
    assert strip.shape == (8, 2 * 8 + 2)  # 4x4 (upsampled) and 8x8 side by side
    assert np.asarray(Image.open(tmp_path / "multiscale.png")).shape == (2 * 8 + 2, 2 * 8 + 2)
    assert len(paths) == 3
    top = to_uint8(msg.generate(latents.latents_for_seeds(msg, [4]), **gen_kw))[0, ..., 0]
    np.testing.assert_array_equal(strip[:, 10:], top)
    modes.save_samples(msg, str(tmp_path / "s"), [4], gen_kw)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s" / "seed0004.png")), top)
    path = str(tmp_path / "scales.gif")
    modes.save_video(msg, path, num_points=2, transition_points=2, scales=["0", "1"], gen_kw=gen_kw)
    assert video.read_video(path).shape[:3] == (4, 8, 16)


def test_msg_dgflow_refines(msg, tmp_path):
    paths = modes.save_grid_images(msg, str(tmp_path), [0, 1, 2, 3], 2, 2, gen_kw={"randomize_noise": False},
                                   refine=dict(steps=2, save_every=1, eta=0.05))
    names = {os.path.basename(p) for p in paths}
    assert {"grid.png", "grid-dgflow-step01.png", "grid-dgflow.npz"} <= names


@pytest.fixture(scope="module")
def glo_snap():
    from vgrow_tf.models import glo
    keras.utils.set_random_seed(3)
    config = glo.make_config(8, 1, z_dim=4, fmaps=8, num_latents=20)
    table = np.random.RandomState(0).randn(20, 4).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return snapshot.Snapshot("glo.h5", "glo", config, glo.build_networks(config), {"latents": table}, glo)


def test_glo_modes(glo_snap, tmp_path):
    paths = modes.save_glo(glo_snap, str(tmp_path), "generate", rows=2, cols=3)
    paths += modes.save_glo(glo_snap, str(tmp_path), "interpolate", pairs=2, steps=3)
    assert all(os.path.isfile(p) for p in paths) and len(paths) == 2
    with pytest.raises(UserError, match="dataset"):
        modes.save_glo(glo_snap, str(tmp_path), "reconstruct")
    # seeds draw from the Gaussian fitted to the learned latents
    modes.save_samples(glo_snap, str(tmp_path / "s"), [0, 1])
    from vgrow_tf.sampling import refine as refine_lib
    with pytest.raises(UserError, match="--corrector"):
        refine_lib.refine_snapshot(glo_snap, latents.latents_for_seeds(glo_snap, [0]), steps=1)


def test_cli_video_and_interpolate(pg_snapshot, tmp_path):
    r = _cli("--snapshot", pg_snapshot, "--out_dir", str(tmp_path), "--mode", "video", "--video_file", "w.gif",
             "--num_points", "2", "--transition_points", "3", "--resize", "10,12", "--fps", "6")
    assert r.returncode == 0, r.stderr
    assert video.read_video(str(tmp_path / "w.gif")).shape == (6, 10, 12, 3)
    r = _cli("--snapshot", pg_snapshot, "--out_dir", str(tmp_path), "--mode", "video", "--resize", "10")
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("Error: --resize")

"""export_model.py: SavedModel, LiteRT and ONNX files that, run by TensorFlow / LiteRT / onnxruntime in a
process where vgrow_tf cannot be imported, give the images vgrow_tf gives for the same z.

Exports are slow (tracing and conversion), so each (model, format) pair is exported once per module and
every exported file is run by one checker process (tests/export_checker.py). Pairs: our own tiny
MSG-StyleGAN run in all three formats (the SavedModel through the program as typed), and each original
model of tests/fixtures in one format: msg-stylegan-tf pickle -> SavedModel (every extra signature),
PGVGrow checkpoint -> LiteRT, GLO-TF checkpoint -> ONNX, SCoGAN folders -> SavedModel (both domains).
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_cli_as_typed import typed, user_env

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
SEEDS = [0, 1, 2, 3, 4]  # 5: not a multiple of MSG-StyleGAN's minibatch-stddev group (4)
TOLERANCE = {"saved_model": 1, "onnx": 1, "tflite": 2}  # uint8 levels
RUNTIME = {"saved_model": "tensorflow", "tflite": "ai_edge_litert", "onnx": "onnxruntime"}
CONVERTER = {"saved_model": "tensorflow", "tflite": "tensorflow", "onnx": "tf2onnx"}


def _missing(fmt):
    return [m for m in {RUNTIME[fmt], CONVERTER[fmt]} if importlib.util.find_spec(m) is None]


def _skip_reason(fmt):
    missing = _missing(fmt)
    return f"{fmt} needs {', '.join(missing)}: pip install -e '.[export]'" if missing else None


class Exports:
    """Exported files, the inputs to feed them and what vgrow_tf computes for those inputs."""

    def __init__(self, folder):
        self.folder, self.jobs, self.expected = folder, [], {}

    def add(self, name, fmt, path, signature, inputs, expected):
        files = {}
        for key, value in inputs.items():
            files[key] = os.path.join(self.folder, f"{name}-{key}.npy")
            np.save(files[key], np.asarray(value))
        self.jobs.append(dict(name=name, format=fmt, path=path, signature=signature, inputs=files))
        self.expected[name] = expected


def _own_run(folder):
    """Our own snapshot in a run directory, as train.py leaves it (network-final.h5)."""
    from vgrow_tf import snapshot
    from vgrow_tf.models import msg_gan
    config = msg_gan.make_config("msg_stylegan", 8, 1, z_dim=8, mapping_fmaps=16, mapping_layers=2,
                                 fmap_base=32, fmap_max=16)
    networks = msg_gan.build_networks(config)
    # The learned 4x4 input of a trained model (a fresh one is all ones: zero variance, see test_float16_...).
    networks["Gs"].const.assign(np.random.RandomState(0).randn(*networks["Gs"].const.shape))
    run_dir = os.path.join(folder, "run")
    os.makedirs(run_dir)
    snapshot.save(os.path.join(run_dir, "network-final.h5"), "msg_stylegan", config, networks)
    return run_dir


def _written_by_generate_samples(snap, seeds, folder):
    """The PNGs generate_samples.py --mode=samples writes for `seeds`, read back as uint8 [N, H, W, C]."""
    from PIL import Image

    from vgrow_tf.sampling import modes
    paths = modes.save_samples(snap, folder, seeds, modes.generation_kwargs(snap, None, False))
    images = np.stack([np.asarray(Image.open(p)) for p in paths])
    return images[..., None] if images.ndim == 3 else images


@pytest.fixture(scope="module")
def glo():
    from vgrow_tf import snapshot
    return snapshot.load(os.path.join(FIXTURES, "glo"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory, glo):
    from vgrow_tf import export, snapshot
    from vgrow_tf.sampling import latents, modes
    from vgrow_tf.sampling.images import to_uint8

    folder = str(tmp_path_factory.mktemp("export"))
    ex = Exports(folder)
    # Our snapshot: the SavedModel as a user types the command (a run directory, relative paths).
    _own_run(folder)
    result = typed(folder, "export_model.py", "run", "own_sm")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ex.cli_output = result.stdout + result.stderr
    own = snapshot.load(os.path.join(folder, "run", "network-final.h5"))
    z = latents.latents_for_seeds(own, SEEDS)
    written = _written_by_generate_samples(own, SEEDS, os.path.join(folder, "samples"))
    ex.add("own_sm", "saved_model", os.path.join(folder, "own_sm"), "serving_default", {"z": z},
           {"images": written})
    for fmt, suffix in (("tflite", "tflite"), ("onnx", "onnx")):
        if _skip_reason(fmt) is None:
            path = export.export(own, os.path.join(folder, f"own.{suffix}"), fmt)
            ex.add(f"own_{fmt}", fmt, path, "serving_default", {"z": z}, {"images": written})
    if _skip_reason("tflite") is None:
        path = export.export(own, os.path.join(folder, "own-f16.tflite"), "tflite", quantize="float16")
        ex.add("own_tflite_f16", "tflite", path, "serving_default", {"z": z}, {"images": written})

    # The original codes' models, each in one format.
    msg = snapshot.load(os.path.join(FIXTURES, "msg_stylegan", "network.pkl"))
    z = latents.latents_for_seeds(msg, SEEDS)
    gen = modes.generation_kwargs(msg, None, False)
    scales = msg.generate(z, all_scales=True, **gen)
    logits = msg.discriminator_logit(to_uint8(scales[-1]).astype(np.float32) / 127.5 - 1.0)
    path = export.export(msg, os.path.join(folder, "msg_sm"), "saved_model")
    ex.add("msg", "saved_model", path, "serving_default", {"z": z}, {"images": to_uint8(scales[-1])})
    ex.add("msg_multiscale", "saved_model", path, "multiscale", {"z": z},
           {f"images_{s.shape[1]}x{s.shape[1]}": to_uint8(s) for s in scales})
    ex.add("msg_psi", "saved_model", path, "truncation_psi", {"z": z, "psi": np.float32(0.7)},
           {"images": to_uint8(msg.generate(z, **dict(gen, truncation_psi=0.7)))})
    ex.add("msg_d", "saved_model", path, "discriminate", {"images": to_uint8(scales[-1])},
           {"logits": np.asarray(logits).reshape(-1)})

    scogan = snapshot.load(os.path.join(FIXTURES, "scogan"))
    z = latents.latents_for_seeds(scogan, SEEDS)
    path = export.export(scogan, os.path.join(folder, "scogan_sm"), "saved_model")
    a, b = (to_uint8(scogan.generate(z, domain=d)) for d in "ab")
    ex.add("scogan", "saved_model", path, "serving_default", {"z": z}, {"images": a})
    ex.add("scogan_both", "saved_model", path, "both_domains", {"z": z}, {"images_a": a, "images_b": b})

    if _skip_reason("tflite") is None:
        pg = snapshot.load(os.path.join(FIXTURES, "vgrow_pg"))
        z = latents.latents_for_seeds(pg, SEEDS)
        path = export.export(pg, os.path.join(folder, "pg.tflite"), "tflite")
        ex.add("pg_tflite", "tflite", path, "serving_default", {"z": z}, {"images": to_uint8(pg.generate(z))})
    if _skip_reason("onnx") is None:
        z = latents.latents_for_seeds(glo, SEEDS)
        path = export.export(glo, os.path.join(folder, "glo.onnx"), "onnx")
        ex.add("glo_onnx", "onnx", path, "serving_default", {"z": z}, {"images": to_uint8(glo.generate(z))})
    return ex


@pytest.fixture(scope="module")
def results(exports):
    """Every exported file run once by tests/export_checker.py: `python -I`, outside the checkout,
    no PYTHONPATH, and vgrow_tf blocked even where it is installed."""
    jobs = os.path.join(exports.folder, "jobs.json")
    out = os.path.join(exports.folder, "results.npz")
    with open(jobs, "w") as f:
        json.dump(exports.jobs, f)
    env = {k: v for k, v in user_env().items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", os.path.join(HERE, "export_checker.py"), jobs, out],
                          cwd=exports.folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as stored:
        return {k: stored[k] for k in stored.files}


def _job(exports, name):
    job = next((j for j in exports.jobs if j["name"] == name), None)
    if job is None:
        fmt = "onnx" if name.endswith("onnx") else "tflite"
        pytest.skip(_skip_reason(fmt))
    return job


def _assert_images_close(got, expected, tolerance):
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance


def test_checker_cannot_import_vgrow_tf(results):
    assert not results["vgrow_tf_importable"]
    assert results["vgrow_tf_modules_loaded"].size == 0


@pytest.mark.parametrize("name", ["own_sm", "own_tflite", "own_onnx", "msg", "msg_multiscale", "msg_psi",
                                  "scogan", "scogan_both", "pg_tflite", "glo_onnx"])
def test_exported_images_equal_vgrow_tf_images(exports, results, name):
    job = _job(exports, name)
    for key, expected in exports.expected[name].items():
        _assert_images_close(results[f"{name}/{key}"], expected, TOLERANCE[job["format"]])
    if job["format"] == "tflite":  # the batch of 1 run first, on the same interpreter
        _assert_images_close(results[f"{name}/first/images"], exports.expected[name]["images"][:1], 2)


def test_float16_litert_is_smaller_and_close(exports, results):
    """--quantize=float16 stores half-size weights (of this tiny model's 49 kB file, most is graph: -21 %;
    the 32 px fixture's file halves, see benchmarks/export_latency.py); its images stay within 4 levels.
    float16 also flushes the 1e-8 epsilons of the normalisations to 0: an untrained MSG-StyleGAN, whose
    constant input has zero variance, then gives NaN (255) images, hence the learned-like input above."""
    job = _job(exports, "own_tflite_f16")
    assert os.path.getsize(job["path"]) < 0.9 * os.path.getsize(_job(exports, "own_tflite")["path"])
    _assert_images_close(results["own_tflite_f16/images"], exports.expected["own_tflite_f16"]["images"], 4)


def test_exports_differ_where_the_inputs_differ(exports, results):
    """The comparisons above are not of constant images: truncation and domain change the output."""
    assert np.abs(results["msg_psi/images"].astype(int) - results["msg/images"]).max() > 2
    assert np.abs(results["scogan_both/images_a"].astype(int) - results["scogan_both/images_b"]).max() > 2


def test_discriminate_signature_gives_d_logits(exports, results):
    np.testing.assert_allclose(results["msg_d/logits"], exports.expected["msg_d"]["logits"], rtol=1e-4,
                               atol=1e-4)


def test_metadata_readable_without_vgrow_tf(exports, results):
    assert results["own_sm/meta/kind"] == b"msg_stylegan"
    assert int(results["own_sm/meta/resolution"]) == 8 and int(results["own_sm/meta/z_dim"]) == 8
    assert results["own_sm/meta/source"] == b"network-final.h5"
    assert json.loads(str(results["own_sm/meta/assets_json"]))["channels"] == 1
    assert results["msg/meta/source"] == b"network.pkl" and int(results["msg/meta/resolution"]) == 32
    if "glo_onnx" in exports.expected:
        assert str(results["glo_onnx/meta/kind"]) == "glo"
    assert "run is a run directory; using its latest snapshot" in exports.cli_output


def test_glo_sample_gaussian_signature_is_generate_samples_sampler(glo):
    """sample_gaussian(noise = RandomState(s).randn) decodes the latent generate_samples.py uses for seed s."""
    from vgrow_tf.export import serving
    from vgrow_tf.sampling import latents
    from vgrow_tf.sampling.images import to_uint8
    module = serving.serving_module(glo)
    noise = np.concatenate([np.random.RandomState(s).randn(1, glo.latent_dim) for s in SEEDS]).astype(np.float32)
    got = module.functions["sample_gaussian"](noise=noise)["images"].numpy()
    expected = to_uint8(glo.generate(latents.latents_for_seeds(glo, SEEDS)))
    _assert_images_close(got, expected, 1)


@pytest.mark.parametrize("kind", ["msg_progan", "cogan"])
def test_signatures_of_the_other_kinds(kind):
    """The families' extras in-process (the files above cover MSG-StyleGAN, SCoGAN, PGVGrow and GLO):
    MSG-ProGAN's scales and D, CoGAN's second domain (hard-shared layers) and both discriminators."""
    from vgrow_tf.export import serving
    from vgrow_tf.models import coupled_gan, msg_gan
    from vgrow_tf.sampling import latents
    from vgrow_tf.sampling.images import to_uint8
    from vgrow_tf.snapshot import Snapshot
    family = msg_gan if kind == "msg_progan" else coupled_gan
    config = msg_gan.make_config(kind, 8, 1, z_dim=8, fmap_base=32, fmap_max=16) if kind == "msg_progan" \
        else coupled_gan.make_config(kind, 8, 1, z_dim=8, fmaps=16)
    snap = Snapshot("tiny.h5", kind, config, family.build_networks(config), {}, family)
    functions = serving.serving_module(snap).functions
    z = latents.latents_for_seeds(snap, SEEDS)
    if kind == "msg_progan":
        assert "truncation_psi" not in functions
        scales = snap.generate(z, all_scales=True)
        got = functions["multiscale"](z=z)
        for s in scales:
            _assert_images_close(got[f"images_{s.shape[1]}x{s.shape[1]}"].numpy(), to_uint8(s), 1)
        images = to_uint8(scales[-1])
        expected = np.asarray(snap.discriminator_logit(images.astype(np.float32) / 127.5 - 1.0)).reshape(-1)
        np.testing.assert_allclose(functions["discriminate"](images=images)["logits"].numpy(), expected,
                                   rtol=1e-4, atol=1e-5)
    else:
        _assert_images_close(functions["domain_b"](z=z)["images"].numpy(), to_uint8(snap.generate(z, domain="b")), 1)
        for name, domain in (("discriminate", "a"), ("discriminate_b", "b")):  # D1 and D2
            images = to_uint8(snap.generate(z, domain=domain))
            expected = np.asarray(snap.discriminator_logit(images.astype(np.float32) / 127.5 - 1.0,
                                                           domain=domain)).reshape(-1)
            np.testing.assert_allclose(functions[name](images=images)["logits"].numpy(), expected,
                                       rtol=1e-4, atol=1e-5)


def test_bad_requests_are_one_line_and_leave_nothing(tmp_path):
    from vgrow_tf import export
    from vgrow_tf.errors import UserError
    (tmp_path / "taken").mkdir()
    for fmt, out, quantize, message in [("keras", "x", None, "unknown export format 'keras'"),
                                        ("onnx", "x.onnx", "float16", "--quantize applies to --format=tflite"),
                                        ("tflite", "x.tflite", "int4", "unknown --quantize 'int4'"),
                                        ("saved_model", str(tmp_path / "taken"), None, "pass --overwrite")]:
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            export.check_request(fmt, out, quantize)
    assert os.listdir(tmp_path) == ["taken"]


def test_cli_refuses_existing_out_in_one_line(exports):
    result = typed(exports.folder, "export_model.py", "run", "own_sm", "--format=saved_model")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "Error: own_sm already exists; choose another name or pass --overwrite"


def test_a_failed_conversion_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """A converter that fails half-way (here: after writing part of its file) -> UserError, no OUT, no
    temporary file, no folder the export created."""
    from vgrow_tf import export
    from vgrow_tf.errors import UserError
    from vgrow_tf.export import tflite
    from vgrow_tf.models import coupled_gan
    from vgrow_tf.snapshot import Snapshot
    config = coupled_gan.make_config("cogan", 8, 1, z_dim=4, fmaps=8)
    snap = Snapshot("tiny.h5", "cogan", config, coupled_gan.build_networks(config), {}, coupled_gan)

    def write_half(module, path, **unused):
        with open(path, "wb") as f:
            f.write(b"TFL3")
        raise RuntimeError("op Foo is neither a custom op nor a flex op\nmore detail")
    monkeypatch.setattr(tflite, "write", write_half)
    with pytest.raises(UserError, match=r"^cannot export this cogan model as tflite \(RuntimeError: op Foo "
                                        r"is neither a custom op nor a flex op\); --verbose"):
        export.export(snap, str(tmp_path / "new" / "deeper" / "gen.tflite"), "tflite")
    assert os.listdir(tmp_path) == []


def test_a_model_without_generator_is_refused(tmp_path):
    from vgrow_tf import export
    from vgrow_tf.errors import UserError

    class Classifier:  # what export sees of a classifier snapshot: a family without generator_tensor
        kind, family, latent_dim = "classifier", object(), 0
    with pytest.raises(UserError, match="has no generator of latents"):
        export.export(Classifier(), str(tmp_path / "c"), "saved_model")
    assert not os.listdir(tmp_path)

"""dataset_tool / tfrecord writer / tf.data reader: exact bytes, levels, labels and every bad input."""
import gzip
import json
import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from vgrow_tf.data import inspect_dataset, load_dataset, tool, writer
from vgrow_tf.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pngs(folder, images, mode=None):
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        PIL.Image.fromarray(image, mode).save(os.path.join(folder, f"img{i:03d}.png"))


def random_images(n, size, channels=3, seed=0):
    shape = [n, size, size] + ([channels] if channels == 3 else [])
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def read_level(path, level):
    """Independent reader: parse every record with the protobuf API (no vgrow_tf code)."""
    name = os.path.basename(path)
    out = []
    for record in tf.data.TFRecordDataset(os.path.join(path, f"{name}-r{level:02d}.tfrecords")).as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        shape = list(example.features.feature["shape"].int64_list.value)
        out.append(np.frombuffer(example.features.feature["data"].bytes_list.value[0], np.uint8).reshape(shape))
    return np.stack(out)


def numpy_box_levels(nchw):
    """Every lower level as the exact float64 mean over 2^k x 2^k blocks, rounded once."""
    n, c, h, _ = nchw.shape
    levels = {}
    k = 1
    while h // k >= 4:
        r = h // k
        block = nchw.astype(np.float64).reshape(n, c, r, k, r, k).mean(axis=(3, 5))
        levels[r] = np.rint(block).clip(0, 255).astype(np.uint8)
        k *= 2
    return levels


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("rgb"))
    images = random_images(12, 16)
    write_pngs(folder, images)
    return folder, images


@pytest.fixture(scope="module")
def rgb_dataset(rgb_folder, tmp_path_factory):
    folder, images = rgb_folder
    out = os.path.join(str(tmp_path_factory.mktemp("ds")), "rgb")
    tool.create_from_images(out, folder)
    return out, images


def test_flat_folder_matches_nvidia_order_and_bytes(rgb_dataset):
    path, images = rgb_dataset
    order = np.arange(len(images))
    np.random.RandomState(123).shuffle(order)        # NVIDIA's choose_shuffled_order on sorted names
    expected = images[order].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(read_level(path, 4), expected)
    # Records are byte-identical to a tf.train.Example built field by field as NVIDIA's exporter does.
    record = next(tf.data.TFRecordDataset(os.path.join(path, "rgb-r04.tfrecords")).as_numpy_iterator())
    feature = {"shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[3, 16, 16])),
               "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[expected[0].tobytes()]))}
    assert record == tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    assert sorted(os.listdir(path)) == ["dataset.json", "rgb-r02.tfrecords", "rgb-r03.tfrecords",
                                        "rgb-r04.tfrecords"]


def test_every_level_is_the_exact_box_mean(rgb_dataset):
    path, images = rgb_dataset
    top = read_level(path, 4)
    for resolution, expected in numpy_box_levels(top).items():
        np.testing.assert_array_equal(read_level(path, int(np.log2(resolution))), expected)


def test_reader_round_trip_is_exact(rgb_dataset):
    path, _ = rgb_dataset
    top = read_level(path, 4)
    batch = next(iter(load_dataset(path, 12, shuffle=False, repeat=False, with_index=True)))
    pixels = np.rint((batch["image"].numpy() + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(pixels, top.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(batch["index"].numpy(), np.arange(12))
    assert batch["image"].shape == (12, 16, 16, 3)  # static shape


def test_reader_multiscale_mirror_shard_and_levels(rgb_dataset):
    path, _ = rgb_dataset
    stored8 = read_level(path, 3).transpose(0, 2, 3, 1).astype(np.float32) / 127.5 - 1
    scales = next(iter(load_dataset(path, 12, multiscale=True, shuffle=False, repeat=False)))["image"]
    assert [s.shape[1] for s in scales] == [4, 8, 16]
    np.testing.assert_allclose(scales[1].numpy(), stored8, atol=0.5 / 127.5 + 1e-6)  # stored = rounded pool
    plain = next(iter(load_dataset(path, 12, shuffle=False, repeat=False)))["image"].numpy()
    mirrored = next(iter(load_dataset(path, 12, shuffle=False, repeat=False, mirror=True, seed=3)))["image"].numpy()
    flipped = [np.array_equal(m, p[:, ::-1]) for m, p in zip(mirrored, plain)]
    kept = [np.array_equal(m, p) for m, p in zip(mirrored, plain)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    low = next(iter(load_dataset(path, 4, resolution=8, shuffle=False, repeat=False)))["image"]
    assert low.shape == (4, 8, 8, 3)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    shard = next(iter(load_dataset(path, 6, shuffle=False, repeat=False, with_index=True, input_context=context)))
    np.testing.assert_array_equal(shard["index"].numpy(), np.arange(1, 12, 2))
    with pytest.raises(UserError, match="no 32x32 level"):
        load_dataset(path, 4, resolution=32)


def test_shuffle_is_seeded(rgb_dataset):
    path, _ = rgb_dataset
    first = [b["index"].numpy().tolist() for b in load_dataset(path, 4, seed=5, with_index=True).take(6)]
    again = [b["index"].numpy().tolist() for b in load_dataset(path, 4, seed=5, with_index=True).take(6)]
    other = [b["index"].numpy().tolist() for b in load_dataset(path, 4, seed=6, with_index=True).take(6)]
    assert first == again and first != other
    assert sorted(sum(first[:3], [])) == list(range(12))  # one epoch is a permutation


def test_nvidia_written_dataset_without_metadata_loads(tmp_path, rgb_dataset):
    src, _ = rgb_dataset
    dst = tmp_path / "theirs"
    dst.mkdir()
    for f in os.listdir(src):
        if f.endswith(".tfrecords"):
            os.link(os.path.join(src, f), dst / f.replace("rgb", "theirs"))
    info = inspect_dataset(str(dst))
    assert (info.resolution, info.channels, info.num_images, info.levels) == (16, 3, 12, [4, 8, 16])


def test_digits_labels_and_info(tmp_path):
    path = str(tmp_path / "digits")
    tool.create_digits(path, resolution=16)
    from sklearn.datasets import load_digits
    digits = load_digits()
    order = writer.shuffled_order(len(digits.target))
    labels = np.load(os.path.join(path, "digits-rxx.labels"))
    assert labels.dtype == np.float32 and labels.shape == (1797, 10)
    np.testing.assert_array_equal(labels.argmax(1), digits.target[order])
    top = read_level(path, 4)[:, 0]
    expected = np.rint(digits.images[order] * 255 / 16).astype(np.uint8).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(top, expected)
    np.testing.assert_array_equal(read_level(path, 3)[:, 0], np.rint(digits.images[order] * 255 / 16))
    batch = next(iter(load_dataset(path, 5, labels=True, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(batch["label"].numpy(), labels[:5])
    summary = tool.info(path)
    assert (summary["num_images"], summary["label_size"], summary["levels"]) == (1797, 10, [4, 8, 16])


def test_resize_non_square_grayscale_palette_and_16bit(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "sub").mkdir()
    PIL.Image.fromarray(random_images(1, 40, 1)[0][:, :30], "L").save(folder / "a.png")        # 30x40 gray
    PIL.Image.fromarray(random_images(1, 20, 3)[0]).convert("P").save(folder / "sub" / "b.png")  # palette
    PIL.Image.fromarray(random_images(1, 20, 1)[0].astype(np.uint16) * 257).save(folder / "c.png")  # 16-bit
    PIL.Image.fromarray(random_images(1, 24, 3)[0]).convert("RGBA").save(folder / "d.webp")
    out = str(tmp_path / "resized")
    tool.create_from_images(out, str(folder), resolution=8, resize_filter="box", shuffle=False)
    info = inspect_dataset(out)
    assert (info.resolution, info.channels, info.num_images) == (8, 1, 4)  # first image fixes grayscale
    assert info.metadata["resize_filter"] == "box"
    gray = np.asarray(PIL.Image.open(folder / "a.png"))[5:35]               # centre crop 30x30
    expected = np.asarray(PIL.Image.fromarray(gray).resize((8, 8), PIL.Image.BOX))
    np.testing.assert_array_equal(read_level(out, 3)[0, 0], expected)
    sixteen = np.asarray(PIL.Image.open(folder / "c.png"), np.float64) / 257
    np.testing.assert_array_equal(read_level(out, 3)[1, 0],  # sorted: a, c, d.webp, sub/b
                                  np.asarray(PIL.Image.fromarray(np.rint(sixteen).astype(np.uint8)).resize(
                                      (8, 8), PIL.Image.BOX)))


@pytest.mark.parametrize("case, message", [
    ("empty", "no input images found"),
    ("mixed_sizes", "pass --resolution"),
    ("non_power_of_two", "not a power of two"),
    ("non_square", "not square"),
    ("corrupt", "cannot read image"),
    ("missing", "does not exist"),
])
def test_bad_folders_fail_clearly_and_leave_nothing(tmp_path, case, message):
    folder = tmp_path / "in"
    folder.mkdir()
    if case == "mixed_sizes":
        write_pngs(str(folder), random_images(3, 8))
        PIL.Image.fromarray(random_images(1, 16)[0]).save(folder / "z.png")
    elif case == "non_power_of_two":
        write_pngs(str(folder), random_images(2, 12))
    elif case == "non_square":
        PIL.Image.fromarray(random_images(1, 16)[0][:, :8]).save(folder / "a.png")
    elif case == "corrupt":
        write_pngs(str(folder), random_images(3, 8))
        (folder / "img001.png").write_bytes(b"\x89PNG not really")
    source = str(tmp_path / "nowhere") if case == "missing" else str(folder)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message):
        tool.create_from_images(str(out), source)
    assert not out.exists() and [p for p in os.listdir(tmp_path) if "partial" in p] == []


def test_skip_bad_skips_and_counts(tmp_path, capsys):
    folder = tmp_path / "in"
    write_pngs(str(folder), random_images(4, 8))
    (folder / "img002.png").write_bytes(b"broken")
    assert tool.create_from_images(str(tmp_path / "out"), str(folder), skip_bad=True) == 3
    assert "Skipped 1 unreadable" in capsys.readouterr().out


def test_wrong_channel_count_unwritable_target_and_existing_target(tmp_path):
    with pytest.raises(UserError, match="2 channels"):
        with writer.TFRecordExporter(str(tmp_path / "two")) as tfr:
            tfr.add_image(np.zeros([2, 8, 8], np.uint8))
    assert not (tmp_path / "two").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the dataset directory"):
        tool.create_digits(str(blocker / "digits"))
    tool.create_digits(str(tmp_path / "d"))
    before = os.stat(tmp_path / "d" / "d-r03.tfrecords").st_mtime_ns
    assert tool.create_digits(str(tmp_path / "d")) == 1797  # identical: kept as is (the demo runs twice)
    assert os.stat(tmp_path / "d" / "d-r03.tfrecords").st_mtime_ns == before
    with pytest.raises(UserError, match="already holds a different dataset; pass --overwrite"):
        tool.create_digits(str(tmp_path / "d"), resolution=16)
    assert [p for p in os.listdir(tmp_path) if "partial" in p] == []
    assert tool.create_digits(str(tmp_path / "d"), resolution=16, overwrite=True) == 1797
    assert inspect_dataset(str(tmp_path / "d")).resolution == 16


def test_truncated_tfrecord_is_reported(tmp_path):
    path = str(tmp_path / "digits")
    tool.create_digits(path)
    top = os.path.join(path, "digits-r03.tfrecords")
    with open(top, "r+b") as f:
        f.truncate(os.path.getsize(top) - 30)
    with pytest.raises(UserError, match="truncated or corrupt"):
        tool.info(path)
    with pytest.raises(UserError, match="contains no .tfrecords"):
        inspect_dataset(str(tmp_path))


def test_interrupted_conversion_leaves_no_dataset(tmp_path):
    def images():
        yield "a", np.zeros([1, 8, 8], np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tool.write_dataset(str(tmp_path / "ds"), images(), 2)
    assert os.listdir(tmp_path) == []


def test_mnist_cifar_svhn_hdf5_sources(tmp_path):
    rng = np.random.RandomState(1)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    digits, labels = rng.randint(0, 256, [6, 28, 28]).astype(np.uint8), rng.randint(0, 10, 6).astype(np.uint8)
    with gzip.open(mnist / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\0" * 16 + digits.tobytes())
    with gzip.open(mnist / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\0" * 8 + labels.tobytes())
    tool.create_mnist(str(tmp_path / "m"), str(mnist), shuffle=False)
    top = read_level(str(tmp_path / "m"), 5)
    np.testing.assert_array_equal(top[:, 0, 2:30, 2:30], digits)
    assert top[:, :, :2].max() == 0
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "m-rxx.labels").argmax(1), labels)

    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    batches = [rng.randint(0, 256, [2, 3072]).astype(np.uint8) for _ in range(5)]
    for i, b in enumerate(batches, 1):
        with open(cifar / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": b, "labels": [i % 10, (i + 1) % 10]}, f)
    tool.create_cifar10(str(tmp_path / "c"), str(tmp_path))
    order = writer.shuffled_order(10)
    np.testing.assert_array_equal(read_level(str(tmp_path / "c"), 5),
                                  np.concatenate(batches).reshape(-1, 3, 32, 32)[order])

    import scipy.io
    x = rng.randint(0, 256, [32, 32, 3, 4]).astype(np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [3]])})
    tool.create_svhn(str(tmp_path / "s"), str(tmp_path), shuffle=False)
    np.testing.assert_array_equal(read_level(str(tmp_path / "s"), 5), x.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "s-rxx.labels").argmax(1), [0, 1, 2, 3])

    with h5py.File(tmp_path / "progan.h5", "w") as f:
        f["data4x4"] = np.zeros([3, 3, 4, 4], np.uint8)
        f["data8x8"] = big = rng.randint(0, 256, [3, 3, 8, 8]).astype(np.uint8)
    tool.create_from_hdf5(str(tmp_path / "h"), str(tmp_path / "progan.h5"), shuffle=False)
    np.testing.assert_array_equal(read_level(str(tmp_path / "h"), 3), big)
    with h5py.File(tmp_path / "data.hdf5", "w") as f:  # the GLO reference layout
        for i in range(3):
            f[f"{i}/image"] = big[i].transpose(1, 2, 0)
            f[f"{i}/code"] = np.zeros(4)
    tool.create_from_hdf5(str(tmp_path / "g"), str(tmp_path / "data.hdf5"), shuffle=False)
    np.testing.assert_array_equal(read_level(str(tmp_path / "g"), 3), big)


def test_celeba_crop_position():
    face = np.arange(218 * 178 * 3, dtype=np.int64).reshape(218, 178, 3)
    crop = tool.celeba_crop(face)
    assert crop.shape == (128, 128, 3)
    np.testing.assert_array_equal(crop[0, 0], face[57, 25])        # rows 57:185, cols 25:153
    np.testing.assert_array_equal(crop[-1, -1], face[184, 152])


def test_create_from_tfds_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=10):
        tool.create_from_tfds(str(tmp_path / "t"), "mnist", label_key="label", resolution=16)
    info = inspect_dataset(str(tmp_path / "t"))
    assert (info.num_images, info.resolution, info.channels, info.label_size) == (10, 16, 1, 10)


def test_cli_errors_are_one_line(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, os.path.join(ROOT, "dataset_tool.py"), *args],
                                       capture_output=True, text=True, cwd=str(tmp_path))
    result = run("create_from_images", "out", "missing_dir")
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1] == \
        "Error: image directory missing_dir does not exist"
    assert "Traceback" not in result.stderr
    ok = run("create_digits", "d", "--resolution", "16")
    assert ok.returncode == 0, ok.stderr
    info = run("info", "d", "--json")
    assert json.loads(info.stdout.strip().splitlines()[-1])["num_images"] == 1797
    assert run("compare", "d", "d").returncode == 0

"""Inputs learners try: odd pictures, damaged data files, foreign model files.

Each input gives the right result or an error that names the file and what
to do. The basic picture modes are tested in ``test_mnist.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import common

REPO_ROOT = Path(__file__).resolve().parent.parent
THREE = REPO_ROOT / "keras" / "images" / "three.png"


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The shipped digit, prepared: what every variant below should give."""
    return common.prepare_digit(THREE)


def grey_three() -> np.ndarray:
    return np.asarray(Image.open(THREE).convert("L"))


def mean_difference(path: Path, reference: np.ndarray) -> float:
    return float(np.abs(common.prepare_digit(path) - reference).mean())


# --- pictures -------------------------------------------------------------------


def test_photo_with_uneven_light(tmp_path: Path, reference) -> None:
    """A phone photo: grey paper, a light gradient, noise, JPEG compression."""
    ink = grey_three() < 128
    height, width = ink.shape
    rows, columns = np.mgrid[0:height, 0:width]
    paper = 150 + 60 * columns / width + 20 * rows / height  # 150 to 230
    noise = np.random.default_rng(0).normal(0, 6, size=ink.shape)
    photo = np.where(ink, 40, paper) + noise
    rgb = np.repeat(photo.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=70)
    assert mean_difference(tmp_path / "photo.jpg", reference) < 0.08


def test_huge_photo_is_shrunk(tmp_path: Path, reference) -> None:
    big = Image.open(THREE).convert("L").resize((3000, 3000), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.png")
    grey = common.read_grey_image(tmp_path / "big.png")
    assert max(grey.shape) == common.MAX_IMAGE_SIDE
    assert mean_difference(tmp_path / "big.png", reference) < 0.05


def test_decompression_bomb_rejected(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("L", (100, 100), 255).save(tmp_path / "bomb.png")
    with pytest.raises(ValueError, match="more pixels than Pillow opens safely"):
        common.prepare_digit(tmp_path / "bomb.png")


def test_tiny_digit_scaled_up(tmp_path: Path) -> None:
    tiny = np.full((7, 5), 255, dtype=np.uint8)
    tiny[1:6, 2] = 0  # a "1", five pixels high
    Image.fromarray(tiny).save(tmp_path / "tiny.png")
    digit = common.prepare_digit(tmp_path / "tiny.png")[..., 0]
    rows = np.flatnonzero(digit.max(axis=1) > 0.5)
    assert digit.shape == (28, 28)
    assert rows.max() - rows.min() + 1 >= 18  # scaled to the 20-pixel box


def test_single_pixel_has_no_digit(tmp_path: Path) -> None:
    Image.new("L", (1, 1), 0).save(tmp_path / "pixel.png")
    with pytest.raises(ValueError, match="No digit found"):
        common.prepare_digit(tmp_path / "pixel.png")


def test_fully_transparent_has_no_digit(tmp_path: Path) -> None:
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    with pytest.raises(ValueError, match="No digit found"):
        common.prepare_digit(tmp_path / "clear.png")


def test_palette_with_transparency(tmp_path: Path, reference) -> None:
    """Black ink on a transparent palette entry, as drawing programs save."""
    ink = grey_three() < 128
    palette_image = Image.fromarray(np.where(ink, 1, 0).astype(np.uint8), mode="P")
    palette_image.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
    palette_image.info["transparency"] = 0
    palette_image.save(tmp_path / "palette.png", transparency=0)
    assert mean_difference(tmp_path / "palette.png", reference) < 0.05


@pytest.mark.parametrize("mode", ["1", "CMYK", "I", "F"])
def test_more_image_modes(tmp_path: Path, reference, mode: str) -> None:
    grey = grey_three()
    if mode == "I":
        image = Image.fromarray(grey.astype(np.int32) * 1000)
        name = "digit.tif"
    elif mode == "F":
        image = Image.fromarray(grey.astype(np.float32) / 255)
        name = "digit.tif"
    else:
        image = Image.fromarray(grey).convert(mode)
        name = "digit.jpg" if mode == "CMYK" else "digit.png"
    image.save(tmp_path / name)
    assert mean_difference(tmp_path / name, reference) < 0.05


def test_sixteen_bit_narrow_range(tmp_path: Path, reference) -> None:
    """A 16-bit scan that uses only a small part of the range."""
    grey = 1000 + grey_three().astype(np.uint16) * 4
    Image.fromarray(grey).save(tmp_path / "scan16.png")
    assert mean_difference(tmp_path / "scan16.png", reference) < 0.05


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_animated_file_uses_first_frame(tmp_path: Path, reference, suffix) -> None:
    first = Image.open(THREE).convert("L")
    second = Image.new("L", first.size, 255)
    second.paste(0, (10, 10, 20, 60))  # another shape in frame 2
    path = tmp_path / f"animated{suffix}"
    first.save(path, save_all=True, append_images=[second], duration=100)
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 2
    assert mean_difference(path, reference) < 0.05


def test_exif_rotation_applied(tmp_path: Path, reference) -> None:
    """A phone photo stored sideways with an EXIF orientation tag."""
    upright = Image.open(THREE).convert("RGB")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    sideways.save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    assert mean_difference(tmp_path / "sideways.jpg", reference) < 0.05


@pytest.mark.parametrize(
    "content",
    [
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
        b"\xff\xd8",
        b"\x00\x00\x00\x18ftypheic" + b"\0" * 100,
        b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M 10 10 L 20 20"/></svg>',
    ],
    ids=["pdf", "broken-png", "cut-jpeg", "iphone-heic", "svg"],
)
def test_not_an_image_rejected(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "digit.png").write_bytes(content)
    with pytest.raises(ValueError, match="not an image that Pillow can read"):
        common.prepare_digit(tmp_path / "digit.png")


def test_truncated_png_rejected(tmp_path: Path) -> None:
    data = THREE.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an image that Pillow can read"):
        common.prepare_digit(tmp_path / "cut.png")


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No image file"):
        common.prepare_digit(tmp_path)


def test_non_finite_grey_rejected() -> None:
    grey = np.zeros((10, 10))
    grey[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        common.mnist_like(grey)


# --- MNIST files -------------------------------------------------------------------


def test_truncated_idx_gzip_rejected(tmp_path: Path) -> None:
    from conftest import sample_data_dir

    data = (sample_data_dir() / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "labels.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a complete gzip file"):
        common.read_idx(tmp_path / "labels.gz")


def test_idx_of_wrong_length_rejected(tmp_path: Path) -> None:
    header = b"\x00\x00\x08\x01" + (100).to_bytes(4, "big")
    (tmp_path / "labels.gz").write_bytes(gzip.compress(header + b"\x01" * 60))
    with pytest.raises(ValueError, match="announces shape"):
        common.read_idx(tmp_path / "labels.gz")


def test_idx_of_other_type_rejected(tmp_path: Path) -> None:
    header = b"\x00\x00\x0d\x01" + (2).to_bytes(4, "big")  # 0x0d: float32
    (tmp_path / "floats.gz").write_bytes(gzip.compress(header + b"\0" * 8))
    with pytest.raises(ValueError, match="bad magic number"):
        common.read_idx(tmp_path / "floats.gz")


def test_mnist_csv_of_other_layout_rejected(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="expected rows of 784 pixels and a label"):
        common._read_mnist_csv(tmp_path / "other.csv")


# --- model files -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_module():
    common.setup(seed=0)
    import keras

    return keras


def tiny_mnist_model(keras):
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="tiny_mnist",
    )


def test_model_of_right_shape_loads(tmp_path: Path, keras_module) -> None:
    path = tmp_path / "tiny.keras"
    tiny_mnist_model(keras_module).save(path)
    assert common.load_digit_model(path).name == "tiny_mnist"


def test_legacy_h5_model_loads(tmp_path: Path, keras_module) -> None:
    path = tmp_path / "tiny.h5"
    tiny_mnist_model(keras_module).save(path)
    assert common.load_digit_model(path).output_shape == (None, 10)


def test_model_of_other_notebook_rejected(tmp_path: Path, keras_module) -> None:
    keras = keras_module
    other = keras.Sequential(
        [keras.Input(shape=(2,)), keras.layers.Dense(1, activation="sigmoid")],
        name="gaussian_classifier",
    )
    other.save(tmp_path / "gaussian.keras")
    with pytest.raises(ValueError, match="another notebook") as error:
        common.load_digit_model(tmp_path / "gaussian.keras")
    assert "gaussian_classifier" in str(error.value)


def test_model_from_other_keras_named(tmp_path: Path, keras_module) -> None:
    """A file whose config this Keras cannot read reports both versions."""
    path = tmp_path / "tiny.keras"
    tiny_mnist_model(keras_module).save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["class_name"] = "LayerFromTheFuture"
    members["config.json"] = json.dumps(config).encode()
    metadata = json.loads(members["metadata.json"])
    metadata["keras_version"] = "9.0.0"
    members["metadata.json"] = json.dumps(metadata).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="saved by Keras 9.0.0") as error:
        common.load_digit_model(path)
    assert keras_module.__version__ in str(error.value)
    assert "mnist_train.ipynb" in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_damaged_model_file_rejected(tmp_path: Path, keras_module, damage) -> None:
    path = tmp_path / "model.keras"
    tiny_mnist_model(keras_module).save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "text":
        path.write_text("not a model")
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match="could not load"):
        common.load_digit_model(path)


def test_saved_model_folder_rejected(tmp_path: Path, keras_module) -> None:
    folder = tmp_path / "mnist_savedmodel"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="SavedModel"):
        common.load_digit_model(folder)


def test_missing_model_names_notebook(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run mnist_train.ipynb"):
        common.load_digit_model(tmp_path / "mnist_convnet.keras")


# --- HIGGS text and HDF5 files (where common.py has the HIGGS code) ---------------

needs_higgs = pytest.mark.skipif(
    not hasattr(common, "convert_higgs_csv"), reason="no HIGGS code in common.py"
)
ROW = ",".join(["1"] + ["0.5"] * 28)


def higgs_layout():
    return common.HiggsLayout(",", header=False, label_first=True, rows=None)


def read_all(path: Path) -> int:
    return sum(
        len(labels) for _, labels in common.read_higgs_text(path, higgs_layout())
    )


@needs_higgs
def test_higgs_text_complete_file_read(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text((ROW + "\n") * 10)
    assert read_all(tmp_path / "events.csv") == 10


@needs_higgs
@pytest.mark.parametrize(
    "content",
    [
        b"",
        ((ROW + "\n") * 5 + ROW[:30]).encode(),
        b"a;b;c\n1;2;3\n",
        (ROW + "\n").replace(",", "\t").encode(),
    ],
    ids=["empty", "cut-mid-row", "other-table", "tab-separated"],
)
def test_higgs_text_bad_file_rejected(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "events.csv").write_bytes(content)
    with pytest.raises(common.HiggsFormatError, match="events.csv"):
        read_all(tmp_path / "events.csv")


@needs_higgs
def test_higgs_truncated_gzip_rejected(tmp_path: Path) -> None:
    data = gzip.compress(((ROW + "\n") * 2000).encode())
    (tmp_path / "events.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="events.csv.gz"):
        read_all(tmp_path / "events.csv.gz")


@needs_higgs
@pytest.mark.parametrize("damage", ["empty", "truncated", "other-layout"])
def test_damaged_higgs_hdf5_not_trusted(tmp_path: Path, damage: str) -> None:
    import h5py

    path = tmp_path / "higgs.h5"
    (tmp_path / "events.csv").write_text((ROW + "\n") * 20)
    common.convert_higgs_csv(tmp_path / "events.csv", path, higgs_layout(), 5)
    with h5py.File(path, "r") as h5:
        digest = h5.attrs["source_sha256"]
    assert common._check_higgs_hdf5(path, digest) is None
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    else:
        with h5py.File(path, "w") as h5:
            h5["events"] = np.zeros((20, 29))
    assert common._check_higgs_hdf5(path, digest) is not None

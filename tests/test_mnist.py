"""The MNIST notebooks on real data, and the picture preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import common

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(run_notebook) -> dict[str, object]:
    """Run mnist_train once (quick size) and return its reported values."""
    return run_notebook(
        "keras/mnist_train.ipynb", report=["test_accuracy", "difference", "SIZE"]
    )


def test_train_runs_at_quick_size(trained) -> None:
    assert trained["SIZE"] == "quick"


def test_train_test_accuracy(trained) -> None:
    assert trained["test_accuracy"] >= 0.95


def test_json_and_weights_rebuild_model(trained) -> None:
    assert trained["difference"] == 0.0


def test_apply_reads_shipped_digit(trained, run_notebook) -> None:
    applied = run_notebook(
        "keras/mnist_apply.ipynb",
        report=["own_prediction", "TRUE_DIGIT", "reload_difference"],
    )
    assert applied["own_prediction"] == applied["TRUE_DIGIT"] == 3
    assert applied["reload_difference"] == 0.0


def test_saved_model_reloads_in_new_process(trained) -> None:
    import keras

    output = Path(os.environ["WORKSHOP_OUTPUT"])
    model = keras.models.load_model(output / "mnist_convnet.keras")
    examples = np.load(output / "mnist_examples.npz")
    probabilities = model.predict(examples["images"], verbose=0)
    np.testing.assert_allclose(probabilities, examples["probabilities"], atol=1e-6)
    assert (probabilities.argmax(axis=1) == examples["labels"]).mean() >= 0.9


# --- preprocessing of the learner's own picture -------------------------------


def shipped_digit() -> np.ndarray:
    return common.prepare_digit(REPO_ROOT / "keras" / "images" / "three.png")


def test_prepared_digit_is_mnist_like() -> None:
    digit = shipped_digit()
    assert digit.shape == (28, 28, 1)
    assert digit.dtype == np.float32
    assert digit.min() == 0.0
    assert digit.max() == pytest.approx(1.0, abs=0.05)
    rows, columns = np.nonzero(digit[..., 0])
    assert rows.max() - rows.min() + 1 <= 22  # fits the 20x20 box (with rounding)
    assert columns.max() - columns.min() + 1 <= 22


def test_prepared_digit_is_centred_by_mass() -> None:
    from scipy import ndimage

    row, column = ndimage.center_of_mass(shipped_digit()[..., 0])
    assert abs(row - 13.5) <= 1.0
    assert abs(column - 13.5) <= 1.0


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "LA"])
def test_image_modes_give_same_digit(tmp_path: Path, mode: str) -> None:
    source = Image.open(REPO_ROOT / "keras" / "images" / "three.png")
    if mode == "I;16":
        grey = np.asarray(source.convert("L"), dtype=np.uint16) * 257
        converted = Image.fromarray(grey)
    elif mode == "P":
        converted = source.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    else:
        converted = source.convert(mode)
    path = tmp_path / f"digit_{mode.replace(';', '')}.png"
    converted.save(path)
    difference = np.abs(common.prepare_digit(path) - shipped_digit()).mean()
    assert difference < 0.05


def test_light_on_dark_matches_dark_on_light(tmp_path: Path) -> None:
    source = Image.open(REPO_ROOT / "keras" / "images" / "three.png").convert("L")
    inverted = Image.fromarray(255 - np.asarray(source))
    inverted.save(tmp_path / "inverted.png")
    difference = np.abs(
        common.prepare_digit(tmp_path / "inverted.png") - shipped_digit()
    )
    assert difference.mean() < 0.05


def test_transparent_background_counts_as_paper(tmp_path: Path) -> None:
    alpha = np.zeros((60, 50), dtype=np.uint8)
    alpha[10:50, 22:28] = 255  # an opaque black bar, a "1", on transparency
    rgba = np.zeros((60, 50, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    Image.fromarray(rgba, "RGBA").save(tmp_path / "one.png")
    digit = common.prepare_digit(tmp_path / "one.png")[..., 0]
    assert digit[4:24, 12:16].mean() > 0.5  # the bar, light on black
    assert digit[:, :8].max() == 0.0


def test_empty_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        common.prepare_digit(tmp_path / "empty.png")


def test_non_image_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image"):
        common.prepare_digit(tmp_path / "notes.png")


def test_blank_picture_rejected(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40), "white").save(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="No digit found"):
        common.prepare_digit(tmp_path / "blank.png")


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        common.prepare_digit(tmp_path / "nothing.png")

"""Property-based tests (Hypothesis) of picture preprocessing and HIGGS conversion.

Hypothesis draws many inputs per test and shrinks any failure to a small
example. The example counts are kept low so the file runs in seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import common

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- picture preprocessing --------------------------------------------------------


@FAST
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 48), st.integers(1, 48)),
        elements=st.floats(0, 1, width=32),
    )
)
def test_any_grey_image_gives_input_or_clear_error(grey: np.ndarray) -> None:
    try:
        centred = common.mnist_like(grey)["centred"]
    except ValueError as error:
        assert "No digit found" in str(error)
        return
    assert centred.shape == (28, 28)
    assert centred.dtype == np.float32
    assert np.isfinite(centred).all()
    assert centred.min() >= 0.0
    assert centred.max() <= 1.0


@st.composite
def digit_pictures(draw) -> np.ndarray:
    """A picture of strokes (rectangles) in one ink level on a uniform paper.

    Strokes stay 3 pixels away from the edges, so the border is paper, and
    are at least 3 pixels thick, so the 3x3 median filter keeps them.
    """
    height = draw(st.integers(12, 48))
    width = draw(st.integers(12, 48))
    paper = draw(st.floats(0, 1).filter(lambda value: abs(value - 0.5) > 0.1))
    contrast = draw(st.floats(0.3, 1))
    ink = paper - contrast if paper > 0.5 else paper + contrast
    ink = min(max(ink, 0.0), 1.0)
    picture = np.full((height, width), paper, dtype=np.float32)
    for _ in range(draw(st.integers(1, 3))):
        top = draw(st.integers(3, height - 6))
        left = draw(st.integers(3, width - 6))
        bottom = draw(st.integers(top + 3, height - 3))
        right = draw(st.integers(left + 3, width - 3))
        picture[top:bottom, left:right] = ink
    if abs(ink - paper) < 0.3:
        picture[3:6, 3:6] = 0.0 if paper > 0.5 else 1.0
    return picture


@FAST
@given(digit_pictures())
def test_digit_picture_gives_ink(picture: np.ndarray) -> None:
    centred = common.mnist_like(picture)["centred"]
    assert centred.max() > 0.5


@FAST
@given(digit_pictures(), st.integers(1, 30), st.integers(1, 30))
def test_paper_margin_changes_nothing(picture: np.ndarray, rows, columns) -> None:
    """Extra paper around the digit is cropped away: the same input results."""
    paper = float(picture[0, 0])
    padded = np.pad(picture, ((rows, 0), (0, columns)), constant_values=paper)
    np.testing.assert_allclose(
        common.mnist_like(padded)["centred"],
        common.mnist_like(picture)["centred"],
        atol=1e-6,
    )


@FAST
@given(digit_pictures())
def test_dark_and_light_ink_agree(picture: np.ndarray) -> None:
    """Dark ink on light paper gives the same input as light ink on dark."""
    np.testing.assert_array_equal(
        common.mnist_like(picture)["centred"],
        common.mnist_like(1.0 - picture)["centred"],
    )


@FAST
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        elements=st.integers(0, 255),
    ),
    st.sampled_from(["L", "RGB", "LA"]),
)
def test_png_round_trip_reads_grey_values(pixels: np.ndarray, mode: str) -> None:
    image = Image.fromarray(pixels).convert(mode)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "picture.png"
        image.save(path)
        grey = common.read_grey_image(path)
    np.testing.assert_allclose(grey, pixels / 255.0, atol=1e-6)


# --- HIGGS text to HDF5 ----------------------------------------------------------

needs_higgs = pytest.mark.skipif(
    not hasattr(common, "convert_higgs_csv"), reason="no HIGGS code in common.py"
)


@st.composite
def higgs_tables(draw) -> tuple[np.ndarray, np.ndarray, int]:
    """Events (features as printed text, labels) and a test-set size."""
    rows = draw(st.integers(2, 80))
    features = draw(
        arrays(
            np.float64,
            (rows, 28),
            elements=st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False),
        )
    )
    labels = draw(arrays(np.int8, rows, elements=st.integers(0, 1)))
    test_events = draw(st.integers(1, rows - 1))
    return features, labels, test_events


@needs_higgs
@FAST
@given(
    higgs_tables(),
    st.sampled_from([",", "\t"]),
    st.booleans(),
    st.booleans(),
    st.integers(64, 4096),
    st.booleans(),
)
def test_conversion_keeps_every_event(
    table, delimiter: str, header: bool, label_first: bool, chunk_bytes: int, gz: bool
) -> None:
    import gzip

    import h5py

    features, labels, test_events = table
    text_rows = []
    for row, label in zip(features, labels, strict=True):
        fields = [f"{value:.7g}" for value in row]
        fields = [str(label), *fields] if label_first else [*fields, str(label)]
        text_rows.append(delimiter.join(fields))
    if header:
        names = list(common.HIGGS_FEATURES)
        names = ["label", *names] if label_first else [*names, "label"]
        text_rows.insert(0, delimiter.join(names))
    text = ("\n".join(text_rows) + "\n").encode()
    expected = np.array(
        [[np.float32(f"{value:.7g}") for value in row] for row in features],
        dtype=np.float32,
    )
    layout = common.HiggsLayout(delimiter, header, label_first, len(labels))
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / ("events.csv.gz" if gz else "events.csv")
        source.write_bytes(gzip.compress(text) if gz else text)
        target = Path(folder) / "events.h5"
        common.convert_higgs_csv(source, target, layout, test_events, chunk_bytes)
        with h5py.File(target, "r") as h5:
            x_train, y_train = h5["train/features"][:], h5["train/labels"][:]
            x_test, y_test = h5["test/features"][:], h5["test/labels"][:]
            complete = h5.attrs["complete"]
        assert not Path(str(target) + ".part").exists()
    split = len(labels) - test_events
    assert complete == 1
    np.testing.assert_array_equal(x_train, expected[:split])
    np.testing.assert_array_equal(x_test, expected[split:])
    np.testing.assert_array_equal(y_train, labels[:split])
    np.testing.assert_array_equal(y_test, labels[split:])

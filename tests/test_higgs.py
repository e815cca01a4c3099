"""Tests of the HIGGS conversion, its error checks and the two HIGGS notebooks.

The conversion tests build small files in the full dataset's format (comma,
no header, label first) and feed them through the real ``higgs_hdf5`` path:
hand-placed ``HIGGS.csv.gz``, hand-placed ``higgs.zip``, corrupt caches. The
notebook tests run both notebooks in quick mode on the real HIGGS samples.
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO_ROOT, sample_data_dir

import common

MIN_AUC = 0.65


# --------------------------------------------------------------------------
# Helpers: generated files in the full HIGGS format
# --------------------------------------------------------------------------


def make_events(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw float32 features and 0/1 labels shaped like HIGGS events."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows).astype(np.float32)
    features = rng.normal(size=(rows, 28)).astype(np.float32)
    features[:, 0] += labels  # some separation, as in lepton pT
    return features, labels


def format_rows(features: np.ndarray, labels: np.ndarray, delimiter: str = ",") -> str:
    """Write events as text lines, label first, as HIGGS.csv.gz does."""
    table = np.column_stack([labels, features]).astype(np.float64)
    return "".join(
        delimiter.join(f"{value:.18e}" for value in row) + "\n" for row in table
    )


def write_gzip(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


@pytest.fixture
def full_format_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Path], None]:
    """Point the cache at ``tmp_path`` and register a generated HIGGS file.

    The returned function rewrites the dataset table so that the ``higgs``
    row has the size and sha256 of the given file, as the real row has for
    the real file. The test set shrinks to 1,000 events and the row count
    check is lifted, because the generated files are small.
    """
    data = tmp_path / "data"
    monkeypatch.setenv("WORKSHOP_DATA", str(data))
    monkeypatch.setenv("WORKSHOP_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setattr(common, "HIGGS_TEST_EVENTS", 1000)
    layout = common.HIGGS_LAYOUTS["higgs"]
    monkeypatch.setitem(
        common.HIGGS_LAYOUTS,
        "higgs",
        common.HiggsLayout(
            layout.delimiter, layout.header, layout.label_first, rows=None
        ),
    )

    def register(path: Path) -> None:
        table = tmp_path / "datasets.csv"
        with open(common.DATASETS_TABLE, newline="") as source:
            rows = list(csv.DictReader(source))
        for row in rows:
            if row["name"] == "higgs":
                row["size"] = str(path.stat().st_size)
                row["sha256"] = common.sha256sum(path)
                # Unreachable public URLs: only the hand-placed files may be used.
                row["urls"] = (
                    "http://127.0.0.1:9/higgs.zip#HIGGS.csv.gz "
                    "http://127.0.0.1:9/HIGGS.csv.gz"
                )
        with open(table, "w", newline="") as sink:
            writer = csv.DictWriter(sink, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        monkeypatch.setattr(common, "DATASETS_TABLE", table)

    return register


def read_group(path: Path, group: str) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as h5:
        return h5[f"{group}/features"][:], h5[f"{group}/labels"][:]


# --------------------------------------------------------------------------
# Full-format conversion
# --------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["cache", "mirror"])
def test_hand_placed_gzip_converts_exactly(
    full_format_cache, tmp_path: Path, folder: str
) -> None:
    features, labels = make_events(3000)
    root = common.data_dir() if folder == "cache" else tmp_path / "mirror"
    placed = write_gzip(root / "higgs" / "HIGGS.csv.gz", format_rows(features, labels))
    full_format_cache(placed)

    path = common.higgs_hdf5("full")

    source = common.data_dir() / "higgs" / "HIGGS.csv.gz"
    assert source.read_bytes() == placed.read_bytes()

    x_train, y_train = read_group(path, "train")
    x_test, y_test = read_group(path, "test")
    assert x_train.shape == (2000, 28)
    assert x_test.shape == (1000, 28)
    assert x_train.dtype == np.float32
    assert y_train.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([x_train, x_test]), features)
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), labels)
    with h5py.File(path, "r") as h5:
        assert list(h5.attrs["feature_names"]) == list(common.HIGGS_FEATURES)
        assert h5.attrs["source"] == "HIGGS.csv.gz"
        assert h5.attrs["source_sha256"] == common.sha256sum(source)
        assert h5["train/features"].chunks[1] == 28
        assert h5["test/labels"].chunks is not None
    assert not path.with_name(path.name + ".part").exists()


@pytest.mark.parametrize("folder", ["cache", "mirror"])
def test_hand_placed_zip_converts(
    full_format_cache, tmp_path: Path, folder: str
) -> None:
    features, labels = make_events(2500, seed=1)
    inner = write_gzip(
        tmp_path / "staging" / "HIGGS.csv.gz", format_rows(features, labels)
    )
    root = common.data_dir() if folder == "cache" else tmp_path / "mirror"
    archive = root / "higgs" / "higgs.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(inner, "HIGGS.csv.gz")
    full_format_cache(inner)

    path = common.higgs_hdf5("full")

    x_test, y_test = read_group(path, "test")
    np.testing.assert_array_equal(x_test, features[-1000:])
    np.testing.assert_array_equal(y_test, labels[-1000:])
    assert read_group(path, "train")[0].shape == (1500, 28)


def test_load_higgs_feature_sets(full_format_cache) -> None:
    features, labels = make_events(1500, seed=2)
    source = write_gzip(
        common.data_dir() / "higgs" / "HIGGS.csv.gz", format_rows(features, labels)
    )
    full_format_cache(source)

    (x_all, y_all), (x_test, _) = common.load_higgs("workshop", train_events=100)
    (x_low, _), _ = common.load_higgs("workshop", "low", train_events=100)
    (x_high, _), _ = common.load_higgs("workshop", "high", train_events=100)

    assert x_all.shape == (100, 28)
    assert x_low.shape == (100, 21)
    assert x_high.shape == (100, 7)
    assert x_test.shape == (1000, 28)
    np.testing.assert_array_equal(x_low, features[:100, :21])
    np.testing.assert_array_equal(x_high, features[:100, 21:])
    np.testing.assert_array_equal(y_all, labels[:100])
    with pytest.raises(ValueError, match="feature set"):
        common.load_higgs("workshop", "jets")


def test_conversion_spans_many_chunks(tmp_path: Path) -> None:
    features, labels = make_events(5000, seed=3)
    source = write_gzip(tmp_path / "HIGGS.csv.gz", format_rows(features, labels))
    layout = common.HiggsLayout(",", header=False, label_first=True, rows=5000)

    path = common.convert_higgs_csv(
        source, tmp_path / "out.h5", layout, test_events=1234, chunk_bytes=10_000
    )

    x_train, y_train = read_group(path, "train")
    x_test, y_test = read_group(path, "test")
    assert len(y_train) == 5000 - 1234
    assert len(y_test) == 1234
    np.testing.assert_array_equal(np.concatenate([x_train, x_test]), features)
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), labels)


@pytest.mark.parametrize(
    "damage", ["truncated", "not hdf5", "incomplete", "other source"]
)
def test_invalid_cached_hdf5_is_rebuilt(full_format_cache, damage: str) -> None:
    features, labels = make_events(1200, seed=4)
    source = write_gzip(
        common.data_dir() / "higgs" / "HIGGS.csv.gz", format_rows(features, labels)
    )
    full_format_cache(source)
    path = common.higgs_hdf5("full")
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not hdf5":
        path.write_bytes(b"not an HDF5 file")
    else:
        with h5py.File(path, "a") as h5:
            if damage == "incomplete":
                del h5.attrs["complete"]
            else:
                h5.attrs["source_sha256"] = "0" * 64

    rebuilt = common.higgs_hdf5("full")

    x_train, y_train = read_group(rebuilt, "train")
    np.testing.assert_array_equal(x_train, features[:200])
    np.testing.assert_array_equal(y_train, labels[:200])


# --------------------------------------------------------------------------
# Wrong layouts
# --------------------------------------------------------------------------


def _wrong_layout_text(case: str) -> str:
    features, labels = make_events(20, seed=5)
    good = format_rows(features, labels)
    if case == "header":
        return "label," + ",".join(common.HIGGS_FEATURES) + "\n" + good
    if case == "tab separated":
        return format_rows(features, labels, delimiter="\t")
    if case == "semicolon separated":
        return format_rows(features, labels, delimiter=";")
    if case == "28 columns":
        return format_rows(features[:, :27], labels)
    if case == "label last":
        return format_rows(np.column_stack([features[:, 1:], labels]), features[:, 0])
    if case == "short row later":
        lines = good.splitlines(keepends=True)
        lines[12] = lines[12].rsplit(",", 1)[0] + "\n"
        return "".join(lines)
    raise ValueError(case)


@pytest.mark.parametrize(
    ("case", "found"),
    [
        ("header", "header"),
        ("tab separated", "tab"),
        ("semicolon separated", "semicolon"),
        ("28 columns", "28 field"),
        ("label last", "not 0 or 1"),
        ("short row later", "invalid row"),
    ],
)
def test_wrong_layout_is_rejected(tmp_path: Path, case: str, found: str) -> None:
    source = write_gzip(tmp_path / "HIGGS.csv.gz", _wrong_layout_text(case))

    with pytest.raises(common.HiggsFormatError) as error:
        common.convert_higgs_csv(
            source, tmp_path / "out.h5", common.HIGGS_LAYOUTS["higgs"], test_events=5
        )

    message = str(error.value)
    assert str(source) in message
    assert found in message
    assert "expected comma-separated, no header, 29 columns" in message
    assert not (tmp_path / "out.h5").exists()
    assert not (tmp_path / "out.h5.part").exists()


@pytest.mark.parametrize(
    ("sample", "layout_of"),
    [
        ("binary.train", "higgs"),
        ("higgs.csv", "higgs"),
        ("higgs.csv", "higgs-sample-train"),
        ("binary.test", "higgs-sample-csv"),
    ],
)
def test_sample_in_other_layout_is_rejected(
    tmp_path: Path, sample: str, layout_of: str
) -> None:
    source = sample_data_dir() / "higgs" / sample

    with pytest.raises(common.HiggsFormatError, match=sample):
        common.convert_higgs_csv(
            source, tmp_path / "out.h5", common.HIGGS_LAYOUTS[layout_of], test_events=5
        )


def test_row_count_is_checked(tmp_path: Path) -> None:
    features, labels = make_events(50, seed=6)
    source = write_gzip(tmp_path / "HIGGS.csv.gz", format_rows(features, labels))

    with pytest.raises(common.HiggsFormatError, match="contains 50 events"):
        common.convert_higgs_csv(
            source, tmp_path / "out.h5", common.HIGGS_LAYOUTS["higgs"], test_events=5
        )


# --------------------------------------------------------------------------
# Quick-size file from the real samples
# --------------------------------------------------------------------------


def _read_sample(name: str, delimiter: str, skip_header: bool) -> np.ndarray:
    """Read a sample file with plain numpy, independently of common.py."""
    return np.loadtxt(
        sample_data_dir() / "higgs" / name,
        delimiter=delimiter,
        skiprows=int(skip_header),
        dtype=np.float32,
    )


@pytest.fixture(scope="module")
def quick_hdf5(workshop_env: dict[str, str]) -> Path:
    return common.higgs_hdf5("quick")


def test_quick_hdf5_holds_sample_rows(quick_hdf5: Path) -> None:
    binary = np.concatenate(
        [
            _read_sample("binary.train", "\t", False),
            _read_sample("binary.test", "\t", False),
        ]
    )
    csv_rows = _read_sample("higgs.csv", ",", True)
    x_train, y_train = read_group(quick_hdf5, "train")
    x_test, y_test = read_group(quick_hdf5, "test")

    assert x_train.shape[1] == 28
    assert x_test.shape[1] == 28
    # The test set is higgs.csv (label last) without its one repeated row.
    assert len(y_test) == len(np.unique(csv_rows, axis=0)) == len(csv_rows) - 1
    test_rows = np.column_stack([x_test, y_test])
    assert len(np.unique(test_rows, axis=0)) == len(test_rows)
    csv_keys = {row.tobytes() for row in csv_rows}
    assert all(row.tobytes() in csv_keys for row in test_rows)
    # The training set is binary.train + binary.test (label first), in order,
    # less the few events that also occur in the test sample.
    train_rows = np.column_stack([y_train, x_train])
    dropped = len(binary) - len(train_rows)
    assert 0 <= dropped <= 20
    train_keys = {row.tobytes() for row in train_rows}
    kept = np.array([row.tobytes() in train_keys for row in binary])
    np.testing.assert_array_equal(binary[kept], train_rows)


def test_quick_train_and_test_disjoint(quick_hdf5: Path) -> None:
    x_train, y_train = read_group(quick_hdf5, "train")
    x_test, y_test = read_group(quick_hdf5, "test")
    # The training files are printed at 3 decimals; compare at that precision.
    train_keys = {
        tuple(row)
        for row in np.rint(np.column_stack([x_train, y_train]) * 1000).astype(int)
    }
    test_keys = {
        tuple(row)
        for row in np.rint(np.column_stack([x_test, y_test]) * 1000).astype(int)
    }
    assert len(train_keys & test_keys) == 0


# --------------------------------------------------------------------------
# Notebooks in quick mode
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def higgs_notebooks(run_notebook, workshop_env: dict[str, str]) -> dict[str, object]:
    """Run HIGGS_train then HIGGS_test in quick mode; return the test's values."""
    trained = run_notebook("keras/HIGGS_train.ipynb", report=["summary"])
    tested = run_notebook("keras/HIGGS_test.ipynb", report=["auc_table", "scores_path"])
    return {**trained, **tested}


def test_notebooks_reach_min_auc(higgs_notebooks: dict[str, object]) -> None:
    auc_table = higgs_notebooks["auc_table"]
    for name in ("higgs_bdt", "higgs_shallow", "higgs_deep"):
        assert auc_table[name] > MIN_AUC, f"{name}: AUC {auc_table[name]:.3f}"


def test_notebook_auc_matches_scores(
    higgs_notebooks: dict[str, object], quick_hdf5: Path
) -> None:
    from sklearn.metrics import roc_auc_score

    _, y_test = read_group(quick_hdf5, "test")
    with np.load(higgs_notebooks["scores_path"]) as saved:
        np.testing.assert_array_equal(saved["labels"], y_test)
        for name, auc in higgs_notebooks["auc_table"].items():
            expected = roc_auc_score(y_test, saved[name])
            assert auc == pytest.approx(expected, abs=1e-9), name


def test_models_reload_with_identical_scores(
    higgs_notebooks: dict[str, object],
    workshop_env: dict[str, str],
    quick_hdf5: Path,
    tmp_path: Path,
) -> None:
    models = higgs_notebooks["summary"]["models"]
    assert set(models) == {
        "higgs_shallow",
        "higgs_deep",
        "higgs_shallow_low",
        "higgs_deep_low",
    }
    result = tmp_path / "scores.json"
    script = f"""
import json, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
import common
import keras
models = {json.dumps(models)}
scores = {{}}
for name, record in models.items():
    model = keras.models.load_model(common.output_dir() / record["path"])
    _, (x, _) = common.load_higgs("quick", record["features"])
    scores[name] = model.predict(x, batch_size=4096, verbose=0).ravel().tolist()
open({str(result)!r}, "w").write(json.dumps(scores))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)

    reloaded = json.loads(result.read_text())
    with np.load(higgs_notebooks["scores_path"]) as saved:
        for name in models:
            np.testing.assert_array_equal(
                np.asarray(reloaded[name], dtype=np.float32), saved[name], err_msg=name
            )


def test_notebooks_save_models_and_roc(
    higgs_notebooks: dict[str, object], workshop_env: dict[str, str]
) -> None:
    output = Path(workshop_env["WORKSHOP_OUTPUT"])
    for name in ("higgs_shallow", "higgs_deep"):
        assert (output / f"{name}.keras").is_file()
    assert (output / "figures" / "higgs_roc.png").is_file()
    assert (output / "figures" / "higgs_scores.png").is_file()

"""The streaming notebook, keras/fit_generator.ipynb, at the quick size.

The notebook runs once per Keras backend (TensorFlow, JAX, PyTorch), in a
fresh kernel started with ``KERAS_BACKEND`` set. The tf.data and
tf.distribute parts only run on TensorFlow; their tests skip elsewhere.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import nbformat
import pytest
import run_notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent

NOTEBOOK = "keras/fit_generator.ipynb"
REPORTED = [
    "SIZE",
    "BATCH",
    "train_events",
    "steps_per_epoch",
    "hdf5_weight_difference",
    "root_weight_difference",
    "auc_in_memory",
    "auc_noise",
    "auc_hdf5",
    "auc_tf_data",
    "auc_root",
    "stream_peak_mb",
    "memory_peak_mb",
    "data_mb",
    "mirrored_replicas",
    "mirrored_loss",
    "BACKEND",
    "TENSORFLOW",
]


# Keras backend name -> the package it imports.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.fixture(scope="module", params=list(BACKEND_PACKAGES))
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the Keras backend under test; fails if it is not installed."""
    package = BACKEND_PACKAGES[request.param]
    if importlib.util.find_spec(package) is None:
        pytest.fail(
            f"The Keras backend {request.param!r} needs the {package!r} package: "
            "install the backends with ./init_virtualenv.sh --backends."
        )
    return request.param


@pytest.fixture(scope="module")
def report(backend: str, workshop_env: dict[str, str]) -> dict[str, object]:
    """Run the notebook on one backend; keep the executed copy per backend."""
    source = REPO_ROOT / NOTEBOOK
    output = REPO_ROOT / "build" / "tests" / backend / NOTEBOOK
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_BACKEND", backend)
        return run_notebooks.execute_and_report(source, REPORTED, output)


def test_notebook_runs_quick(report, backend):
    assert report["SIZE"] == "quick"
    assert report["BACKEND"] == backend
    assert report["TENSORFLOW"] == (backend == "tensorflow")
    assert report["steps_per_epoch"] == math.ceil(
        report["train_events"] / report["BATCH"]
    )


def test_hdf5_stream_matches_memory(report):
    # Same events, same order, same initial weights: float32 rounding at most.
    assert report["hdf5_weight_difference"] <= 1e-6


def test_root_stream_matches_memory(report):
    assert report["root_weight_difference"] <= 1e-6


@pytest.mark.parametrize("name", ["auc_hdf5", "auc_tf_data", "auc_root"])
def test_shuffled_stream_auc_within_noise(report, name):
    if report[name] is None:
        pytest.skip(f"{name} needs the TensorFlow backend")
    assert abs(report[name] - report["auc_in_memory"]) < 3 * report["auc_noise"]


def test_models_learn(report):
    # Small networks reach AUC 0.68-0.76 on the HIGGS samples; a few epochs
    # on a few thousand events get clearly above chance.
    assert report["auc_in_memory"] > 0.6
    assert report["auc_hdf5"] > 0.6


def test_streaming_memory_bounded(report):
    # Reading batch by batch needs one batch and h5py's chunk cache (1 MiB).
    assert report["stream_peak_mb"] < 16
    assert report["memory_peak_mb"] >= 0


def test_mirrored_strategy_uses_two_devices(report):
    if not report["TENSORFLOW"]:
        pytest.skip("MirroredStrategy needs the TensorFlow backend")
    assert report["mirrored_replicas"] == 2
    assert math.isfinite(report["mirrored_loss"])


def test_memory_figure_saved(report, workshop_env):
    figure = Path(workshop_env["WORKSHOP_OUTPUT"]) / "figures" / "stream_memory.png"
    assert figure.is_file()


def test_notebook_committed_clean():
    notebook = nbformat.read(REPO_ROOT / NOTEBOOK, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "tf-keras-workshop"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None

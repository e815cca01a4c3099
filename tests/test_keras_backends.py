"""Every Keras notebook, at the quick size, on each Keras backend.

Keras reads ``KERAS_BACKEND`` when it is first imported, so each notebook runs
in a fresh kernel started with that variable set. The same outcomes are
asserted on TensorFlow, JAX and PyTorch. A backend whose package is missing
fails its tests: install the backends with ``./init_virtualenv.sh --backends``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import run_notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent

# Keras backend name -> the package it imports.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

GAUSSIAN_REPORT = [
    "SIZE",
    "backend_name",
    "dense_params",
    "functional_params",
    "test_accuracy_sequential",
    "test_accuracy_functional",
]
CUSTOM_REPORT = [
    "SIZE",
    "backend_name",
    "loss_keras",
    "loss_numpy",
    "efficiency_keras",
    "efficiency_numpy",
    "recall_keras",
    "MAX_EPOCHS",
    "epochs_run",
    "epochs_counted",
    "batches_counted",
    "expected_batches",
    "learning_rates",
    "csv_row_count",
    "tensorboard_files",
    "test_results",
    "reload_max_difference",
    "test_signal_efficiency",
    "reloaded_signal_efficiency",
]


@pytest.fixture(scope="module", params=list(BACKEND_PACKAGES))
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the Keras backend under test; fails if it is not installed."""
    name = request.param
    package = BACKEND_PACKAGES[name]
    if importlib.util.find_spec(package) is None:
        pytest.fail(
            f"The Keras backend {name!r} needs the {package!r} package, which is "
            f"not installed in {sys.prefix}. Install the backends with "
            "./init_virtualenv.sh --backends "
            "(or pip install -r requirements-backends.txt)."
        )
    return name


def run_on_backend(
    notebook: str, backend: str, report: list[str]
) -> tuple[dict[str, object], Path]:
    """Execute a notebook with ``KERAS_BACKEND`` set; return its report and copy.

    The executed copy goes to ``build/tests/<backend>/``, so a failure on one
    backend is not overwritten by the run on the next.
    """
    source = REPO_ROOT / notebook
    output = REPO_ROOT / "build" / "tests" / backend / notebook
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_BACKEND", backend)
        values = run_notebooks.execute_and_report(source, report, output)
    return values, output


def printed_backend(executed: Path) -> str | None:
    """Return the backend that ``common.setup`` printed in an executed notebook."""
    notebook = nbformat.read(executed, as_version=4)
    for cell in notebook.cells:
        for item in cell.get("outputs", []):
            match = re.search(r"\(backend: (\w+)\)", item.get("text", ""))
            if match:
                return match.group(1)
    return None


# --- keras/gaussian.ipynb -------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian(backend: str, workshop_env: dict[str, str]) -> dict[str, object]:
    values, _ = run_on_backend("keras/gaussian.ipynb", backend, GAUSSIAN_REPORT)
    return values


def test_gaussian_runs_on_backend(gaussian, backend) -> None:
    assert gaussian["backend_name"] == backend
    assert gaussian["SIZE"] == "quick"


def test_gaussian_parameter_counts(gaussian) -> None:
    assert gaussian["dense_params"] == [300, 101]
    # Input layer, Normalization (mean, variance, count), then the Dense layers.
    assert gaussian["functional_params"] == [0, 5, 300, 101]


def test_gaussian_sequential_accuracy(gaussian) -> None:
    assert gaussian["test_accuracy_sequential"] >= 0.9


def test_gaussian_functional_accuracy(gaussian) -> None:
    assert gaussian["test_accuracy_functional"] >= 0.9


# --- keras/custom_loss_metric_callback.ipynb -------------------------------------


@pytest.fixture(scope="module")
def custom(backend: str, workshop_env: dict[str, str]) -> dict[str, object]:
    values, _ = run_on_backend(
        "keras/custom_loss_metric_callback.ipynb", backend, CUSTOM_REPORT
    )
    return values


def test_custom_runs_on_backend(custom, backend) -> None:
    assert custom["backend_name"] == backend
    assert custom["SIZE"] == "quick"


def test_custom_loss_matches_numpy(custom) -> None:
    assert custom["loss_keras"] == pytest.approx(custom["loss_numpy"], rel=1e-6)


def test_custom_metric_matches_numpy(custom) -> None:
    assert custom["efficiency_numpy"] == pytest.approx(2 / 3)
    assert custom["efficiency_keras"] == pytest.approx(custom["efficiency_numpy"])
    assert custom["recall_keras"] == pytest.approx(custom["efficiency_keras"])


def test_custom_callback_counts(custom) -> None:
    assert 1 <= custom["epochs_run"] <= custom["MAX_EPOCHS"]
    assert custom["epochs_counted"] == custom["epochs_run"]
    assert custom["batches_counted"] == custom["expected_batches"]


def test_lambda_callback_records_rates(custom) -> None:
    rates = custom["learning_rates"]
    assert len(rates) == custom["epochs_run"]
    assert rates[0] == pytest.approx(3e-3)
    assert all(b <= a for a, b in zip(rates[:-1], rates[1:], strict=True))


def test_csv_logger_row_per_epoch(custom) -> None:
    assert custom["csv_row_count"] == custom["epochs_run"]


def test_tensorboard_writes_both_logs(custom) -> None:
    folders = {Path(name).parts[0] for name in custom["tensorboard_files"]}
    assert folders == {"train", "validation"}


def test_checkpoint_file_written(custom) -> None:
    output = Path(os.environ["WORKSHOP_OUTPUT"])
    assert (output / "keras_custom_best.keras").is_file()


def test_custom_metric_equals_recall(custom) -> None:
    results = custom["test_results"]
    assert results["signal_efficiency"] == pytest.approx(results["recall"], abs=1e-6)
    assert custom["test_signal_efficiency"] >= 0.75


def test_custom_model_reloads_identically(custom) -> None:
    assert custom["reload_max_difference"] == 0.0
    assert custom["reloaded_signal_efficiency"] == pytest.approx(
        custom["test_signal_efficiency"], abs=1e-6
    )


# --- keras/mnist_train.ipynb, then keras/mnist_apply.ipynb -------------------------


def skip_tensorflow_run(backend: str, test_file: str) -> None:
    """Skip a notebook run that another test file already makes on TensorFlow.

    The notebook tests there run on the default backend with the same
    assertions, so running it again here would only double the time.
    """
    if backend == "tensorflow":
        pytest.skip(f"run and checked on TensorFlow in {test_file}")


@pytest.fixture(scope="module")
def mnist_train(backend: str, workshop_env: dict[str, str]) -> dict[str, object]:
    skip_tensorflow_run(backend, "tests/test_mnist.py")
    values, executed = run_on_backend(
        "keras/mnist_train.ipynb", backend, ["SIZE", "test_accuracy", "difference"]
    )
    return {**values, "printed_backend": printed_backend(executed)}


@pytest.fixture(scope="module")
def mnist_apply(
    backend: str, mnist_train: dict[str, object], workshop_env: dict[str, str]
) -> dict[str, object]:
    """Run mnist_apply on the model that mnist_train saved on this backend."""
    values, executed = run_on_backend(
        "keras/mnist_apply.ipynb",
        backend,
        ["own_prediction", "TRUE_DIGIT", "reload_difference"],
    )
    return {**values, "printed_backend": printed_backend(executed)}


def test_mnist_train_runs_on_backend(mnist_train, backend) -> None:
    assert mnist_train["printed_backend"] == backend
    assert mnist_train["SIZE"] == "quick"


def test_mnist_train_test_accuracy(mnist_train) -> None:
    assert mnist_train["test_accuracy"] >= 0.95


def test_mnist_train_rebuilt_model_agrees(mnist_train) -> None:
    assert mnist_train["difference"] == 0.0


def test_mnist_apply_runs_on_backend(mnist_apply, backend) -> None:
    assert mnist_apply["printed_backend"] == backend


def test_mnist_apply_reads_shipped_digit(mnist_apply) -> None:
    assert mnist_apply["TRUE_DIGIT"] == 3
    assert mnist_apply["own_prediction"] == mnist_apply["TRUE_DIGIT"]


def test_mnist_apply_reload_agrees(mnist_apply) -> None:
    assert mnist_apply["reload_difference"] == 0.0


# --- keras/HIGGS_train.ipynb, then keras/HIGGS_test.ipynb -------------------------

MIN_AUC = 0.65  # every model on the held-out sample events, as in tests/test_higgs.py


@pytest.fixture(scope="module")
def higgs(backend: str, workshop_env: dict[str, str]) -> dict[str, object]:
    """Train and test the HIGGS networks on this backend; return the AUC table."""
    skip_tensorflow_run(backend, "tests/test_higgs.py")
    _, trained = run_on_backend("keras/HIGGS_train.ipynb", backend, [])
    values, tested = run_on_backend("keras/HIGGS_test.ipynb", backend, ["auc_table"])
    return {
        **values,
        "train_backend": printed_backend(trained),
        "test_backend": printed_backend(tested),
    }


def test_higgs_runs_on_backend(higgs, backend) -> None:
    assert higgs["train_backend"] == backend
    assert higgs["test_backend"] == backend


def test_higgs_models_reach_min_auc(higgs) -> None:
    # The all-feature models, as tests/test_higgs.py checks on TensorFlow; the
    # low-level-only models sit near 0.6 on the small samples.
    auc_table = higgs["auc_table"]
    for name in ("higgs_bdt", "higgs_shallow", "higgs_deep"):
        assert auc_table[name] > MIN_AUC, f"{name}: AUC {auc_table[name]:.3f}"


# --- every notebook in keras/ has its backend tests ---------------------------------

# keras/fit_generator.ipynb runs on every backend in tests/test_streaming.py.
COVERED = {
    "gaussian.ipynb",
    "custom_loss_metric_callback.ipynb",
    "mnist_train.ipynb",
    "mnist_apply.ipynb",
    "HIGGS_train.ipynb",
    "HIGGS_test.ipynb",
    "fit_generator.ipynb",
}


def test_every_keras_notebook_covered() -> None:
    """A new notebook in keras/ must get its tests on all three backends."""
    notebooks = {path.name for path in (REPO_ROOT / "keras").glob("*.ipynb")}
    assert notebooks - COVERED == set()

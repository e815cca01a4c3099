"""Execute the four TensorFlow notebooks in quick mode and check their results.

Each notebook runs once per test module, and the tests read the variables
that the notebook computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# float32 machine epsilon: the notebooks express gradient errors in its units.
EPS32 = float(np.finfo(np.float32).eps)
# Largest tape error accepted, in units of EPS32 times the largest exact value.
# The notebook measured 2 to 7 on its quick and workshop grids (TensorFlow 2.21
# on a CPU), and central differences in float32 reach about 200 at best.
MAX_TAPE_ERROR_IN_EPS = 16.0


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


# ----------------------------------------------------------------------------
# tensorflow/xor.ipynb
# ----------------------------------------------------------------------------

XOR_CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_LABELS = [0, 1, 1, 0]


@pytest.fixture(scope="module")
def xor(run_notebook):
    return run_notebook(
        "tensorflow/xor.ipynb",
        report=[
            "corner_outputs",
            "graph_output",
            "op_types",
            "compat_result",
            "smeared_accuracy",
        ],
    )


def xor_by_hand(corners: np.ndarray) -> np.ndarray:
    """Compute the hand-set XOR network in float64, independently of TensorFlow.

    Both hidden units see x1 + x2, with thresholds 0.5 (OR) and 1.5 (AND).
    The output unit fires for OR but not AND.
    """
    total = corners.sum(axis=1)
    hidden_or = np.tanh(10 * total - 5)
    hidden_and = np.tanh(10 * total - 15)
    return sigmoid(5 * hidden_or - 5 * hidden_and - 5)


def test_xor_corners_match_hand_computation(xor):
    expected = xor_by_hand(XOR_CORNERS)
    np.testing.assert_allclose(xor["corner_outputs"], expected, rtol=1e-5, atol=1e-6)


def test_xor_corners_classified_correctly(xor):
    predicted = [int(output > 0.5) for output in xor["corner_outputs"]]
    assert predicted == XOR_LABELS


def test_xor_graph_matches_eager(xor):
    graph_output = np.ravel(xor["graph_output"])
    np.testing.assert_allclose(graph_output, xor["corner_outputs"], rtol=1e-6)


def test_xor_graph_lists_operations(xor):
    for op_type in ("Placeholder", "ReadVariableOp", "MatMul", "Tanh", "Sigmoid"):
        assert op_type in xor["op_types"], f"{op_type} missing from the traced graph"


def test_xor_compat_session_returns_11(xor):
    assert xor["compat_result"] == 11.0


def test_xor_smeared_events_mostly_correct(xor):
    assert xor["smeared_accuracy"] > 0.95


# ----------------------------------------------------------------------------
# tensorflow/automatic_differentiation.ipynb
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def autodiff(run_notebook):
    return run_notebook(
        "tensorflow/automatic_differentiation.ipynb",
        report=[
            "x0",
            "chain_rule_by_hand",
            "chain_rule_tape",
            "first_error_in_eps",
            "second_error_in_eps",
            "finite_difference_error_in_eps",
            "variable_gradient_errors",
            "gradients_at_zero",
            "integer_gradient",
            "cast_gradient",
            "zero_instead",
        ],
    )


def test_autodiff_chain_rule_matches_analytic(autodiff):
    x0 = autodiff["x0"]
    exact = 2 * x0 * math.cos(x0**2)
    assert autodiff["chain_rule_by_hand"] == pytest.approx(exact, rel=1e-12)
    assert autodiff["chain_rule_tape"] == pytest.approx(exact, rel=4 * EPS32)


def test_autodiff_first_derivative_float32_precise(autodiff):
    assert autodiff["first_error_in_eps"] < MAX_TAPE_ERROR_IN_EPS


def test_autodiff_second_derivative_float32_precise(autodiff):
    assert autodiff["second_error_in_eps"] < MAX_TAPE_ERROR_IN_EPS


def test_autodiff_variable_gradients_float32_precise(autodiff):
    error_w, error_b = autodiff["variable_gradient_errors"]
    assert error_w < MAX_TAPE_ERROR_IN_EPS
    assert error_b < MAX_TAPE_ERROR_IN_EPS


def test_autodiff_tape_beats_finite_differences(autodiff):
    tape_error = autodiff["first_error_in_eps"]
    assert autodiff["finite_difference_error_in_eps"] > 10 * tape_error


def test_autodiff_gradients_at_zero(autodiff):
    gradients = autodiff["gradients_at_zero"]
    assert gradients["abs(x)"] == "0.0"
    assert gradients["relu(x)"] == "0.0"
    assert gradients["sqrt(x)"] == "inf"
    assert gradients["round(x)"] == "None"
    assert gradients["where(x > 0, log(x), 0)"] == "nan"


def test_autodiff_integer_input_has_no_gradient(autodiff):
    assert autodiff["integer_gradient"] is None


def test_autodiff_integer_cast_cuts_gradient(autodiff):
    assert autodiff["cast_gradient"] is None
    assert autodiff["zero_instead"] == 0.0


# ----------------------------------------------------------------------------
# tensorflow/gaussian.ipynb
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian(run_notebook):
    return run_notebook(
        "tensorflow/gaussian.ipynb",
        report=[
            "SEPARATION",
            "test_accuracy",
            "best_possible_accuracy",
            "initial_test_loss",
            "history",
        ],
    )


def test_gaussian_reaches_test_accuracy(gaussian):
    assert gaussian["SEPARATION"] == 3.0
    assert gaussian["test_accuracy"] >= 0.9


def test_gaussian_best_accuracy_formula(gaussian):
    # Phi(1.5), the normal CDF at half the separation of 3 unit widths.
    assert gaussian["best_possible_accuracy"] == pytest.approx(0.933193, abs=1e-6)


def test_gaussian_training_lowers_loss(gaussian):
    final_loss = gaussian["history"]["test_loss"][-1]
    assert final_loss < 0.5 * gaussian["initial_test_loss"]


# ----------------------------------------------------------------------------
# tensorflow/queues.ipynb
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def queues(run_notebook):
    return run_notebook(
        "tensorflow/queues.ipynb",
        report=[
            "N_EVENTS",
            "csv_paths",
            "epoch_event_ids",
            "N_SLOW_BATCHES",
            "SLOW_BATCH_SIZE",
            "slow_event_counts",
            "serial_seconds",
            "parallel_seconds",
            "cache_seconds",
        ],
    )


def test_queues_every_event_once_per_epoch(queues):
    expected = list(range(queues["N_EVENTS"]))
    assert len(queues["epoch_event_ids"]) == 2
    for epoch, event_ids in enumerate(queues["epoch_event_ids"], start=1):
        assert sorted(event_ids) == expected, f"epoch {epoch} lost or repeated events"


def test_queues_epochs_shuffled_differently(queues):
    first, second = queues["epoch_event_ids"]
    assert first != second


def test_queues_slow_pipelines_deliver_same_events(queues):
    expected = queues["N_SLOW_BATCHES"] * queues["SLOW_BATCH_SIZE"]
    for name, count in queues["slow_event_counts"].items():
        assert count == expected, f"pipeline {name!r} delivered {count} events"


def test_queues_prefetching_faster_than_serial(queues):
    # The notebook estimates 0.2 s against 0.8 s. Require only a clear ordering,
    # because other programs on the machine slow both runs by varying amounts.
    assert queues["parallel_seconds"] < 0.8 * queues["serial_seconds"]


def test_queues_cache_skips_slow_loading(queues):
    first_epoch, second_epoch = queues["cache_seconds"]
    assert second_epoch < first_epoch


def test_queues_csv_written_under_output(queues, workshop_env):
    output = Path(workshop_env["WORKSHOP_OUTPUT"]).resolve()
    for path in queues["csv_paths"]:
        assert Path(path).resolve().is_relative_to(output), path
        assert Path(path).is_file(), path
    assert not list((REPO_ROOT / "tensorflow").glob("**/*.csv"))

"""Benchmark: mnist_train at the workshop size against a plain baseline.

Usage: python benchmarks/mnist_train.py [--mirror FOLDER_OR_URL]

Runs keras/mnist_train.ipynb at the workshop size on the full MNIST data
(60,000 training images, tested on the 10,000 official test images). In
the same run it trains a baseline: the same two-layer convnet trained the
plain way (Adam at a constant learning rate 1e-3, batch 128, 7 epochs). Prints
the test accuracy and training time of both and their ratio. Data comes
from ``--mirror``, ``$WORKSHOP_MIRROR`` or ``$WORKSHOP_TEST_DATA``, in that
order, through the workshop's download code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import run_notebooks  # noqa: E402

BASELINE = """
import sys, time
sys.path.insert(0, {repo!r})
import common
common.setup(seed=42)
import keras
from keras import layers
(x_train, y_train), (x_test, y_test) = common.load_mnist("workshop")
model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
    layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
    layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=128, epochs=7, validation_split=0.1, verbose=0)
seconds = time.perf_counter() - start
accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
print(f"RESULT {{accuracy}} {{seconds}}")
"""


def run_baseline() -> tuple[float, float]:
    """Train the baseline in a fresh process; return (accuracy, seconds)."""
    code = BASELINE.format(repo=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    line = next(
        line for line in result.stdout.splitlines() if line.startswith("RESULT")
    )
    _, accuracy, seconds = line.split()
    return float(accuracy), float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", help="folder or URL holding mnist/ files")
    args = parser.parse_args()
    default_mirror = os.environ.get("WORKSHOP_TEST_DATA") or str(
        REPO_ROOT.parent / "shared" / "data"
    )
    mirror = args.mirror or os.environ.get("WORKSHOP_MIRROR") or default_mirror
    os.environ.update(
        WORKSHOP_SIZE="workshop",
        WORKSHOP_MIRROR=mirror,
        WORKSHOP_OUTPUT=tempfile.mkdtemp(prefix="mnist-benchmark-"),
    )
    run_notebooks.use_this_interpreter_as_kernel()
    print(f"MNIST benchmark on {os.cpu_count()} CPU cores, data from {mirror}")
    start = time.perf_counter()
    values = run_notebooks.execute_and_report(
        REPO_ROOT / "keras" / "mnist_train.ipynb",
        ["test_accuracy", "training_seconds", "SETTINGS"],
    )
    notebook_seconds = time.perf_counter() - start
    baseline_accuracy, baseline_seconds = run_baseline()
    accuracy, seconds = values["test_accuracy"], values["training_seconds"]
    print(f"{'run':28} {'test accuracy':>14} {'training s':>11}")
    print(f"{'mnist_train (workshop size)':28} {accuracy:14.4f} {seconds:11.1f}")
    baseline = "baseline (7 epochs, lr 1e-3)"
    print(f"{baseline:28} {baseline_accuracy:14.4f} {baseline_seconds:11.1f}")
    print(
        f"ratio workshop/baseline: time {seconds / baseline_seconds:.2f}, "
        f"errors {(1 - accuracy) / (1 - baseline_accuracy):.2f}"
    )
    print(f"settings {values['SETTINGS']}; whole notebook {notebook_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

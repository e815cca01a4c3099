"""Multi-worker training with scripts/train_distributed.py on 127.0.0.1.

The runs are tiny (a 2-layer network of 32 units on the HIGGS sample) and
share one module-scoped single-process run and one two-worker run, so the
whole file takes about two minutes on two busy cores.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import train_distributed

import common

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "train_distributed.py"
EPOCHS = 4
SMALL_RUN = [
    "--epochs",
    str(EPOCHS),
    "--global-batch-size",
    "64",
    "--chunk-batches",
    "8",
    "--layers",
    "2",
    "--units",
    "32",
]
RUN_TIMEOUT = 180  # seconds for one training run, TensorFlow start included


@pytest.fixture(scope="module")
def higgs_h5(workshop_env: dict[str, str]) -> Path:
    """The quick-size HIGGS file, converted from the real samples."""
    return common.higgs_hdf5("quick")


def start_training(data: Path, folder: Path, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-u", str(SCRIPT), "--data", str(data)]
    command += ["--checkpoint-dir", str(folder), *SMALL_RUN]
    if workers > 1:
        command += ["--local-workers", str(workers)]
    # A session of its own lets kill_run stop the launcher and its workers.
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,
    )


def kill_run(process: subprocess.Popen) -> None:
    """Kill a training run with all its worker processes."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> str:
    """Wait for a run, killing it on timeout; return its output."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_run(process)
        output, _ = process.communicate()
        pytest.fail(f"training timed out after {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def load_run(folder: Path) -> tuple[dict, list[np.ndarray]]:
    result = json.loads((folder / "result.json").read_text())
    with np.load(folder / "weights.npz") as archive:
        weights = [archive[f"w{i}"] for i in range(len(archive.files))]
    return result, weights


@pytest.fixture(scope="module")
def reference_runs(higgs_h5: Path, tmp_path_factory) -> dict[int, Path]:
    """One uninterrupted run each with one worker and with two workers."""
    folders = {n: tmp_path_factory.mktemp(f"workers-{n}") for n in (1, 2)}
    processes = {n: start_training(higgs_h5, folders[n], n) for n in folders}
    for process in processes.values():
        finish(process)
    return folders


def test_two_workers_match_one_process(reference_runs):
    single, single_weights = load_run(reference_runs[1])
    pair, pair_weights = load_run(reference_runs[2])
    assert single["workers"] == 1
    assert pair["workers"] == 2
    assert pair["epochs_trained"] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(pair["loss"], single["loss"], rtol=1e-5)
    for ours, theirs in zip(pair_weights, single_weights, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert abs(pair["test_auc"] - single["test_auc"]) < 1e-4


def test_training_learns(reference_runs):
    result, _ = load_run(reference_runs[2])
    assert result["loss"][-1] < result["loss"][0]
    assert result["test_auc"] > 0.6


class LineReader:
    """Collect a process's output lines in a thread, for waiting on patterns."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self._queue.put(line)

    def drain(self) -> str:
        """Collect the remaining lines and return all output as one string."""
        self._thread.join(timeout=10)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(
            f"no line matched {pattern!r} within {timeout} s:\n"
            + "".join(self.lines[-40:])
        )


def test_killed_worker_resumes_from_checkpoint(higgs_h5, reference_runs, tmp_path):
    process = start_training(higgs_h5, tmp_path, workers=2)
    try:
        reader = LineReader(process)
        pid = int(reader.wait_for(r"started worker 1 \(pid (\d+)", 60).group(1))
        # The chief starts epoch 2 only after its epoch-1 checkpoint is written
        # (worker 1 may run ahead and start before the chief has saved).
        reader.wait_for(rf"\[worker 0\] .*epoch 2/{EPOCHS} started", RUN_TIMEOUT)
        os.kill(pid, signal.SIGKILL)
        reader.wait_for(r"started worker 1 \(pid \d+, attempt 2", 60)
        reader.wait_for(r"all 2 workers finished", RUN_TIMEOUT)
        process.wait(timeout=30)
    finally:
        kill_run(process)
    first_attempt, _, second_attempt = reader.drain().partition("attempt 2")
    assert re.search(rf"epoch 1/{EPOCHS} finished", first_attempt)
    assert not re.search(rf"epoch 2/{EPOCHS} finished", first_attempt), (
        "the worker was killed after epoch 2, not during it"
    )
    assert re.search(r"restored .* \(after epoch 1\)", second_attempt), second_attempt
    assert process.returncode == 0
    resumed, resumed_weights = load_run(tmp_path)
    assert resumed["epochs_trained"] == list(range(2, EPOCHS + 1))
    reference, reference_weights = load_run(reference_runs[2])
    np.testing.assert_allclose(resumed["loss"], reference["loss"][1:], rtol=1e-5)
    for ours, theirs in zip(resumed_weights, reference_weights, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


# --- helpers of the script, without TensorFlow ----------------------------------


def test_epoch_chunks_cover_every_row():
    chunks = train_distributed.epoch_chunks(1000, 64, seed=7, epoch=1)
    rows = sorted(row for start, stop in chunks for row in range(start, stop))
    assert rows == list(range(1000))


def test_epoch_chunks_order_depends_on_epoch():
    first = train_distributed.epoch_chunks(1000, 64, seed=7, epoch=1)
    again = train_distributed.epoch_chunks(1000, 64, seed=7, epoch=1)
    second = train_distributed.epoch_chunks(1000, 64, seed=7, epoch=2)
    assert first == again
    assert first != second


def test_worker_slices_make_global_batches(higgs_h5):
    args = train_distributed.parse_args(
        ["--data", str(higgs_h5), "--checkpoint-dir", "unused", *SMALL_RUN]
    )
    steps = 20

    def batches(worker, workers):
        return list(
            train_distributed.worker_batches(higgs_h5, args, 2, worker, workers, steps)
        )

    whole = batches(0, 1)
    halves = zip(batches(0, 2), batches(1, 2), strict=True)
    assert len(whole) == steps
    for (x, y), ((x0, y0), (x1, y1)) in zip(whole, halves, strict=True):
        np.testing.assert_array_equal(x, np.concatenate([x0, x1]))
        np.testing.assert_array_equal(y, np.concatenate([y0, y1]))


def test_strip_option_removes_both_forms():
    argv = ["--local-workers", "2", "--epochs", "3", "--local-workers=4", "--x"]
    assert train_distributed.strip_option(argv, "--local-workers") == [
        "--epochs",
        "3",
        "--x",
    ]

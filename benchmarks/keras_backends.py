"""Benchmark: one Keras model trained on the TensorFlow, JAX and PyTorch backends.

Usage: python benchmarks/keras_backends.py [--events N] [--epochs N]
       [--batch-size N] [--units N] [--hidden-layers N] [--rounds N]
       [--threads N] [--backends NAME ...]

Keras chooses its backend once per process, so each backend trains in a
process of its own, started with ``KERAS_BACKEND`` set. Every process builds
the same model (by default the two-Gaussian classifier of
keras/gaussian.ipynb: two inputs, ``Dense(100, relu)``, a sigmoid output) and
trains it on the same events from ``common.make_gaussian_blobs``, with the
same seed, batch size and optimizer. One epoch is run first and not timed,
because it includes tracing and compilation; then ``--epochs`` epochs are
timed one by one. The figure reported is the training throughput of the
median timed epoch, in events (samples) per second.

The backends run in turn, ``--rounds`` times over (TensorFlow, JAX, PyTorch,
TensorFlow, ...), and each keeps its best round, so that load from other
programs on the machine affects all of them alike. The table gives each
backend's throughput and its ratio to TensorFlow's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("tensorflow", "jax", "torch")
RESULT_MARKER = "BENCHMARK_RESULT "


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=20_000, help="training events (default 20000)"
    )
    parser.add_argument(
        "--epochs", type=int, default=5, help="timed epochs per run (default 5)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="events per batch (default 64)"
    )
    parser.add_argument(
        "--units", type=int, default=100, help="units per hidden layer (default 100)"
    )
    parser.add_argument(
        "--hidden-layers", type=int, default=1, help="hidden layers (default 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times each backend is run; the best round counts (default 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for TensorFlow and PyTorch, also set as OMP_NUM_THREADS "
        "(default: each framework's own choice)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="backends to run (default: all three)",
    )
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------
# Worker: one backend, in its own process
# --------------------------------------------------------------------------


def limit_threads(backend: str, threads: int) -> None:
    """Limit the backend's CPU threads, where the framework offers a switch."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
    # NOTE: JAX is not limited here, because it has no run-time thread setting.
    # Whether OMP_NUM_THREADS, set by the parent process, reaches XLA's CPU
    # thread pool is untested.


def backend_version(backend: str) -> str:
    module = sys.modules.get(backend) or __import__(backend)
    return module.__version__


def train_and_time(args: argparse.Namespace) -> dict[str, object]:
    """Train the benchmark model on this process' backend and time each epoch."""
    sys.path.insert(0, str(REPO_ROOT))
    import common  # quiets TensorFlow's C++ log before Keras imports it

    if args.threads:
        limit_threads(args.worker, args.threads)
    import keras

    if keras.backend.backend() != args.worker:
        raise RuntimeError(
            f"Keras started on {keras.backend.backend()!r}, not {args.worker!r}: "
            "KERAS_BACKEND did not reach the worker process"
        )
    keras.utils.set_random_seed(42)
    x, y = common.make_gaussian_blobs(args.events, separation=3.0, seed=0)
    layers = [keras.Input(shape=(2,))]
    layers += [
        keras.layers.Dense(args.units, activation="relu")
        for _ in range(args.hidden_layers)
    ]
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(
        loss="binary_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        metrics=["accuracy"],
    )

    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)

    fit_options = {"batch_size": args.batch_size, "verbose": 0}
    model.fit(x, y, epochs=1, **fit_options)  # tracing and compilation
    history = model.fit(
        x, y, epochs=args.epochs, callbacks=[EpochTimer()], **fit_options
    )
    median_seconds = statistics.median(epoch_seconds)
    return {
        "backend": args.worker,
        "version": backend_version(args.worker),
        "jit_compile": bool(model.jit_compile),
        "parameters": model.count_params(),
        "epoch_seconds": epoch_seconds,
        "samples_per_second": args.events / median_seconds,
        "final_accuracy": float(history.history["accuracy"][-1]),
    }


# --------------------------------------------------------------------------
# Parent: run the workers in turn and print the table
# --------------------------------------------------------------------------


def run_worker(backend: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one backend in a fresh process; return its result or its error."""
    command = [sys.executable, __file__, "--worker", backend]
    for option in ("events", "epochs", "batch_size", "units", "hidden_layers"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    environment = {**os.environ, "KERAS_BACKEND": backend}
    if args.threads:
        command += ["--threads", str(args.threads)]
        environment["OMP_NUM_THREADS"] = str(args.threads)
    completed = subprocess.run(
        command, env=environment, capture_output=True, text=True, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line.removeprefix(RESULT_MARKER))
    last_line = (completed.stderr.strip().splitlines() or ["(no error output)"])[-1]
    return {
        "backend": backend,
        "error": f"exit code {completed.returncode}: {last_line}",
    }


def best_rounds(results: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Keep each backend's fastest successful round, or its last error."""
    best: dict[str, dict[str, object]] = {}
    for result in results:
        name = str(result["backend"])
        previous = best.get(name)
        if "error" in result:
            if previous is None:
                best[name] = result
            continue
        if (
            previous is None
            or "error" in previous
            or result["samples_per_second"] > previous["samples_per_second"]
        ):
            best[name] = result
    return best


def print_table(best: dict[str, dict[str, object]], backends: list[str]) -> None:
    reference = best.get("tensorflow", {}).get("samples_per_second")
    print(
        f"{'backend':<11} {'version':<12} {'jit':<5} {'samples/s':>11} "
        f"{'ratio to TF':>11}  epoch seconds"
    )
    for name in backends:
        result = best[name]
        if "error" in result:
            print(f"{name:<11} failed: {result['error']}")
            continue
        rate = float(result["samples_per_second"])
        ratio = f"{rate / reference:.2f}" if reference else "n/a"
        epochs = " ".join(f"{seconds:.2f}" for seconds in result["epoch_seconds"])
        print(
            f"{name:<11} {result['version']:<12} {str(result['jit_compile']):<5} "
            f"{rate:>11,.0f} {ratio:>11}  {epochs}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.worker:
        print(RESULT_MARKER + json.dumps(train_and_time(args)), flush=True)
        return 0
    threads = args.threads or "framework default"
    print(
        f"Keras backends benchmark: {args.events} events, batch {args.batch_size}, "
        f"{args.hidden_layers} x Dense({args.units}), {args.epochs} timed epochs, "
        f"best of {args.rounds} rounds; {os.cpu_count()} CPU cores, "
        f"threads: {threads}"
    )
    results = []
    for round_number in range(1, args.rounds + 1):
        for backend in args.backends:
            print(f"  round {round_number}: {backend} ...", end="", flush=True)
            start = time.perf_counter()
            result = run_worker(backend, args)
            status = "failed" if "error" in result else "done"
            print(f" {status} in {time.perf_counter() - start:.0f} s", flush=True)
            results.append(result)
    best = best_rounds(results)
    print()
    print_table(best, args.backends)
    return 1 if any("error" in result for result in best.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

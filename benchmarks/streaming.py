"""Compare training throughput from disk streams with training in memory.

Usage: python benchmarks/streaming.py [--data FILE.h5 | --size SIZE] [options]

One run prints two tables:

1. Events per second of ``model.fit``, training the same model on the
   same events. The inputs are NumPy arrays in memory, the HDF5 file
   through a ``keras.utils.PyDataset``, a ROOT TTree through
   ``uproot.iterate`` and, with the TensorFlow backend, the HDF5 file
   through ``tf.data``. Each stream's rate is also printed as a ratio to
   the in-memory rate; the goal is a ratio above 0.9.
2. Events per second of ``scripts/train_distributed.py`` with one and with
   two local workers on 127.0.0.1, and their ratio.

The benchmark copies the first training events of the source file, repeated
until there are ``--events`` of them, into an HDF5 and a ROOT file under
``output/benchmarks/`` (repeated events change nothing about throughput).
The first epoch of every run includes graph tracing and is left out of the
rate. Each input is measured ``--repeats`` times, round-robin, and the best
rate is printed, because other processes on the machine slow single runs.
Without ``--data`` the source is ``common.higgs_hdf5("quick")``, the real
HIGGS samples (``--size`` picks another size).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402  (quiets TensorFlow's log before it is imported)

CHUNK_ROWS = 16_384


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="HIGGS HDF5 file to copy from")
    source.add_argument(
        "--size",
        choices=common.SIZES,
        default="quick",
        help="copy from common.higgs_hdf5(SIZE)",
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per epoch")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--layers", type=int, default=3, help="hidden layers")
    parser.add_argument("--units", type=int, default=128, help="units per layer")
    parser.add_argument(
        "--workers", type=int, default=1, help="PyDataset reader threads"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per input; best is kept"
    )
    parser.add_argument(
        "--skip-distributed",
        action="store_true",
        help="leave out the one-versus-two-workers table",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="seconds allowed for each train_distributed.py run",
    )
    args = parser.parse_args()
    if args.events < args.batch_size:
        parser.error(f"--events {args.events} is less than one batch")
    return args


# --------------------------------------------------------------------------
# Benchmark files
# --------------------------------------------------------------------------


def source_file(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    return common.higgs_hdf5(args.size)


def write_benchmark_files(source: Path, events: int) -> tuple[Path, Path]:
    """Write ``events`` training events (repeated as needed) to HDF5 and ROOT."""
    import uproot

    folder = common.output_dir() / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    h5_path, root_path = folder / "stream.h5", folder / "stream.root"
    with h5py.File(source, "r") as handle:
        stored = len(handle["train/labels"])
        x = handle["train/features"][: min(stored, events)]
        y = handle["train/labels"][: min(stored, events)]
        x_test = handle["test/features"][:]
        y_test = handle["test/labels"][:]
    repeats = math.ceil(events / len(y))
    x = np.tile(x, (repeats, 1))[:events]
    y = np.tile(y, repeats)[:events]
    with h5py.File(h5_path, "w") as handle:
        for split, features, labels in (("train", x, y), ("test", x_test, y_test)):
            rows = min(CHUNK_ROWS, len(labels))
            handle.create_dataset(f"{split}/features", data=features, chunks=(rows, 28))
            handle.create_dataset(f"{split}/labels", data=labels, chunks=(rows,))
    with uproot.recreate(root_path) as root_file:
        branches = {f"f{i}": np.float32 for i in range(28)} | {"label": np.float32}
        tree = root_file.mktree("higgs", branches)
        for start in range(0, events, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, events)
            columns = {f"f{i}": x[start:stop, i] for i in range(28)}
            tree.extend(columns | {"label": y[start:stop]})
    return h5_path, root_path


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def make_pydataset(path: Path, batch_size: int, workers: int):
    """Build a PyDataset over the HDF5 training set, chunks shuffled per epoch."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=workers)
            self.handle = h5py.File(path, "r")
            events = len(self.handle["train/labels"])
            starts = np.arange(0, events, batch_size)
            self.batches = [(s, min(s + batch_size, events)) for s in starts]
            self.per_chunk = max(1, CHUNK_ROWS // batch_size)
            self.rng = np.random.default_rng(0)
            self.on_epoch_end()

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, index: int):
            start, stop = self.batches[self.order[index]]
            group = self.handle["train"]
            return group["features"][start:stop], group["labels"][start:stop]

        def on_epoch_end(self) -> None:
            count = len(self.batches)
            chunks = [
                np.arange(start, min(start + self.per_chunk, count))
                for start in range(0, count, self.per_chunk)
            ]
            order = self.rng.permutation(len(chunks))
            self.order = np.concatenate([chunks[i] for i in order])

    return Batches()


def root_batches(path: Path, batch_size: int):
    """Yield batches from the ROOT file with uproot.iterate, pass after pass."""
    import uproot

    names = [f"f{i}" for i in range(28)]
    while True:
        for arrays in uproot.iterate(
            {str(path): "higgs"},
            [*names, "label"],
            step_size=CHUNK_ROWS,
            library="np",
        ):
            x = np.column_stack([arrays[name] for name in names])
            y = arrays["label"]
            for start in range(0, len(y), batch_size):
                yield x[start : start + batch_size], y[start : start + batch_size]


def make_tf_dataset(path: Path, batch_size: int, events: int):
    """Build a tf.data pipeline of HDF5 chunks in a random order, rebatched."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def chunks():
        with h5py.File(path, "r") as handle:
            features, labels = handle["train/features"], handle["train/labels"]
            for start in rng.permutation(np.arange(0, events, CHUNK_ROWS)):
                stop = min(start + CHUNK_ROWS, events)
                yield features[start:stop], labels[start:stop]

    dataset = tf.data.Dataset.from_generator(
        chunks,
        output_signature=(
            tf.TensorSpec((None, 28), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        ),
    )
    steps = math.ceil(events / batch_size)
    dataset = dataset.rebatch(batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return dataset.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


def build_model(args: argparse.Namespace):
    import keras

    keras.utils.set_random_seed(42)
    layers = [keras.Input(shape=(28,))]
    for _ in range(args.layers):
        layers.append(keras.layers.Dense(args.units, activation="tanh"))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def events_per_second(args: argparse.Namespace, fit_input: dict) -> float:
    """Train a fresh model and return events/s over all epochs but the first."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    seconds: list[float] = []
    model = build_model(args)
    model.fit(**fit_input, epochs=args.epochs, callbacks=[EpochTimer()], verbose=0)
    return args.events * (len(seconds) - 1) / sum(seconds[1:])


def measure_streams(args, h5_path: Path, root_path: Path) -> list[tuple[str, float]]:
    import keras

    with h5py.File(h5_path, "r") as handle:
        x = handle["train/features"][:]
        y = handle["train/labels"][:]
    steps = math.ceil(args.events / args.batch_size)
    inputs = {
        "in memory (NumPy arrays)": lambda: dict(
            x=x, y=y, batch_size=args.batch_size, shuffle=True
        ),
        f"HDF5, PyDataset ({args.workers} reader)": lambda: dict(
            x=make_pydataset(h5_path, args.batch_size, args.workers), shuffle=False
        ),
        "ROOT, uproot.iterate": lambda: dict(
            x=root_batches(root_path, args.batch_size),
            steps_per_epoch=steps,
            shuffle=False,
        ),
    }
    if keras.backend.backend() == "tensorflow":
        inputs["HDF5, tf.data"] = lambda: dict(
            x=make_tf_dataset(h5_path, args.batch_size, args.events), shuffle=False
        )
    # Round-robin repeats spread changes in machine load over all inputs; the
    # best of the repeats is the rate each input can sustain.
    rates = {name: 0.0 for name in inputs}
    for repeat in range(1, args.repeats + 1):
        for name, make_input in inputs.items():
            rate = events_per_second(args, make_input())
            rates[name] = max(rates[name], rate)
            print(f"  repeat {repeat}, {name}: {rate:,.0f} events/s", flush=True)
    return list(rates.items())


def measure_workers(args, h5_path: Path, workers: int) -> float:
    """Run train_distributed.py with local workers; return its events/s."""
    folder = common.output_dir() / "benchmarks" / f"distributed-{workers}"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "train_distributed.py"),
        "--data",
        str(h5_path),
        "--checkpoint-dir",
        str(folder),
        "--local-workers",
        str(workers),
        "--max-restarts",
        "0",
        "--epochs",
        str(args.epochs),
        "--global-batch-size",
        str(args.batch_size),
        "--layers",
        str(args.layers),
        "--units",
        str(args.units),
        "--activation",
        "tanh",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=args.timeout
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"train_distributed.py with {workers} workers failed "
            f"(exit code {completed.returncode}):\n{completed.stdout[-3000:]}"
        )
    result = json.loads((folder / "result.json").read_text())
    events = result["steps_per_epoch"] * result["global_batch_size"]
    seconds = result["seconds"][1:]
    return events * len(seconds) / sum(seconds)


def main() -> int:
    args = parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2: the first one is not timed")
    import keras

    source = source_file(args)
    h5_path, root_path = write_benchmark_files(source, args.events)
    print(
        f"Streaming benchmark: {args.events:,} events from {source.name}, batch "
        f"{args.batch_size}, {args.layers} x {args.units} tanh units, "
        f"{args.epochs} epochs (first not timed)"
    )
    print(
        f"Keras {keras.__version__} ({keras.backend.backend()}), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    rates = measure_streams(args, h5_path, root_path)
    reference = rates[0][1]
    print()
    print(f"{'input':<32} {'events/s':>12} {'ratio':>8}")
    for name, rate in rates:
        print(f"{name:<32} {rate:>12,.0f} {rate / reference:>8.2f}")
    if args.skip_distributed:
        return 0
    print()
    print("scripts/train_distributed.py (MultiWorkerMirroredStrategy, 127.0.0.1):")
    one = measure_workers(args, h5_path, 1)
    two = measure_workers(args, h5_path, 2)
    print(f"{'local workers':<32} {'events/s':>12} {'ratio':>8}")
    print(f"{'1':<32} {one:>12,.0f} {1.0:>8.2f}")
    print(f"{'2':<32} {two:>12,.0f} {two / one:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

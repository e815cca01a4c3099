"""Benchmark the HIGGS conversion and the CPU training speed of the HIGGS models.

Usage: python benchmarks/higgs_conversion.py [--rows 1000000] [--skip-training]

One run measures, side by side:

1. Conversion: a generated file in the full ``HIGGS.csv.gz`` format (comma,
   no header, label first, values printed with ``%.18e`` as in the real
   file) is converted with ``common.convert_higgs_csv`` in a child process.
   The report gives events per second, MB/s of the compressed and of the
   decompressed text, and the child's peak resident memory, next to the
   time of ``gzip -dc FILE > /dev/null`` on the same file.
2. Training: the shallow and deep networks of ``keras/HIGGS_train.ipynb``
   and the histogram boosted trees of ``keras/HIGGS_test.ipynb``, trained at
   the workshop size (200,000 events), with the test AUC after each epoch
   against the CPU time used so far. The real ``HIGGS.h5`` is used when it
   is already in the data cache. Otherwise the generated events are used,
   and then only the times mean something: their AUC is not physics.

Nothing is downloaded. Files go to a temporary folder, deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import common  # noqa: E402

WORKSHOP_TRAIN_EVENTS = 200_000  # as in keras/HIGGS_train.ipynb
WORKSHOP_EPOCHS = 8
WORKSHOP_BATCH_SIZE = 256
TEST_EVENTS = 100_000  # AUC precision is about 0.001 with this many events


def generate_higgs_file(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` synthetic events in the full HIGGS.csv.gz format.

    Features are float32 values printed at ``%.18e``, like the real file, so
    the text size per row and its compressibility are close to the real
    ones. Signal events are shifted in a few features so a model can learn.
    """
    rng = np.random.default_rng(seed)
    with open(path, "wb") as sink:
        gzip_process = subprocess.Popen(
            ["gzip", "-6"], stdin=subprocess.PIPE, stdout=sink
        )
        assert gzip_process.stdin is not None
        for start in range(0, rows, 50_000):
            count = min(50_000, rows - start)
            labels = rng.integers(0, 2, count)
            features = rng.normal(size=(count, 28)).astype(np.float32)
            features[:, [0, 5, 25, 27]] += 0.4 * labels[:, None]
            features[:, 26] *= 1 + 0.5 * labels
            table = np.column_stack([labels, features.astype(np.float64)])
            lines = "\n".join(",".join(f"{v:.18e}" for v in row) for row in table)
            gzip_process.stdin.write(lines.encode() + b"\n")
        gzip_process.stdin.close()
        if gzip_process.wait() != 0:
            raise RuntimeError("gzip failed while writing the generated file")


def time_gzip(path: Path) -> float:
    """Return the wall time of ``gzip -dc path > /dev/null`` in seconds."""
    start = time.perf_counter()
    with open("/dev/null", "wb") as null:
        subprocess.run(["gzip", "-dc", str(path)], stdout=null, check=True)
    return time.perf_counter() - start


def time_conversion(source: Path, target: Path) -> tuple[float, float, float]:
    """Convert in a child process; return wall seconds, peak and baseline MB.

    The baseline is the peak memory of a child that only imports the
    modules, so the difference is what the conversion itself needs.
    """
    setup = f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import common, h5py"
    convert = (
        f"{setup}; from pathlib import Path; common.convert_higgs_csv("
        f"Path({str(source)!r}), Path({str(target)!r}), "
        "common.HiggsLayout(',', header=False, label_first=True, rows=None))"
    )
    baseline = _child_peak_mb([sys.executable, "-c", setup])
    start = time.perf_counter()
    peak = _child_peak_mb([sys.executable, "-c", convert])
    return time.perf_counter() - start, peak, baseline


def _child_peak_mb(command: list[str]) -> float:
    """Run a Python command and return its peak resident memory in MB (Linux).

    The child reports its own ``VmHWM`` from ``/proc/self/status``. The
    ``ru_maxrss`` of ``wait4`` would not do, because a forked child starts
    with the parent's peak, which ``exec`` does not reset.
    """
    report = (
        "; print(next(line for line in open('/proc/self/status') "
        "if line.startswith('VmHWM')))"
    )
    result = subprocess.run(
        [*command[:-1], command[-1] + report],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024  # the value is in kB


def _decompressed_bytes(path: Path) -> int:
    """Count the bytes of the decompressed text of a gzip file."""
    total = 0
    with subprocess.Popen(["gzip", "-dc", str(path)], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        while chunk := child.stdout.read(1 << 20):
            total += len(chunk)
    return total


def benchmark_conversion(rows: int, folder: Path) -> Path:
    """Generate, decompress and convert one file; print the figures."""
    source = folder / "HIGGS.csv.gz"
    print(f"Generating {rows:,} events in the HIGGS.csv.gz format ...", flush=True)
    generate_higgs_file(source, rows)
    compressed = source.stat().st_size / 1e6
    decompressed_mb = _decompressed_bytes(source) / 1e6

    gzip_seconds = time_gzip(source)
    target = folder / "HIGGS.h5"
    seconds, peak, baseline = time_conversion(source, target)

    print(
        f"\nFile: {rows:,} events, {compressed:.0f} MB gzipped, "
        f"{decompressed_mb:.0f} MB of text"
    )
    print(f"{'step':30}{'seconds':>9}{'events/s':>12}{'MB/s gz':>9}{'MB/s text':>11}")
    for name, time_taken in [
        ("gzip -dc > /dev/null", gzip_seconds),
        ("convert_higgs_csv", seconds),
    ]:
        print(
            f"{name:30}{time_taken:9.1f}{rows / time_taken:12,.0f}"
            f"{compressed / time_taken:9.1f}{decompressed_mb / time_taken:11.1f}"
        )
    print(f"Conversion time / gzip -dc time: {seconds / gzip_seconds:.1f}")
    print(
        f"Conversion peak memory {peak:.0f} MB; a child that only imports "
        f"numpy and h5py peaks at {baseline:.0f} MB"
    )

    full_rows = 11_000_000
    print(
        f"Estimate for the full file ({full_rows:,} events) at this rate: "
        f"{full_rows / (rows / seconds) / 60:.0f} min"
    )
    return target


def benchmark_training(generated: Path) -> None:
    """Train the three models at the workshop size; print AUC against CPU time."""
    import h5py

    common.setup(seed=42)
    import keras
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    real = common.data_dir() / "higgs" / "HIGGS.h5"
    path = real if real.is_file() else generated
    kind = "real HIGGS events" if path == real else "generated events (speed only)"
    with h5py.File(path, "r") as h5:
        x_train = h5["train/features"][:WORKSHOP_TRAIN_EVENTS]
        y_train = h5["train/labels"][:WORKSHOP_TRAIN_EVENTS]
        x_test = h5["test/features"][:TEST_EVENTS]
        y_test = h5["test/labels"][:TEST_EVENTS]
    print(
        f"\nTraining on {len(y_train):,} {kind}; test AUC on {len(y_test):,} "
        f"events; {WORKSHOP_EPOCHS} epochs, batch {WORKSHOP_BATCH_SIZE}"
    )

    class AucPerCpu(keras.callbacks.Callback):
        """Print the test AUC after each epoch against the training CPU time.

        The CPU time of the test predictions is left out of the count.
        """

        def on_train_begin(self, logs=None):
            self.start = time.process_time()
            self.evaluation = 0.0

        def on_epoch_end(self, epoch, logs=None):
            before = time.process_time()
            cpu = before - self.start - self.evaluation
            score = self.model.predict(x_test, batch_size=4096, verbose=0).ravel()
            auc = roc_auc_score(y_test, score)
            self.evaluation += time.process_time() - before
            print(f"  epoch {epoch + 1}: {cpu / 60:5.2f} CPU min, AUC {auc:.4f}")

    for name, (layers, units, activation) in {
        "shallow": (1, 1000, "tanh"),
        "deep": (5, 300, "relu"),
    }.items():
        standardize = keras.layers.Normalization()
        standardize.adapt(x_train)
        model = keras.Sequential([keras.Input(shape=(28,)), standardize])
        for _ in range(layers):
            model.add(keras.layers.Dense(units, activation=activation))
        model.add(keras.layers.Dense(1, activation="sigmoid"))
        model.compile(optimizer="adam", loss="binary_crossentropy")
        print(f"{name} network:")
        wall = time.perf_counter()
        model.fit(
            x_train,
            y_train,
            epochs=WORKSHOP_EPOCHS,
            batch_size=WORKSHOP_BATCH_SIZE,
            callbacks=[AucPerCpu()],
            verbose=0,
        )
        print(f"  {time.perf_counter() - wall:.0f} s wall in all")

    cpu = time.process_time()
    wall = time.perf_counter()
    tree = HistGradientBoostingClassifier(
        max_iter=500, early_stopping=True, validation_fraction=0.1, random_state=0
    ).fit(x_train, y_train)
    auc = roc_auc_score(y_test, tree.predict_proba(x_test)[:, 1])
    print(
        f"boosted trees: {(time.process_time() - cpu) / 60:5.2f} CPU min "
        f"({time.perf_counter() - wall:.0f} s wall, {tree.n_iter_} iterations), "
        f"AUC {auc:.4f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="events in the generated file"
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="measure the conversion only"
    )
    args = parser.parse_args()
    if args.rows <= common.HIGGS_TEST_EVENTS:
        parser.error(f"--rows must exceed the {common.HIGGS_TEST_EVENTS:,} test events")
    folder = Path(tempfile.mkdtemp(prefix="higgs-benchmark-"))
    try:
        converted = benchmark_conversion(args.rows, folder)
        if not args.skip_training:
            benchmark_training(converted)
    finally:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

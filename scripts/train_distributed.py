"""Train the HIGGS deep network on several workers with MultiWorkerMirroredStrategy.

Each worker is one process with one model replica. Every step, each worker
computes gradients on its share of the global batch, the workers sum them
with an all-reduce, and all of them apply the same update, so the replicas
stay identical. The result equals one process training on the whole global
batch, up to float32 rounding in the order of the sums. The default network
standardises the 28 inputs and has five hidden layers of 300 ReLU units and
a sigmoid output (``--layers``, ``--units``, ``--activation``).

Three ways to start it:

* On one machine, as a small local cluster on 127.0.0.1 (this script starts
  the workers and restarts all of them if one fails)::

      python scripts/train_distributed.py --data higgs.h5 --local-workers 2 \\
          --checkpoint-dir output/distributed

* One worker per machine, described by ``TF_CONFIG`` (what Slurm scripts or
  Kubernetes set up)::

      TF_CONFIG='{"cluster": {"worker": ["node1:2222", "node2:2222"]},
                  "task": {"type": "worker", "index": 0}}' \\
          python scripts/train_distributed.py --data higgs.h5 \\
          --checkpoint-dir /shared/run1

* One worker of a local cluster, by hand: ``--worker-index I --ports P0,P1``
  builds ``TF_CONFIG`` for workers on 127.0.0.1 at those ports.

The data is an HDF5 file with ``/train`` and ``/test`` groups, each holding
``features`` (n, 28) and ``labels`` (n,); ``--size`` takes it from
``common.higgs_hdf5`` instead. Each epoch reads the training set in chunks
of ``--chunk-batches`` global batches, in a shuffled chunk order that
depends only on the seed and the epoch. Every worker reads the same chunks
but keeps only its own slice of each global batch, so the input pipeline is
sharded per worker and a restarted run gets the same batches.

Checkpoints (``tf.train.CheckpointManager``) contain the model, the
optimizer and the number of finished epochs, and are written after every
epoch. A (re)started run restores the latest one and continues with the
next epoch, so no finished epoch is lost or repeated. The epoch that was
interrupted starts again from its beginning. A worker cannot rejoin a
running cluster, so when one fails, all of them must be restarted:
``--local-workers`` does that itself, and under ``TF_CONFIG`` it is the
cluster manager's job. The surviving workers wait in the all-reduce until
they are stopped, and they catch SIGTERM, so stop them with SIGKILL. All
workers must read the chief's checkpoint folder, so across machines it has
to be on a shared file system.

The chief (worker 0) writes ``result.json`` (loss per epoch, epochs trained
in this run, seconds per epoch, test AUC) and ``weights.npz`` into
``--checkpoint-dir``.

Why not ``model.fit``: with TensorFlow 2.21 and Keras 3.15,
``model.fit`` under ``MultiWorkerMirroredStrategy`` fails because Keras
tries to convert the strategy's per-replica batches into one tensor. The
custom loop below (``strategy.run`` with ``tf.GradientTape``, the loss
divided by the global batch size) trains correctly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG = logging.getLogger("train_distributed")
# Set by --local-workers in each worker's environment: the launcher's pid.
LAUNCHER_PID_VARIABLE = "TRAIN_DISTRIBUTED_LAUNCHER_PID"


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="HIGGS HDF5 file")
    source.add_argument(
        "--size",
        choices=("quick", "workshop", "full"),
        help="use common.higgs_hdf5(SIZE) as the data file",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        required=True,
        help="folder for checkpoints, result.json and weights.npz",
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs in total")
    parser.add_argument(
        "--global-batch-size",
        type=int,
        default=1024,
        help="events per step, summed over all workers",
    )
    parser.add_argument(
        "--chunk-batches",
        type=int,
        default=16,
        help="global batches per HDF5 read (the unit of shuffling)",
    )
    parser.add_argument("--layers", type=int, default=5, help="hidden layers")
    parser.add_argument("--units", type=int, default=300, help="units per layer")
    parser.add_argument(
        "--activation", default="relu", help="activation of the hidden layers"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam learning rate"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the weights and the data order"
    )
    parser.add_argument(
        "--local-workers",
        type=int,
        help="start this many workers on 127.0.0.1 and supervise them",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="with --local-workers: restarts of the whole cluster after a failure",
    )
    parser.add_argument(
        "--worker-index",
        type=int,
        help="this worker's index in --ports (builds TF_CONFIG for 127.0.0.1)",
    )
    parser.add_argument(
        "--ports", help="comma-separated 127.0.0.1 ports, one per worker"
    )
    args = parser.parse_args(argv)
    if (args.worker_index is None) != (args.ports is None):
        parser.error("--worker-index and --ports go together")
    if args.local_workers is not None and args.worker_index is not None:
        parser.error("--local-workers starts its own workers: drop --worker-index")
    if args.local_workers is not None and args.local_workers < 1:
        parser.error(f"--local-workers must be at least 1, not {args.local_workers}")
    return args


def data_path(args: argparse.Namespace) -> Path:
    """Return the HDF5 file from ``--data``, or from ``common.higgs_hdf5``."""
    if args.data is not None:
        if not args.data.is_file():
            raise SystemExit(f"Data file not found: {args.data}")
        return args.data
    sys.path.insert(0, str(REPO_ROOT))
    import common

    return common.higgs_hdf5(args.size)


# --------------------------------------------------------------------------
# Local cluster: start, watch and restart the workers
# --------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Return ``count`` TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def forward_output(process: subprocess.Popen, index: int) -> None:
    """Copy a worker's output lines to stdout, prefixed with its index."""
    for line in process.stdout:
        print(f"[worker {index}] {line}", end="", flush=True)


def run_local_cluster(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``--local-workers`` workers; restart all of them when one fails.

    A worker of MultiWorkerMirroredStrategy cannot rejoin a running cluster:
    its peers wait for it inside a collective operation. So after any
    failure every worker is stopped and the whole cluster starts again on
    fresh ports, and each worker resumes from the latest checkpoint.
    """
    worker_argv = strip_option(argv, "--local-workers")
    worker_argv = strip_option(worker_argv, "--max-restarts")
    # SIGTERM becomes SystemExit, so the finally clause stops the workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    processes: list[subprocess.Popen] = []
    try:
        return supervise(args, worker_argv, processes)
    finally:
        stop_workers(processes)


def supervise(
    args: argparse.Namespace, worker_argv: list[str], processes: list[subprocess.Popen]
) -> int:
    """Start the workers, wait for them, and restart all after a failure.

    ``processes`` is filled with the running workers, so that the caller can
    stop them if the launcher itself is interrupted.
    """
    for attempt in range(1, args.max_restarts + 2):
        ports = free_ports(args.local_workers)
        port_list = ",".join(map(str, ports))
        processes.clear()
        for index in range(args.local_workers):
            command = [
                sys.executable,
                "-u",
                str(Path(__file__).resolve()),
                *worker_argv,
                "--worker-index",
                str(index),
                "--ports",
                port_list,
            ]
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, LAUNCHER_PID_VARIABLE: str(os.getpid())},
            )
            LOG.info(
                "started worker %d (pid %d, attempt %d, port %d)",
                index,
                process.pid,
                attempt,
                ports[index],
            )
            threading.Thread(
                target=forward_output, args=(process, index), daemon=True
            ).start()
            processes.append(process)
        failed = wait_for_workers(processes)
        if failed is None:
            LOG.info("all %d workers finished", len(processes))
            return 0
        index, code = failed
        reason = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        LOG.warning(
            "worker %d %s; stopping the others (attempt %d)", index, reason, attempt
        )
        stop_workers(processes)
    LOG.error("giving up after %d restarts", args.max_restarts)
    return 1


def wait_for_workers(processes: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait until all workers succeed (None) or one fails: (index, code)."""
    while True:
        codes = [process.poll() for process in processes]
        for index, code in enumerate(codes):
            if code not in (None, 0):
                return index, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def stop_workers(processes: list[subprocess.Popen]) -> None:
    """Kill the running workers and wait for them.

    SIGKILL, not SIGTERM: with TensorFlow 2.21 a worker of a multi-worker
    cluster catches SIGTERM (as a preemption notice) and keeps running. A
    worker loses nothing by being killed, because checkpoints are written
    only between epochs.
    """
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()


def strip_option(argv: list[str], name: str) -> list[str]:
    """Remove ``name VALUE`` and ``name=VALUE`` from an argument list."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


# --------------------------------------------------------------------------
# One worker
# --------------------------------------------------------------------------


def exit_with_launcher() -> None:
    """Make Linux kill this worker when the launcher that started it exits.

    Without this, a launcher killed by SIGKILL would leave its workers
    waiting forever in an all-reduce. Does nothing on other systems or when
    no launcher started this process.
    """
    launcher = os.environ.get(LAUNCHER_PID_VARIABLE)
    if launcher is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL) != 0:
        LOG.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != int(launcher):
        raise SystemExit(f"the launcher (pid {launcher}) exited before this worker")


def configure_cluster(args: argparse.Namespace) -> None:
    """Set ``TF_CONFIG`` from ``--worker-index`` and ``--ports``, if given."""
    if args.worker_index is None:
        return
    ports = [int(port) for port in args.ports.split(",")]
    if not 0 <= args.worker_index < len(ports):
        raise SystemExit(
            f"--worker-index {args.worker_index} is outside the {len(ports)} ports"
        )
    if "TF_CONFIG" in os.environ:
        LOG.warning("--worker-index and --ports replace the TF_CONFIG already set")
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": args.worker_index},
        }
    )


def epoch_chunks(
    events: int, chunk_rows: int, seed: int, epoch: int
) -> list[tuple[int, int]]:
    """Return the epoch's (start, stop) row ranges, in a seeded random order."""
    starts = np.arange(0, events, chunk_rows)
    order = np.random.default_rng([seed, epoch]).permutation(len(starts))
    return [(int(starts[i]), int(min(starts[i] + chunk_rows, events))) for i in order]


def worker_batches(path, args, epoch, worker, workers, steps):
    """Yield this worker's slice of every global batch of one epoch.

    Rows inside a chunk are shuffled with a seed made of the seed, the
    epoch and the chunk start, so every worker builds the same global
    batches and keeps the ``worker``-th of ``workers`` equal slices.
    """
    import h5py

    batch = args.global_batch_size
    share = batch // workers
    with h5py.File(path, "r") as handle:
        features = handle["train/features"]
        labels = handle["train/labels"]
        for start, stop in epoch_chunks(
            steps * batch, args.chunk_batches * batch, args.seed, epoch
        ):
            order = np.random.default_rng([args.seed, epoch, start]).permutation(
                stop - start
            )
            x = features[start:stop][order].reshape(-1, workers, share, 28)
            y = labels[start:stop][order].reshape(-1, workers, share, 1)
            yield from zip(x[:, worker], y[:, worker], strict=True)


def feature_moments(path: Path, events: int = 100_000) -> tuple[np.ndarray, ...]:
    """Return the mean and variance of each feature over the first events.

    Every worker computes them from the same rows, so all replicas build the
    same standardisation layer without communicating.
    """
    import h5py

    with h5py.File(path, "r") as handle:
        sample = handle["train/features"][:events].astype(np.float64)
    return sample.mean(axis=0), sample.var(axis=0)


def build_model(args: argparse.Namespace, mean: np.ndarray, variance: np.ndarray):
    """Build the deep network: standardisation, dense hidden layers, sigmoid."""
    import keras

    keras.utils.set_random_seed(args.seed)
    layers = [
        keras.Input(shape=(28,)),
        keras.layers.Normalization(mean=mean, variance=variance),
    ]
    for _ in range(args.layers):
        layers.append(keras.layers.Dense(args.units, activation=args.activation))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    return keras.Sequential(layers, name="higgs_deep_network")


def train_worker(args: argparse.Namespace) -> int:
    """Train as one worker of the cluster in ``TF_CONFIG`` (or alone)."""
    exit_with_launcher()
    configure_cluster(args)
    # tf.distribute works only with the TensorFlow backend; the variable
    # also wins over a backend chosen in ~/.keras/keras.json.
    requested = os.environ.get("KERAS_BACKEND", "tensorflow")
    if requested != "tensorflow":
        LOG.warning("KERAS_BACKEND=%s ignored: this script needs tensorflow", requested)
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    worker = int(resolver.task_id or 0)
    workers = strategy.num_replicas_in_sync
    is_chief = worker == 0
    batch = args.global_batch_size
    if batch % workers:
        raise SystemExit(
            f"--global-batch-size {batch} is not divisible by {workers} workers"
        )
    path = data_path(args)
    import h5py

    with h5py.File(path, "r") as handle:
        train_events = len(handle["train/labels"])
    steps = train_events // batch
    if steps == 0:
        raise SystemExit(
            f"{path} has {train_events} training events, fewer than one global "
            f"batch of {batch}"
        )
    LOG.info(
        "worker %d of %d: %d steps of %d events per epoch (%d events dropped)",
        worker,
        workers,
        steps,
        batch,
        train_events - steps * batch,
    )

    with strategy.scope():
        model = build_model(args, *feature_moments(path))
        optimizer = keras.optimizers.Adam(learning_rate=args.learning_rate)
        optimizer.build(model.trainable_variables)
        finished_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, finished_epochs=finished_epochs
    )
    # Every worker takes part in saving, but only the chief's copy is kept:
    # the others write to a scratch folder of their own.
    folder = args.checkpoint_dir
    if not is_chief:
        folder = folder / f"scratch-worker-{worker}"
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(args.checkpoint_dir))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        LOG.info("restored %s (after epoch %d)", latest, int(finished_epochs.numpy()))
    first_epoch = int(finished_epochs.numpy()) + 1

    train_step = make_train_step(strategy, model, optimizer, batch)
    history = {"epoch": [], "loss": [], "seconds": []}
    for epoch in range(first_epoch, args.epochs + 1):
        LOG.info("epoch %d/%d started", epoch, args.epochs)
        dataset = strategy.distribute_datasets_from_function(
            lambda context, epoch=epoch: make_dataset(path, args, epoch, steps, context)
        )
        start = time.perf_counter()
        total = 0.0
        for x, y in dataset:
            total += float(train_step(x, y))
        seconds = time.perf_counter() - start
        finished_epochs.assign(epoch)
        manager.save(checkpoint_number=epoch)
        history["epoch"].append(epoch)
        history["loss"].append(total / steps)
        history["seconds"].append(seconds)
        LOG.info(
            "epoch %d/%d finished: loss %.5f, %.1f s, %.0f events/s",
            epoch,
            args.epochs,
            total / steps,
            seconds,
            steps * batch / seconds,
        )
    if is_chief:
        write_result(args, model, path, history, workers, steps)
    return 0


def make_dataset(path, args, epoch, steps, context):
    """Build this worker's tf.data pipeline for one epoch."""
    import tensorflow as tf

    share = context.get_per_replica_batch_size(args.global_batch_size)
    dataset = tf.data.Dataset.from_generator(
        lambda: worker_batches(
            path,
            args,
            epoch,
            context.input_pipeline_id,
            context.num_input_pipelines,
            steps,
        ),
        output_signature=(
            tf.TensorSpec((share, 28), tf.float32),
            tf.TensorSpec((share, 1), tf.float32),
        ),
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_train_step(strategy, model, optimizer, global_batch_size):
    """Build the compiled step: per-replica gradients, all-reduced, applied."""
    import keras
    import tensorflow as tf

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            per_event = keras.losses.binary_crossentropy(y, probabilities)
            # Divide by the global batch, not the replica's: the all-reduce
            # sums the replicas' gradients, which then average over all events.
            loss = tf.nn.compute_average_loss(
                per_event, global_batch_size=global_batch_size
            )
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(
            zip(gradients, model.trainable_variables, strict=True)
        )
        return loss

    @tf.function
    def train_step(x, y):
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def write_result(args, model, path, history, workers, steps) -> None:
    """Write the chief's result.json and weights.npz, with the test AUC."""
    import h5py
    from sklearn.metrics import roc_auc_score

    with h5py.File(path, "r") as handle:
        x_test = handle["test/features"][:]
        y_test = handle["test/labels"][:]
    scores = np.concatenate(
        [
            np.asarray(model(x_test[i : i + 4096], training=False)).ravel()
            for i in range(0, len(x_test), 4096)
        ]
    )
    result = {
        "workers": workers,
        "global_batch_size": args.global_batch_size,
        "steps_per_epoch": steps,
        "epochs_trained": history["epoch"],
        "loss": history["loss"],
        "seconds": history["seconds"],
        "test_auc": float(roc_auc_score(y_test, scores)),
    }
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (args.checkpoint_dir / "result.json").write_text(json.dumps(result, indent=1))
    weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    np.savez(args.checkpoint_dir / "weights.npz", **weights)
    LOG.info("test AUC %.4f; wrote result.json and weights.npz", result["test_auc"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    role = "launcher" if args.local_workers else f"worker {args.worker_index or 0}"
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {role}: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    if args.local_workers:
        return run_local_cluster(args, argv)
    return train_worker(args)


if __name__ == "__main__":
    sys.exit(main())

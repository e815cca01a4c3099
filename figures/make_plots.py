"""Draw the plots on the slides and collect the figures that notebooks made.

Run from anywhere (``make figures`` in ``slides/`` runs it)::

    python figures/make_plots.py [--output-dir FOLDER]

Plots drawn here use the workshop's own code in ``common.py`` and are
written as PDF next to this file. Figures that only a notebook run produces
(MNIST, HIGGS) are copied from ``common.output_dir()/figures/`` when they
exist, so run the notebooks first to refresh those.
"""

import argparse
import shutil
import sys
from pathlib import Path

FIGURES_DIR = Path(__file__).resolve().parent
REPO_ROOT = FIGURES_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

import matplotlib  # noqa: E402

import common  # noqa: E402  (quiets TensorFlow's log before Keras loads)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Figures that notebooks save with common.show(fig, name), by name.
NOTEBOOK_FIGURES = {
    "mnist_examples": "keras/mnist_train.ipynb",
    "mnist_history": "keras/mnist_train.ipynb",
    "mnist_own_digit": "keras/mnist_apply.ipynb",
    "higgs_roc": "keras/HIGGS_test.ipynb",
}

# The hand-set XOR network of tensorflow/xor.ipynb: hidden unit 1 acts as
# OR, unit 2 as AND, and the output is "OR but not AND".
XOR_W_HIDDEN = np.array([[10.0, 10.0], [10.0, 10.0]])
XOR_B_HIDDEN = np.array([-5.0, -15.0])
XOR_W_OUTPUT = np.array([5.0, -5.0])
XOR_B_OUTPUT = -5.0


def xor_network(x: np.ndarray) -> np.ndarray:
    """Evaluate the hand-set XOR network on points of shape (n, 2)."""
    hidden = np.tanh(x @ XOR_W_HIDDEN + XOR_B_HIDDEN)
    logit = hidden @ XOR_W_OUTPUT + XOR_B_OUTPUT
    return 1.0 / (1.0 + np.exp(-logit))


def save(fig, name: str, target_dir: Path) -> None:
    """Write a figure as ``<target_dir>/<name>.pdf`` and print its path."""
    path = target_dir / f"{name}.pdf"
    # No creation date in the file, so an unchanged plot gives the same bytes.
    fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    print(f"Saved figure {path}")


def plot_xor_regions(target_dir: Path) -> None:
    """Colour the plane by the hand-set XOR network's output."""
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0], dtype=np.float32)
    fig = common.plot_decision_boundary(
        xor_network, None, None, title="hand-set XOR network"
    )
    ax, colorbar_ax = fig.axes[:2]
    colorbar_ax.set_ylabel("network output")
    for value, colour, name in ((0, "tab:blue", "XOR = 0"), (1, "tab:red", "XOR = 1")):
        chosen = labels == value
        ax.scatter(*corners[chosen].T, s=150, c=colour, edgecolors="black", label=name)
    ax.legend(loc="upper left")
    save(fig, "xor_regions", target_dir)


def plot_gaussian_data(x: np.ndarray, y: np.ndarray, target_dir: Path) -> None:
    """Scatter the two Gaussian blobs that the training examples use."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for value, colour, name in (
        (0, "tab:blue", "background"),
        (1, "tab:red", "signal"),
    ):
        chosen = y == value
        ax.scatter(*x[chosen].T, s=6, c=colour, label=name)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="upper left")
    save(fig, "gaussian_data", target_dir)


def plot_gaussian_training(x: np.ndarray, y: np.ndarray, target_dir: Path) -> None:
    """Train the Keras classifier of the "Compile, then fit" frame and plot it.

    The network and hyper-parameters are those of keras/gaussian.ipynb.
    """
    import keras

    x_val, y_val = common.make_gaussian_blobs(2500, separation=3.0, seed=1)
    model = keras.Sequential(
        [
            keras.Input(shape=(2,)),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        loss="binary_crossentropy",
        optimizer=keras.optimizers.Adam(1e-3),
        metrics=["accuracy"],
    )
    history = model.fit(
        x, y, batch_size=64, epochs=15, validation_data=(x_val, y_val), verbose=0
    )
    save(common.plot_history(history), "gaussian_history", target_dir)

    def predict(points: np.ndarray) -> np.ndarray:
        return model.predict(points, batch_size=4096, verbose=0).ravel()

    save(
        common.plot_decision_boundary(
            predict, x[:400], y[:400], title="trained network"
        ),
        "gaussian_boundary",
        target_dir,
    )


def collect_notebook_figures(target_dir: Path) -> list[str]:
    """Copy the notebook figures into ``target_dir`` and return the names not found."""
    source_dir = common.output_dir() / "figures"
    missing = []
    for name, notebook in NOTEBOOK_FIGURES.items():
        source = source_dir / f"{name}.png"
        if source.exists():
            shutil.copyfile(source, target_dir / source.name)
            print(f"Copied figure {source} -> {target_dir / source.name}")
        elif (target_dir / source.name).exists():
            print(f"Kept figure {target_dir / source.name}: {source} not found")
        else:
            print(f"Missing figure {name}: run {notebook} to make {source}")
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=FIGURES_DIR,
        help="folder for the figures (default: the folder of this script)",
    )
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    common.setup(seed=42)
    plot_xor_regions(args.output_dir)
    # The training sample of the slides' Gaussian examples; the scatter plot
    # shows its first 2000 events.
    x, y = common.make_gaussian_blobs(10000, separation=3.0, seed=0)
    plot_gaussian_data(x[:2000], y[:2000], args.output_dir)
    plot_gaussian_training(x, y, args.output_dir)
    missing = collect_notebook_figures(args.output_dir)
    if missing:
        # Not an error: the deck shows a placeholder for each of these.
        print(
            f"{len(missing)} notebook figures not yet generated: {', '.join(missing)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

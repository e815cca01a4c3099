"""Shared helpers for the workshop notebooks: setup, data download, plotting.

Every notebook in ``tensorflow/`` and ``keras/`` imports this module with::

    import sys

    sys.path.insert(0, "..")  # common.py sits in the repository root
    import common

Importing it quiets TensorFlow's C++ log, so import it before TensorFlow or
Keras. Nothing here imports TensorFlow or Keras at module level: the Keras
backend stays whatever ``KERAS_BACKEND`` or ``~/.keras/keras.json`` chooses.

Environment variables read here:

``WORKSHOP_SIZE``
    ``quick``, ``workshop`` or ``full``; overrides a notebook's default size.
``WORKSHOP_DATA``
    Download cache folder (default: ``data/`` in the repository).
``WORKSHOP_MIRROR``
    A local folder or an ``http(s)://`` URL that holds the dataset files under
    their table paths (for example ``mnist/t10k-labels-idx1-ubyte.gz``); it is
    tried before the public URLs.
``WORKSHOP_OUTPUT``
    Folder for models, figures and files passed between notebooks (default:
    ``output/`` in the repository).
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import http.client
import os
import platform
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# TensorFlow reads this once, when it is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent
DATASETS_TABLE = REPO_ROOT / "data" / "datasets.csv"
SIZES = ("quick", "workshop", "full")

# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------


def workshop_size(default: str = "workshop") -> str:
    """Return the run size: ``quick``, ``workshop`` or ``full``.

    A ``--size NAME`` or ``--size=NAME`` command-line flag (for notebooks run
    as scripts) wins over the ``WORKSHOP_SIZE`` environment variable, which
    wins over ``default``.
    """
    size = os.environ.get("WORKSHOP_SIZE") or default
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--size" and i + 1 < len(argv):
            size = argv[i + 1]
        elif arg.startswith("--size="):
            size = arg.split("=", 1)[1]
    size = size.strip().lower()
    if size not in SIZES:
        raise ValueError(
            f"Unknown workshop size {size!r}: choose one of {', '.join(SIZES)} "
            "(set WORKSHOP_SIZE or pass --size)."
        )
    return size


def setup(seed: int = 42) -> None:
    """Seed every random generator, quiet framework logs, print versions.

    Seeds Python, NumPy and the active Keras backend (which includes
    TensorFlow) through ``keras.utils.set_random_seed``. With the TensorFlow
    backend, TensorFlow is imported and its devices are listed here with the
    C++ start-up messages hidden (CUDA probing, oneDNN notices), which
    ``TF_CPP_MIN_LOG_LEVEL`` no longer silences in TensorFlow 2.21.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="keras")
    with _hidden_stderr():
        import keras

        devices = (
            _tensorflow_devices() if keras.backend.backend() == "tensorflow" else []
        )
    keras.utils.set_random_seed(seed)
    versions = [
        f"Python {platform.python_version()}",
        f"NumPy {np.__version__}",
        f"Keras {keras.__version__} (backend: {keras.backend.backend()})",
    ]
    if "tensorflow" in sys.modules:
        versions.append(f"TensorFlow {sys.modules['tensorflow'].__version__}")
    print(" | ".join(versions))
    if devices:
        print(f"TensorFlow devices: {', '.join(devices)}")
    print(f"Random seed {seed}; run size {workshop_size()!r}")


def _tensorflow_devices() -> list[str]:
    """Import TensorFlow, lower its Python log to errors, list its devices."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    return [
        device.name.removeprefix("/physical_device:")
        for device in tf.config.list_physical_devices()
    ]


@contextmanager
def _hidden_stderr() -> Iterator[None]:
    """Send the process's C-level standard error to /dev/null for a while.

    Python exceptions still propagate; only what native libraries print
    while the block runs is lost.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters)
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _in_jupyter() -> bool:
    """Return True inside a Jupyter kernel (where figures display inline)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and "IPKernelApp" in ipython.config


# --------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------


def data_dir() -> Path:
    """Return the download cache folder (``$WORKSHOP_DATA`` or ``data/``)."""
    folder = Path(os.environ.get("WORKSHOP_DATA") or REPO_ROOT / "data")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def output_dir() -> Path:
    """Return the output folder, ``$WORKSHOP_OUTPUT`` or ``output/``."""
    folder = Path(os.environ.get("WORKSHOP_OUTPUT") or REPO_ROOT / "output")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def show(fig: Any, name: str) -> None:
    """Display a matplotlib figure and save it as ``figures/<name>.png``.

    In Jupyter the figure appears inline. Run as a script, nothing blocks:
    the figure is only saved and its path printed. Either way the file lands
    in ``output_dir()/figures``, where the slide build collects it.
    """
    import matplotlib.pyplot as plt

    path = output_dir() / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    if _in_jupyter():
        plt.show()
    else:
        print(f"Saved figure {path}")
    plt.close(fig)


# --------------------------------------------------------------------------
# Dataset table and download
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """One row of ``data/datasets.csv``: a file the workshop downloads."""

    name: str
    path: str  # where the file lives in the cache and in a mirror
    size: int  # bytes
    sha256: str
    licence: str
    urls: tuple[str, ...]  # tried in order; "archive.zip#member" extracts member

    @property
    def filename(self) -> str:
        return Path(self.path).name


class DownloadError(RuntimeError):
    """A dataset file could not be obtained or failed verification."""


def datasets() -> dict[str, Dataset]:
    """Read the dataset table, ``data/datasets.csv``, keyed by name."""
    table: dict[str, Dataset] = {}
    with open(DATASETS_TABLE, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            table[row["name"]] = Dataset(
                name=row["name"],
                path=row["path"],
                size=int(row["size"]),
                sha256=row["sha256"].lower(),
                licence=row["licence"],
                urls=tuple(row["urls"].split()),
            )
    return table


def sha256sum(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, dataset: Dataset) -> str | None:
    """Return why ``path`` is not ``dataset``'s file, or None if it is."""
    size = path.stat().st_size
    if size != dataset.size:
        return f"size {size:,} bytes, expected {dataset.size:,}"
    digest = sha256sum(path)
    if digest != dataset.sha256:
        return f"sha256 {digest}, expected {dataset.sha256}"
    return None


def fetch(name: str, retries: int = 3, timeout: float = 30.0) -> Path:
    """Return the path of a verified dataset file, downloading it if needed.

    Looks in the cache (``data_dir()``) first, then in ``$WORKSHOP_MIRROR``,
    then at each public URL in turn. Every file is checked against the
    table's size and sha256 before it is returned; a cached file that fails
    the check is deleted and fetched again. Downloads go to ``<file>.part``
    and are renamed only once verified, so an interrupted or corrupt
    download is never mistaken for the real file. Transient network errors
    are retried ``retries`` times with growing pauses; an interrupted
    download resumes with an HTTP Range request where the server allows it.
    Raises DownloadError, naming every source tried and what to do.
    """
    table = datasets()
    if name not in table:
        raise KeyError(
            f"No dataset named {name!r} in {DATASETS_TABLE}; "
            f"known names: {', '.join(sorted(table))}"
        )
    dataset = table[name]
    target = data_dir() / dataset.path
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target):
        if target.exists():
            problem = _check_file(target, dataset)
            if problem is None:
                return target
            print(f"Cached {target} is invalid ({problem}); fetching it again.")
            target.unlink()
        failures: list[str] = []
        for source in _sources(dataset):
            try:
                _fetch_from(source, dataset, target, retries, timeout)
            except DownloadError as error:
                failures.append(f"  {source}: {error}")
                continue
            return target
    raise DownloadError(_failure_message(dataset, target, failures))


def _sources(dataset: Dataset) -> list[str]:
    """List where to look for a file: the mirror first, then public URLs."""
    sources = []
    mirror = os.environ.get("WORKSHOP_MIRROR", "").strip()
    if mirror:
        if "://" not in mirror:
            mirror = str(Path(mirror).expanduser().resolve())
        sources.append(mirror.rstrip("/") + "/" + dataset.path)
    sources.extend(dataset.urls)
    return sources


def _failure_message(dataset: Dataset, target: Path, failures: list[str]) -> str:
    lines = [
        f"Could not get dataset {dataset.name!r} "
        + f"({dataset.filename}, {dataset.size:,} bytes). Tried:",
        *failures,
        "What you can do:",
        "  - check the network connection and run the cell again (downloads resume);",
        f"  - or copy the file by hand to {target}"
        + " (it is checked against its sha256 before use);",
        f"  - or set WORKSHOP_MIRROR to a folder or URL that holds {dataset.path}.",
    ]
    if any("certificate" in failure.lower() for failure in failures):
        lines.append(
            "  - SSL certificate errors: point SSL_CERT_FILE at your site's CA "
            "bundle (e.g. /etc/pki/tls/certs/ca-bundle.crt on CERN machines)."
        )
    return "\n".join(lines)


@contextmanager
def _file_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock so two notebooks never write the same file."""
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, downloads still atomic
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_from(
    source: str, dataset: Dataset, target: Path, retries: int, timeout: float
) -> None:
    """Fetch ``dataset`` from one source into ``target``, verified, or raise."""
    url, _, member = source.partition("#")
    is_http = "://" in url and not url.startswith("file://")
    partial = target.with_name(target.name + ".part")
    try:
        if member:
            _fetch_archive_member(url, member, dataset, partial, retries, timeout)
        elif is_http:
            _download(url, partial, dataset.size, retries, timeout)
        else:
            _copy_local(Path(url.removeprefix("file://")), partial)
        problem = _check_file(partial, dataset)
        if problem is not None:
            partial.unlink()
            raise DownloadError(f"the file it gave is invalid ({problem})")
        os.replace(partial, target)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DownloadError(
                f"no space left on the device holding {target.parent}; "
                "free some space or set WORKSHOP_DATA to a larger folder"
            ) from error
        raise DownloadError(f"{type(error).__name__}: {error}") from error
    finally:
        # Only an incomplete HTTP download is kept, so the next try can resume
        # it; it is verified like any other file before it is ever used.
        if partial.exists():
            resumable = is_http and not member
            if not resumable or partial.stat().st_size >= dataset.size:
                partial.unlink()


def _copy_local(path: Path, partial: Path) -> None:
    if not path.is_file():
        raise DownloadError(f"not found: {path}")
    shutil.copyfile(path, partial)


def _fetch_archive_member(
    url: str, member: str, dataset: Dataset, partial: Path, retries: int, timeout: float
) -> None:
    """Extract ``member`` of the zip archive at ``url`` into ``partial``.

    A copy of the archive placed by hand in the cache folder or the mirror
    folder is used without a download; otherwise it is downloaded first.
    """
    archive_name = Path(url).name
    folder = Path(dataset.path).parent
    candidates = [data_dir() / folder / archive_name]
    mirror = os.environ.get("WORKSHOP_MIRROR", "").strip()
    if mirror and "://" not in mirror:
        candidates.append(Path(mirror).expanduser() / folder / archive_name)
    archive = next((path for path in candidates if path.is_file()), None)
    if archive is None:
        archive = candidates[0]
        partial_archive = archive.with_name(archive.name + ".part")
        _download(url, partial_archive, None, retries, timeout)
        os.replace(partial_archive, archive)
    try:
        with zipfile.ZipFile(archive) as zipped:
            if member not in zipped.namelist():
                raise DownloadError(
                    f"{archive} has no member {member!r}; it contains "
                    f"{', '.join(zipped.namelist()[:5])}"
                )
            with zipped.open(member) as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive} is not a valid zip archive: {error}") from error


_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}


def _download(
    url: str, partial: Path, size: int | None, retries: int, timeout: float
) -> None:
    """Download ``url`` into ``partial``, resuming and retrying as needed."""
    from tqdm.auto import tqdm

    attempt = 0
    while True:
        offset = partial.stat().st_size if partial.exists() else 0
        if size is not None and offset >= size:
            return
        request = urllib.request.Request(
            url, headers={"User-Agent": "tf-keras-workshop"}
        )
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:
                    offset = 0  # the server ignored the Range request
                mode = "ab" if offset else "wb"
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length and length.isdigit() else size
                with (
                    open(partial, mode) as sink,
                    tqdm(
                        total=total,
                        initial=offset,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=partial.name.removesuffix(".part"),
                        leave=False,
                    ) as bar,
                ):
                    while chunk := response.read(1 << 16):
                        sink.write(chunk)
                        bar.update(len(chunk))
                if length and length.isdigit():
                    received = partial.stat().st_size - offset
                    if received < int(length):
                        raise http.client.IncompleteRead(b"", int(length) - received)
            return
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset:
                partial.unlink()  # the leftover part no longer matches: restart
                continue
            if error.code not in _TRANSIENT_HTTP or attempt >= retries:
                raise DownloadError(f"HTTP {error.code} {error.reason}") from error
            reason = f"HTTP {error.code}"
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLError):
                raise DownloadError(
                    f"SSL certificate verification failed: {error.reason}"
                ) from error
            if attempt >= retries:
                raise DownloadError(f"connection failed: {error.reason}") from error
            reason = str(error.reason)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
            if attempt >= retries:
                raise DownloadError(
                    f"connection failed: {type(error).__name__} {error}"
                ) from error
            reason = type(error).__name__
        attempt += 1
        pause = 2.0 ** (attempt - 1)
        print(
            f"Download of {url} interrupted ({reason}); "
            + f"retry {attempt} of {retries} in {pause:.0f} s"
        )
        time.sleep(pause)


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the original MNIST format) into a uint8 array.

    The header is a magic number (0x0000, type 0x08 for unsigned bytes, the
    number of dimensions) followed by each dimension as a big-endian int32.
    """
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise ValueError(
            f"{path} holds {len(data) - header:,} data bytes, but its header "
            f"announces shape {shape} ({expected:,} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(
    size: str = "workshop", seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return MNIST as ``(x_train, y_train), (x_test, y_test)``.

    Images are float32 in [0, 1] with shape (n, 28, 28, 1); labels are uint8
    digits. The test set is always the 10,000 official test images. For the
    ``quick`` size the training set is 5,000 real training images, 500 per
    digit; that file is sorted by digit, so it is shuffled here with ``seed``
    (Keras' ``validation_split`` takes the last rows, which would otherwise
    all be nines). The other sizes use all 60,000 official training images.
    """
    x_test = read_idx(fetch("mnist-test-images"))
    y_test = read_idx(fetch("mnist-test-labels"))
    if size == "quick":
        x_train, y_train = _read_mnist_csv(fetch("mnist-5k"))
        order = np.random.default_rng(seed).permutation(len(y_train))
        x_train, y_train = x_train[order], y_train[order]
    else:
        x_train = read_idx(fetch("mnist-train-images"))
        y_train = read_idx(fetch("mnist-train-labels"))
    return (_scale_images(x_train), y_train), (_scale_images(x_test), y_test)


def _read_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST rows of 784 pixel values (0-255) followed by the label."""
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path} has shape {table.shape}; expected rows of 784 pixels and a label"
        )
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1]


def _scale_images(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


# --------------------------------------------------------------------------
# Your own digit: from an ordinary picture to an MNIST-like input
# --------------------------------------------------------------------------


def read_grey_image(source: str | Path) -> np.ndarray:
    """Read any picture Pillow can open as a float grey image in [0, 1].

    Handles the formats learners try: RGB, RGBA (transparent pixels count as
    white paper), palette, 16-bit grey, and animated files (first frame);
    photos are turned upright by their EXIF orientation. Raises ValueError
    for an empty file or one that is not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); save the picture again")
    try:
        with Image.open(path) as image:
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            return _to_grey(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"{path} is not an image that Pillow can read ({error}); "
            "use a PNG or JPEG file"
        ) from error


def _to_grey(image: Any) -> np.ndarray:
    """Convert a Pillow image of any mode to grey values in [0, 1]."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        return ((values - low) / (high - low) if high > low else values * 0).astype(
            np.float32
        )
    if image.mode == "P" or "A" in image.getbands() or image.mode == "LA":
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def mnist_like(
    grey: np.ndarray, box: int = 20, size: int = 28
) -> dict[str, np.ndarray]:
    """Turn a grey picture of one digit into a 28x28 MNIST-like image.

    MNIST digits are light strokes on a black background, scaled to fit a
    20x20 box and centred by their centre of mass in 28x28 pixels. The steps,
    returned in order so a notebook can show each one:

    ``inverted``: dark-on-light pictures (a bright border) are inverted;
    ``stretched``: the background level becomes 0 and the brightest ink 1;
    ``cropped``: the bounding box of the strokes; ``scaled``: the longer side
    resized to ``box`` pixels, keeping the aspect ratio; ``centred`` (the
    result): placed in ``size`` x ``size`` with the centre of mass in the
    middle. Raises ValueError if the picture holds no digit (uniform).
    """
    from PIL import Image

    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ValueError(f"Expected a 2-D grey image, got shape {grey.shape}")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    inverted = 1.0 - grey if np.median(border) > 0.5 else grey.copy()
    background = float(np.median(inverted))
    peak = float(inverted.max())
    if peak - background < 0.1:
        raise ValueError(
            "No digit found: the picture is almost uniform "
            f"(background {background:.2f}, brightest ink {peak:.2f})"
        )
    stretched = np.clip((inverted - background) / (peak - background), 0.0, 1.0)
    stretched[stretched < 0.2] = 0.0  # paper texture and shadows are not ink
    # The crop follows the strokes: pixels above half the ink level, after a
    # 3x3 median filter that removes isolated specks (dust, dithering, noise).
    from scipy import ndimage

    strokes = ndimage.median_filter(stretched, size=3) > 0.5
    if not strokes.any():
        strokes = stretched > 0.5
    rows = np.flatnonzero(strokes.any(axis=1))
    columns = np.flatnonzero(strokes.any(axis=0))
    cropped = stretched[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = cropped.shape
    scale = box / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = np.asarray(
        Image.fromarray(cropped).resize(new_size, Image.Resampling.LANCZOS)
    ).clip(0.0, 1.0)
    centred = np.zeros((size, size), dtype=np.float32)
    top, left = (size - scaled.shape[0]) // 2, (size - scaled.shape[1]) // 2
    centred[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
    centred = _centre_of_mass_shift(centred)
    return {
        "original": grey,
        "inverted": inverted,
        "stretched": stretched,
        "cropped": cropped,
        "scaled": scaled.astype(np.float32),
        "centred": centred,
    }


def _centre_of_mass_shift(image: np.ndarray) -> np.ndarray:
    """Shift an image by whole pixels so its centre of mass is in the middle."""
    from scipy import ndimage

    row, column = ndimage.center_of_mass(image)
    middle = (image.shape[0] - 1) / 2
    shift = (round(middle - row), round(middle - (column)))
    return ndimage.shift(image, shift, order=0, mode="constant", cval=0.0)


def prepare_digit(source: str | Path) -> np.ndarray:
    """Read a picture of one digit and return it as a (28, 28, 1) MNIST input."""
    return mnist_like(read_grey_image(source))["centred"][..., np.newaxis]


# --------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------


def plot_history(history: Any, metrics: Sequence[str] = ("loss", "accuracy")) -> Any:
    """Plot training and validation curves from a Keras ``History``.

    Accepts the ``History`` returned by ``fit`` or its ``.history`` dict, and
    draws one panel per metric, skipping metrics that were not recorded.
    """
    import matplotlib.pyplot as plt

    logs = getattr(history, "history", history)
    present = [metric for metric in metrics if metric in logs]
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5))
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, present, strict=True):
        epochs = np.arange(1, len(logs[metric]) + 1)
        ax.plot(epochs, logs[metric], "o-", label="training")
        if f"val_{metric}" in logs:
            ax.plot(epochs, logs[f"val_{metric}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_digits(
    images: np.ndarray,
    labels: Sequence[int],
    predictions: Sequence[int] | None = None,
    columns: int = 8,
) -> Any:
    """Show digit images in a grid, titled with their labels.

    With ``predictions``, each title reads ``label→prediction`` and wrong
    predictions are drawn in red.
    """
    import matplotlib.pyplot as plt

    count = len(images)
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(np.squeeze(images[i]), cmap="gray_r", vmin=0, vmax=1)
        title, colour = f"{labels[i]}", "black"
        if predictions is not None:
            title = f"{labels[i]}→{predictions[i]}"
            colour = "black" if labels[i] == predictions[i] else "red"
        ax.set_title(title, color=colour, fontsize=10)
    fig.tight_layout()
    return fig


def plot_probabilities(
    probabilities: np.ndarray, image: np.ndarray | None = None
) -> Any:
    """Draw a bar chart of the ten class probabilities, beside the image if given."""
    import matplotlib.pyplot as plt

    probabilities = np.asarray(probabilities).ravel()
    panels = 2 if image is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels + 2, 3))
    axes = np.atleast_1d(axes)
    if image is not None:
        axes[0].imshow(np.squeeze(image), cmap="gray_r", vmin=0, vmax=1)
        axes[0].axis("off")
        axes[0].set_title("network input")
    bars = axes[-1]
    colours = ["tab:blue"] * len(probabilities)
    colours[int(np.argmax(probabilities))] = "tab:orange"
    bars.bar(np.arange(len(probabilities)), probabilities, color=colours)
    bars.set_xticks(np.arange(len(probabilities)))
    bars.set_xlabel("digit")
    bars.set_ylabel("probability")
    bars.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def plot_decision_boundary(
    predict: Callable[[np.ndarray], Any],
    x: np.ndarray | None,
    y: np.ndarray | None,
    ax: Any = None,
    title: str | None = None,
    grid_points: int = 200,
) -> Any:
    """Colour the input plane by the signal probability of a 2-input classifier.

    ``predict`` takes an (n, 2) float32 array and returns n probabilities.
    The plane spans the points ``x`` (with a margin), or [-0.5, 1.5]² without
    points. Points are drawn on top, coloured by their 0/1 labels ``y``; the
    0.5 contour is the decision boundary.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    if x is not None and len(x):
        low, high = x.min(axis=0), x.max(axis=0)
        margin = 0.1 * (high - low)
        low, high = low - margin, high + margin
    else:
        low, high = np.array([-0.5, -0.5]), np.array([1.5, 1.5])
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0], high[0], grid_points),
        np.linspace(low[1], high[1], grid_points),
    )
    plane = np.column_stack([grid_x.ravel(), grid_y.ravel()]).astype(np.float32)
    scores = np.asarray(predict(plane), dtype=np.float32).reshape(grid_x.shape)
    image = ax.contourf(
        grid_x, grid_y, scores, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8
    )
    ax.contour(grid_x, grid_y, scores, levels=[0.5], colors="black", linewidths=1.5)
    fig.colorbar(image, ax=ax, label="signal probability")
    if x is not None and y is not None:
        labels = np.asarray(y).ravel()
        for value, colour, name in (
            (0, "tab:blue", "background"),
            (1, "tab:red", "signal"),
        ):
            chosen = labels == value
            ax.scatter(
                x[chosen, 0],
                x[chosen, 1],
                s=8,
                c=colour,
                edgecolors="white",
                linewidths=0.3,
                label=name,
            )
        ax.legend(loc="upper left")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return fig


def make_gaussian_blobs(
    n_events: int, separation: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw signal and background events from two 2-D Gaussians.

    Both have unit width; their centres lie on the diagonal, ``separation``
    apart, signal at +``separation``/2 and background at -``separation``/2
    along it. Returns ``x`` (float32, shape (n, 2)) and ``y`` (float32, 1 for
    signal, 0 for background), shuffled, half of each.
    """
    rng = np.random.default_rng(seed)
    centre = np.full(2, separation / 2 / np.sqrt(2))
    n_signal = n_events // 2
    signal = rng.normal(size=(n_signal, 2)) + centre
    background = rng.normal(size=(n_events - n_signal, 2)) - centre
    x = np.concatenate([signal, background]).astype(np.float32)
    y = np.concatenate([np.ones(n_signal), np.zeros(n_events - n_signal)]).astype(
        np.float32
    )
    order = rng.permutation(n_events)
    return x[order], y[order]


# --------------------------------------------------------------------------
# Command line: python common.py fetch [--size SIZE] [NAME ...]
# --------------------------------------------------------------------------

DATA_FOR_SIZE = {
    "quick": ("mnist-5k", "mnist-test-images", "mnist-test-labels"),
    "workshop": (
        "mnist-train-images",
        "mnist-train-labels",
        "mnist-test-images",
        "mnist-test-labels",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch datasets from the command line, as ``make data`` does."""
    import argparse

    parser = argparse.ArgumentParser(description="Fetch and verify workshop datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download and verify datasets")
    fetch_parser.add_argument(
        "names", nargs="*", help="dataset names from data/datasets.csv"
    )
    fetch_parser.add_argument(
        "--size", choices=SIZES, help="fetch every dataset this run size needs"
    )
    commands.add_parser("list", help="list the dataset table")
    args = parser.parse_args(argv)
    if args.command == "list":
        for dataset in datasets().values():
            print(f"{dataset.name:24} {dataset.size:>14,} B  {dataset.licence}")
        return 0
    names = list(args.names)
    if args.size:
        names += [
            name for name in DATA_FOR_SIZE.get(args.size, ()) if name not in names
        ]
    try:
        for name in names:
            print(f"{name}: {fetch(name)}")
    except DownloadError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    A local folder or an ``http(s)://`` URL that contains the dataset files under
    their table paths (for example ``mnist/t10k-labels-idx1-ubyte.gz``); it is
    tried before the public URLs.
``WORKSHOP_OUTPUT``
    Folder for models, figures and files passed between notebooks (default:
    ``output/`` in the repository).

Relative paths in these variables are taken from the repository root.
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import http.client
import os
import platform
import re
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
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
    ignored = []
    for i, arg in enumerate(argv):
        if arg == "--size":
            if i + 1 == len(argv) or argv[i + 1].startswith("-"):
                raise ValueError(
                    f"--size needs a value: one of {', '.join(SIZES)}, "
                    "e.g. --size quick"
                )
            size = argv[i + 1]
        elif arg.startswith("--size="):
            size = arg.split("=", 1)[1]
        elif arg.startswith("-") and (i == 0 or argv[i - 1] != "--size"):
            ignored.append(arg)
    # A Jupyter kernel's own arguments (-f connection file) are not the learner's.
    if ignored and "ipykernel" not in sys.modules:
        print(
            f"Ignoring the unknown option(s) {' '.join(ignored)}: notebooks run as "
            f"scripts read only --size {'|'.join(SIZES)}"
        )
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
    _check_versions(keras.__version__, sys.modules.get("tensorflow"))
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


# The oldest releases the tests run on (requirements-oldest.txt).
OLDEST_TESTED = {"Keras": (3, 3), "TensorFlow": (2, 16)}
VERSION_FIX = (
    "On SWAN, pick a newer software stack, or run once in a SWAN terminal "
    "`pip install --user -r requirements-swan.txt` and start the session with "
    "the option to use packages installed on CERNBox. Elsewhere, run "
    "./init_virtualenv.sh and use its kernel."
)


def _check_versions(keras_version: str, tensorflow: Any = None) -> None:
    """Raise for Keras 2; warn for releases older than the tested ones."""
    found = {"Keras": keras_version}
    if tensorflow is not None:
        found["TensorFlow"] = tensorflow.__version__
    if _major_minor(keras_version) < (3, 0):
        raise RuntimeError(
            f"Keras {keras_version} is Keras 2, but the notebooks need Keras 3 "
            f"(TensorFlow 2.16 or newer). {VERSION_FIX}"
        )
    for name, version in found.items():
        oldest = OLDEST_TESTED[name]
        if _major_minor(version) < oldest:
            print(
                f"WARNING: {name} {version} is older than the oldest tested release "
                f"({name} {oldest[0]}.{oldest[1]}); if a cell fails: {VERSION_FIX}"
            )


def _major_minor(version: str) -> tuple[int, int]:
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]]
    return (numbers + [0, 0])[0], (numbers + [0, 0])[1]


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


def _setting_path(variable: str) -> Path | None:
    """Return the folder named by an environment variable, or None if unset.

    A relative path is taken from the repository root, not from the current
    folder: notebooks run in tensorflow/ or keras/, while ``make`` and a
    learner's shell usually start in the root.
    """
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    return (REPO_ROOT / Path(value).expanduser()).resolve()


def data_dir() -> Path:
    """Return the download cache folder (``$WORKSHOP_DATA`` or ``data/``)."""
    folder = _setting_path("WORKSHOP_DATA") or REPO_ROOT / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def output_dir() -> Path:
    """Return the output folder, ``$WORKSHOP_OUTPUT`` or ``output/``."""
    folder = _setting_path("WORKSHOP_OUTPUT") or REPO_ROOT / "output"
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


class NoSpaceError(DownloadError):
    """The disk that contains the download cache is full."""


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
    table's size and sha256 before it is returned, and a cached file that
    fails the check is deleted and fetched again. Downloads go to
    ``<file>.part`` and are renamed only once verified, so an interrupted or
    corrupt download is never mistaken for the real file. Transient network
    errors (time-outs, resets, HTTP 5xx) are retried ``retries`` times with
    growing pauses, but a failed host name lookup is not. An interrupted
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
            except NoSpaceError:
                raise  # every other source would fail the same way
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
            mirror = str(_setting_path("WORKSHOP_MIRROR"))
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
        f"  - or set WORKSHOP_MIRROR to a folder or URL that contains {dataset.path}.",
    ]
    if any("certificate" in failure.lower() for failure in failures):
        lines.append(
            "  - SSL certificate errors: point SSL_CERT_FILE at your site's CA "
            "bundle (e.g. /etc/pki/tls/certs/ca-bundle.crt on CERN machines)."
        )
    return "\n".join(lines)


@contextmanager
def _file_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock so two processes do not write the same file.

    Where the file system does not support ``flock``, a note is printed and
    the block runs without a lock.
    """
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, downloads still atomic
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:
            # NOTE: some network and FUSE file systems reject flock; whether
            # EOS (CERNBox on SWAN) does is unchecked. Without the lock two
            # processes may write one .part file, and the checksum rejects it.
            if error.errno not in _NO_LOCKS:
                raise
            print(
                f"Note: no file locks on the file system of {lock_path.parent} "
                f"({error.strerror}); run one download at a time there."
            )
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_NO_LOCKS = {errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


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
            resumed = partial.exists()
            _download(url, partial, dataset.size, retries, timeout)
            if resumed and _check_file(partial, dataset) is not None:
                # The leftover part may have come from another, broken source:
                # download the whole file once more before blaming this one.
                partial.unlink()
                _download(url, partial, dataset.size, retries, timeout)
        else:
            _copy_local(Path(url.removeprefix("file://")), partial)
        problem = _check_file(partial, dataset)
        if problem is not None:
            partial.unlink()
            raise DownloadError(f"the file it gave is invalid ({problem})")
        os.replace(partial, target)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(
                f"Could not save dataset {dataset.name!r}: no space left on the "
                f"device holding {target.parent} ({error.strerror}). Free some "
                "space or set WORKSHOP_DATA to a folder on a larger disk."
            ) from error
        raise DownloadError(f"{type(error).__name__}: {error}") from error
    finally:
        # Only an incomplete HTTP download is kept, so the next try can resume
        # it. Like any other file, it is verified before it is ever used.
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
    folder is used without a download. Otherwise the archive is downloaded first.
    """
    archive_name = Path(url).name
    folder = Path(dataset.path).parent
    candidates = [data_dir() / folder / archive_name]
    mirror = os.environ.get("WORKSHOP_MIRROR", "").strip()
    if mirror and "://" not in mirror:
        candidates.append(_setting_path("WORKSHOP_MIRROR") / folder / archive_name)
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
    except (zipfile.BadZipFile, DownloadError) as error:
        # A damaged archive in the cache would fail every later call too, so it
        # is deleted. A copy in a mirror folder is left to the person who made it.
        if archive == candidates[0]:
            archive.unlink(missing_ok=True)
        if isinstance(error, DownloadError):
            raise
        raise DownloadError(f"{archive} is not a valid zip archive: {error}") from error


def _progress_bar_class() -> Any:
    """Return tqdm's notebook bar in Jupyter and its text bar elsewhere.

    Without ipywidgets, ``tqdm.auto`` falls back to the text bar and warns
    about it; the warning is suppressed because the text bar works fine.
    """
    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    return tqdm


_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}


def _download(
    url: str, partial: Path, size: int | None, retries: int, timeout: float
) -> None:
    """Download ``url`` into ``partial``, resuming and retrying as needed."""
    tqdm = _progress_bar_class()
    attempt = 0
    while True:
        offset = partial.stat().st_size if partial.exists() else 0
        if size is not None and offset == size:
            return
        if size is not None and offset > size:
            partial.unlink()  # longer than the file can be: not a prefix of it
            offset = 0
        request = urllib.request.Request(
            url, headers={"User-Agent": "tf-keras-workshop"}
        )
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:
                    offset = 0  # the server ignored the Range request
                elif offset and not _continues_at(response, offset):
                    partial.unlink()  # a range we did not request: start over
                    continue
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
            if isinstance(error.reason, ssl.SSLCertVerificationError):
                raise DownloadError(
                    f"SSL certificate verification failed: {error.reason}. "
                    "If your network intercepts HTTPS, set SSL_CERT_FILE to your "
                    "site's CA bundle; verification stays on."
                ) from error
            if isinstance(error.reason, ssl.SSLError):
                raise DownloadError(f"SSL error: {error.reason}") from error
            if isinstance(error.reason, socket.gaierror):
                # No DNS answer: offline or a wrong host name; retrying won't help.
                raise DownloadError(
                    f"host name lookup failed ({error.reason}); are you offline?"
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


def _continues_at(response: Any, offset: int) -> bool:
    """Return True if the 206 ``response`` continues the file at ``offset``."""
    content_range = response.headers.get("Content-Range", "")
    unit, _, span = content_range.partition(" ")
    start = span.split("-", 1)[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the original MNIST format) into a uint8 array.

    The header is a magic number (0x0000, type 0x08 for unsigned bytes, the
    number of dimensions) followed by each dimension as a big-endian int32.
    """
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile) as error:
        raise ValueError(
            f"{path} is not a complete gzip file ({error}); delete it and fetch "
            "it again with common.fetch"
        ) from error
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
            f"{path} contains {len(data) - header:,} data bytes, but its header "
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
            grey = _to_grey(image)
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"{path} has more pixels than Pillow opens safely ({error}); "
            f"save it at most {MAX_IMAGE_SIDE} pixels wide and high"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"{path} is not an image that Pillow can read ({error}); "
            "use a PNG or JPEG file"
        ) from error
    return _shrink(grey, MAX_IMAGE_SIDE)


# Larger pictures (phone photos) are shrunk to this many pixels on their
# longer side before preprocessing: the digit ends up 20 pixels high anyway,
# and the median filter on 12 megapixels would take seconds.
MAX_IMAGE_SIDE = 1024


def _shrink(grey: np.ndarray, max_side: int) -> np.ndarray:
    """Resize a grey image so its longer side is at most ``max_side`` pixels."""
    from PIL import Image

    height, width = grey.shape
    if max(height, width) <= max_side:
        return grey
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrunk = Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(shrunk, dtype=np.float32).clip(0.0, 1.0)


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
    ``stretched``: the paper level (the median of the border) becomes 0 and the
    brightest ink 1;
    ``cropped``: the bounding box of the strokes; ``scaled``: the longer side
    resized to ``box`` pixels, keeping the aspect ratio; ``centred`` (the
    result): placed in ``size`` x ``size`` with the centre of mass in the
    middle. Raises ValueError if the picture contains no digit (uniform).
    """
    from PIL import Image

    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ValueError(f"Expected a 2-D grey image, got shape {grey.shape}")
    if not np.isfinite(grey).all():
        raise ValueError("The grey image contains NaN or infinite values")
    grey = grey.clip(0.0, 1.0)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    dark_on_light = np.median(border) > 0.5
    inverted = 1.0 - grey if dark_on_light else grey.copy()
    # The paper level comes from the border, which a digit rarely fills; the
    # median of the whole picture would be ink for a bold, tightly cropped one.
    background = float(np.median(1.0 - border if dark_on_light else border))
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


def load_digit_model(path: str | Path) -> Any:
    """Load the network that ``mnist_train.ipynb`` saved and check its shape.

    Raises FileNotFoundError if nothing is at ``path``, and ValueError with
    the Keras versions involved when Keras cannot load the file (a TensorFlow
    SavedModel folder, a damaged file, a file from another Keras release), or
    when the model does not map 28x28x1 images to 10 classes (a model saved
    by another notebook).
    """
    import keras

    path = Path(path)
    retrain = "run mnist_train.ipynb in this environment to save one it can load"
    if not path.exists():
        raise FileNotFoundError(f"No trained model at {path}: run mnist_train.ipynb")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder (a TensorFlow SavedModel?), which Keras "
            f"{keras.__version__} cannot load as a model; {retrain}"
        )
    saved_by = _saved_keras_version(path)
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for foreign files
        origin = f", saved by Keras {saved_by}" if saved_by else ""
        raise ValueError(
            f"Keras {keras.__version__} could not load {path}{origin}: "
            f"{type(error).__name__}: {error}. {retrain.capitalize()}."
        ) from error
    expected_input, expected_output = (None, 28, 28, 1), (None, 10)
    if model.input_shape != expected_input or model.output_shape != expected_output:
        raise ValueError(
            f"{path} contains the model {model.name!r} with input shape "
            f"{model.input_shape} and output shape {model.output_shape}, but the "
            f"MNIST network maps {expected_input} to {expected_output}; is it "
            "from another notebook? Point to mnist_convnet.keras"
        )
    return model


def _saved_keras_version(path: Path) -> str | None:
    """Return the Keras version recorded in a .keras or .h5 file, if any."""
    import json

    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                metadata = json.loads(archive.read("metadata.json"))
            return str(metadata.get("keras_version")) or None
        except (KeyError, ValueError, OSError, zipfile.BadZipFile):
            return None
    try:
        import h5py

        with h5py.File(path, "r") as h5:
            version = h5.attrs.get("keras_version")
    except OSError:
        return None
    if isinstance(version, bytes):
        version = version.decode()
    return str(version) if version is not None else None


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
# HIGGS (UCI; Baldi, Sadowski and Whiteson, Nat. Commun. 5, 4308 (2014))
# --------------------------------------------------------------------------

# Column names in HIGGS order: 21 low-level features (lepton, missing energy
# and four jets), then 7 high-level invariant masses built from them.
HIGGS_FEATURES: tuple[str, ...] = (
    "lepton_pt",
    "lepton_eta",
    "lepton_phi",
    "missing_energy_magnitude",
    "missing_energy_phi",
    "jet_1_pt",
    "jet_1_eta",
    "jet_1_phi",
    "jet_1_btag",
    "jet_2_pt",
    "jet_2_eta",
    "jet_2_phi",
    "jet_2_btag",
    "jet_3_pt",
    "jet_3_eta",
    "jet_3_phi",
    "jet_3_btag",
    "jet_4_pt",
    "jet_4_eta",
    "jet_4_phi",
    "jet_4_btag",
    "m_jj",
    "m_jjj",
    "m_lv",
    "m_jlv",
    "m_bb",
    "m_wbb",
    "m_wwbb",
)
LOW_LEVEL = slice(0, 21)
HIGH_LEVEL = slice(21, 28)
HIGGS_FEATURE_SETS = {"all": slice(0, 28), "low": LOW_LEVEL, "high": HIGH_LEVEL}

# Test set of Baldi, Sadowski and Whiteson: the last 500,000 of 11,000,000 events.
HIGGS_TEST_EVENTS = 500_000
HIGGS_CHUNK_ROWS = 16_384  # HDF5 chunk height: 16,384 rows x 28 floats = 1.8 MB
HIGGS_FORMAT_VERSION = 1  # stored in each .h5 file; bump it to rebuild old caches


class HiggsFormatError(ValueError):
    """A HIGGS text file does not have the expected layout."""


@dataclass(frozen=True)
class HiggsLayout:
    """Layout of one HIGGS text file: separator, header and label position."""

    delimiter: str
    header: bool  # True: the first line contains the column names
    label_first: bool  # True: label, then 28 features; False: features, then label
    rows: int | None  # number of events in the file, checked when known

    def describe(self) -> str:
        """Describe the layout in words, for error messages."""
        separator = {",": "comma", "\t": "tab"}.get(
            self.delimiter, repr(self.delimiter)
        )
        order = "the label first" if self.label_first else "the label last"
        header = "a header line" if self.header else "no header"
        return f"{separator}-separated, {header}, 29 columns with {order}"


# The layout of every HIGGS file in the dataset table.
HIGGS_LAYOUTS: dict[str, HiggsLayout] = {
    "higgs": HiggsLayout(",", header=False, label_first=True, rows=11_000_000),
    "higgs-sample-train": HiggsLayout("\t", header=False, label_first=True, rows=7000),
    "higgs-sample-test": HiggsLayout("\t", header=False, label_first=True, rows=500),
    "higgs-sample-csv": HiggsLayout(",", header=True, label_first=False, rows=10_984),
}

# Quick size: training events from the LightGBM sample (HIGGS rows 1-7,500),
# test events from the independent 0.1% sample of the whole file.
HIGGS_QUICK_TRAIN = ("higgs-sample-train", "higgs-sample-test")
HIGGS_QUICK_TEST = ("higgs-sample-csv",)


def higgs_hdf5(size: str) -> Path:
    """Fetch the HIGGS events for ``size`` and return their HDF5 file.

    ``quick`` converts the three real samples into ``higgs/higgs-quick.h5``.
    ``workshop`` and ``full`` both convert the full ``HIGGS.csv.gz`` (2.8 GB)
    into ``higgs/HIGGS.h5``. The workshop size takes its subset only when
    loading. The conversion runs once: a cached file is reused while it
    is complete and was built from the files the dataset table lists, and is
    rebuilt otherwise (for example after an interrupted conversion).

    The file contains groups ``/train`` and ``/test``, each with ``features``
    (float32, shape (n, 28), columns in ``HIGGS_FEATURES`` order, chunked
    along rows) and ``labels`` (float32, shape (n,), 1 for signal). Root
    attributes: ``feature_names``, ``source`` and ``source_sha256`` (the file
    names and checksums of the inputs, joined with ", "), ``complete``.
    """
    if size not in SIZES:
        raise ValueError(f"Unknown size {size!r}: choose one of {', '.join(SIZES)}")
    table = datasets()
    if size == "quick":
        names = HIGGS_QUICK_TRAIN + HIGGS_QUICK_TEST
        target = data_dir() / "higgs" / "higgs-quick.h5"
    else:
        names = ("higgs",)
        target = data_dir() / "higgs" / "HIGGS.h5"
    expected_sha256 = ", ".join(table[name].sha256 for name in names)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target):
        problem = _check_higgs_hdf5(target, expected_sha256)
        if problem is None:
            return target
        if target.exists():
            print(f"Cached {target} is invalid ({problem}); converting again.")
            target.unlink()
        sources = [fetch(name) for name in names]
        if size == "quick":
            _convert_higgs_samples(sources, target)
        else:
            convert_higgs_csv(sources[0], target, HIGGS_LAYOUTS["higgs"])
    return target


def _check_higgs_hdf5(path: Path, expected_sha256: str) -> str | None:
    """Return why ``path`` is not a usable HIGGS HDF5 file, or None if it is."""
    import h5py

    if not path.exists():
        return "missing"
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("complete") != 1:
                return "incomplete conversion"
            if h5.attrs.get("format_version") != HIGGS_FORMAT_VERSION:
                return "old format version"
            if h5.attrs.get("source_sha256") != expected_sha256:
                return "built from other input files"
            for group in ("train", "test"):
                rows = h5[f"{group}/features"].shape[0]
                if h5[f"{group}/labels"].shape != (rows,):
                    return f"/{group} has unequal feature and label rows"
    except (OSError, KeyError) as error:
        return f"unreadable: {error}"
    return None


def load_higgs(
    size: str,
    features: str = "all",
    *,
    train_events: int | None = None,
    test_events: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return HIGGS events as ``(x_train, y_train), (x_test, y_test)``.

    ``features`` picks the columns: ``all`` (28), ``low`` (the 21 low-level
    ones) or ``high`` (the 7 high-level ones). ``train_events`` and
    ``test_events`` keep only the first events of each set, and only those
    are read from disk. Arrays are float32; labels are 1 for signal.
    """
    import h5py

    if features not in HIGGS_FEATURE_SETS:
        raise ValueError(
            f"Unknown feature set {features!r}: choose one of "
            f"{', '.join(HIGGS_FEATURE_SETS)}"
        )
    columns = HIGGS_FEATURE_SETS[features]
    path = higgs_hdf5(size)
    arrays = []
    with h5py.File(path, "r") as h5:
        for group, limit in (("train", train_events), ("test", test_events)):
            stored = h5[f"{group}/labels"].shape[0]
            rows = stored if limit is None else min(limit, stored)
            x = h5[f"{group}/features"][:rows, columns]
            y = h5[f"{group}/labels"][:rows]
            arrays.append((x, y))
    return arrays[0], arrays[1]


def read_higgs_text(
    path: Path, layout: HiggsLayout, chunk_bytes: int = 1 << 24
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Parse a HIGGS text file (plain or gzipped) in chunks of about ``chunk_bytes``.

    Yields ``(features, labels)``: float32 arrays of shape (k, 28) and (k,).
    The first rows are checked against ``layout`` before anything is parsed,
    and every row must have 29 numbers and a label of 0 or 1. Raises
    HiggsFormatError naming the file, what it found and what was expected.
    A progress bar follows the bytes read from disk.
    """
    tqdm = _progress_bar_class()
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream: Any = gzip.GzipFile(fileobj=raw) if is_gzip else raw
        line_number = 1  # of the first line in the current block, for messages
        rest = b""
        first_block = True
        with tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"Reading {path.name}",
            leave=False,
        ) as bar:
            while True:
                try:
                    block = stream.read(chunk_bytes)
                except (EOFError, OSError, zlib.error) as error:
                    raise HiggsFormatError(
                        f"{path} is a truncated or damaged gzip file ({error}); "
                        "delete it and fetch it again"
                    ) from error
                bar.update(raw.tell() - bar.n)
                data = rest + block
                if block:
                    cut = data.rfind(b"\n") + 1
                    data, rest = data[:cut], data[cut:]
                if first_block and data:
                    header_lines = _check_higgs_start(path, layout, data)
                    data = data.split(b"\n", header_lines)[-1] if header_lines else data
                    line_number += header_lines
                    first_block = False
                if data.strip():
                    yield _parse_higgs_block(path, layout, data, line_number)
                    line_number += data.count(b"\n")
                if not block:
                    break
        if first_block:
            raise HiggsFormatError(f"{path} is empty; expected {layout.describe()}")


def _check_higgs_start(path: Path, layout: HiggsLayout, data: bytes) -> int:
    """Check the first lines of a file against ``layout``; return header lines."""
    lines = data.decode("utf-8", errors="replace").splitlines()[:6]
    expected = f"expected {layout.describe()}"
    first = lines[0]
    if layout.header:
        names = [name.strip().lower() for name in first.split(layout.delimiter)]
        expected_names = list(HIGGS_FEATURES)
        if layout.label_first:
            expected_names = ["label", *expected_names]
        else:
            expected_names = [*expected_names, "label"]
        if names != expected_names:
            raise HiggsFormatError(
                f"{path}: the first line is not the expected header; found "
                f"{first[:120]!r}; {expected}, the header naming the 28 features "
                "and 'label'"
            )
        lines = lines[1:]
    for offset, line in enumerate(lines[:5]):
        number = offset + 1 + int(layout.header)
        fields = line.split(layout.delimiter)
        if len(fields) != 29:
            separators = {"comma": ",", "tab": "\t", "semicolon": ";", "space": " "}
            counts = ", ".join(
                f"{line.count(char)} {name}s"
                for name, char in separators.items()
                if line.count(char)
            )
            raise HiggsFormatError(
                f"{path}: line {number} has {len(fields)} field(s) when split at "
                f"{layout.delimiter!r} (it contains {counts or 'no separators'}); "
                f"{expected}. Line {number} starts {line[:80]!r}"
            )
        try:
            [float(field) for field in fields]
        except ValueError:
            kind = "a header line" if number == 1 else "a field that is not a number"
            raise HiggsFormatError(
                f"{path}: line {number} contains {kind}: {line[:80]!r}; {expected}"
            ) from None
    return int(layout.header)


def _parse_higgs_block(
    path: Path, layout: HiggsLayout, data: bytes, line_number: int
) -> tuple[np.ndarray, np.ndarray]:
    """Parse complete lines of text into float32 features and labels."""
    lines = data.decode("ascii", errors="replace").splitlines()
    try:
        table = np.loadtxt(lines, delimiter=layout.delimiter, dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise HiggsFormatError(
            f"{path}: invalid row in the lines from line {line_number} on: {error}; "
            f"expected {layout.describe()}"
        ) from None
    if table.shape[1] != 29:
        raise HiggsFormatError(
            f"{path}: rows from line {line_number} on have {table.shape[1]} "
            f"columns; expected {layout.describe()}"
        )
    label_column = 0 if layout.label_first else 28
    labels = table[:, label_column]
    invalid = np.flatnonzero((labels != 0) & (labels != 1))
    if invalid.size:
        raise HiggsFormatError(
            f"{path}: the label of the event on about line "
            f"{line_number + int(invalid[0])} is {labels[invalid[0]]}, not 0 or 1; "
            f"expected {layout.describe()}"
        )
    features = table[:, 1:] if layout.label_first else table[:, :28]
    return np.ascontiguousarray(features), np.ascontiguousarray(labels)


class _HiggsWriter:
    """Append events to the ``/train`` and ``/test`` groups of an open HDF5 file."""

    def __init__(self, h5: Any) -> None:
        self.h5 = h5
        h5.attrs["feature_names"] = list(HIGGS_FEATURES)
        for group in ("train", "test"):
            h5.create_dataset(
                f"{group}/features",
                shape=(0, 28),
                maxshape=(None, 28),
                dtype="float32",
                chunks=(HIGGS_CHUNK_ROWS, 28),
            )
            h5.create_dataset(
                f"{group}/labels",
                shape=(0,),
                maxshape=(None,),
                dtype="float32",
                chunks=(HIGGS_CHUNK_ROWS,),
            )

    def append(self, group: str, features: np.ndarray, labels: np.ndarray) -> None:
        x, y = self.h5[f"{group}/features"], self.h5[f"{group}/labels"]
        start = x.shape[0]
        x.resize(start + len(features), axis=0)
        y.resize(start + len(labels), axis=0)
        x[start:] = features
        y[start:] = labels

    def finish(self, sources: Sequence[Path]) -> None:
        """Record the inputs and mark the file complete (the last write)."""
        self.h5.attrs["source"] = ", ".join(path.name for path in sources)
        self.h5.attrs["source_sha256"] = ", ".join(sha256sum(p) for p in sources)
        self.h5.attrs["format_version"] = HIGGS_FORMAT_VERSION
        self.h5.attrs["complete"] = 1


def convert_higgs_csv(
    source: Path,
    target: Path,
    layout: HiggsLayout,
    test_events: int | None = None,
    chunk_bytes: int = 1 << 24,
) -> Path:
    """Convert a HIGGS text file into the HDF5 layout of ``higgs_hdf5``.

    The last ``test_events`` rows (default ``HIGGS_TEST_EVENTS``, the paper's
    test set) go to ``/test`` and all earlier rows to ``/train``, in file
    order. The file is streamed, so memory keeps at most the test events
    (58 MB for 500,000) and a few copies of one text chunk, whatever the
    file size: ``benchmarks/higgs_conversion.py`` measured a peak of about
    250 MB on Linux, of which 50 MB are the imports. The
    output is written to ``<target>.part`` and renamed only when complete.
    Raises HiggsFormatError for a file of another layout, or when the row
    count differs from ``layout.rows``.

    NOTE: the tests and the benchmark run this on generated files in the
    full file's format; the real 2.8 GB ``HIGGS.csv.gz`` was not available
    to them.
    """
    from collections import deque

    import h5py

    test_events = HIGGS_TEST_EVENTS if test_events is None else test_events
    partial = target.with_name(target.name + ".part")
    pending: deque[tuple[np.ndarray, np.ndarray]] = deque()
    pending_rows = 0
    total = 0
    try:
        with h5py.File(partial, "w") as h5:
            writer = _HiggsWriter(h5)
            for features, labels in read_higgs_text(source, layout, chunk_bytes):
                pending.append((features, labels))
                pending_rows += len(labels)
                total += len(labels)
                # Older chunks cannot be among the last test_events rows.
                while pending_rows - len(pending[0][1]) >= test_events:
                    old_features, old_labels = pending.popleft()
                    pending_rows -= len(old_labels)
                    writer.append("train", old_features, old_labels)
            if layout.rows is not None and total != layout.rows:
                raise HiggsFormatError(
                    f"{source} contains {total:,} events; expected {layout.rows:,}"
                )
            if total <= test_events:
                raise HiggsFormatError(
                    f"{source} contains {total:,} events, too few to keep the last "
                    f"{test_events:,} as a test set and train on the rest"
                )
            train_left = pending_rows - test_events
            while pending:
                features, labels = pending.popleft()
                split = min(train_left, len(labels))
                if split > 0:
                    writer.append("train", features[:split], labels[:split])
                if split < len(labels):
                    writer.append("test", features[split:], labels[split:])
                train_left -= split
            writer.finish([source])
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    print(f"Converted {total:,} events from {source.name} into {target}")
    return target


def _convert_higgs_samples(sources: Sequence[Path], target: Path) -> None:
    """Build the quick-size HDF5 file from the three real HIGGS samples.

    Training events: ``binary.train`` then ``binary.test`` (HIGGS rows 1 to
    7,500, at 3 decimals). Test events: ``higgs.csv`` (a random 0.1% sample,
    at 9 decimals), without its repeated row. Events of the training files
    that also appear in the test sample are dropped from training, so the two
    sets never share an event.
    """
    import h5py

    names = HIGGS_QUICK_TRAIN + HIGGS_QUICK_TEST
    parsed = {}
    for name, path in zip(names, sources, strict=True):
        layout = HIGGS_LAYOUTS[name]
        chunks = list(read_higgs_text(path, layout))
        features = np.concatenate([chunk[0] for chunk in chunks])
        labels = np.concatenate([chunk[1] for chunk in chunks])
        if layout.rows is not None and len(labels) != layout.rows:
            raise HiggsFormatError(
                f"{path} contains {len(labels):,} events; expected {layout.rows:,}"
            )
        parsed[name] = (features, labels)
    x_train = np.concatenate([parsed[name][0] for name in HIGGS_QUICK_TRAIN])
    y_train = np.concatenate([parsed[name][1] for name in HIGGS_QUICK_TRAIN])
    x_test, y_test = parsed[HIGGS_QUICK_TEST[0]]
    test_rows = np.column_stack([x_test, y_test])
    _, first = np.unique(test_rows, axis=0, return_index=True)
    keep = np.sort(first)
    x_test, y_test = x_test[keep], y_test[keep]
    shared = find_shared_events(x_train, y_train, x_test, y_test, tolerance=6e-4)
    x_train, y_train = x_train[~shared], y_train[~shared]
    print(
        f"Quick HIGGS sample: {len(y_train):,} training events "
        f"({int(shared.sum())} also in the test sample, dropped), "
        f"{len(y_test):,} test events ({len(test_rows) - len(keep)} repeated, dropped)"
    )
    partial = target.with_name(target.name + ".part")
    try:
        with h5py.File(partial, "w") as h5:
            writer = _HiggsWriter(h5)
            writer.append("train", x_train, y_train)
            writer.append("test", x_test, y_test)
            writer.finish(sources)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def find_shared_events(
    x_a: np.ndarray,
    y_a: np.ndarray,
    x_b: np.ndarray,
    y_b: np.ndarray,
    tolerance: float = 0.0,
) -> np.ndarray:
    """Return a boolean mask of the events of ``a`` that also occur in ``b``.

    Two events match when their labels are equal and every feature differs
    by at most ``tolerance``, which lets files printed at different decimals
    (3 and 9 in the HIGGS samples) match. Compares in blocks of ``b``, so
    memory stays at about len(a) x 2,000 x 3 values.
    """
    shared = np.zeros(len(y_a), dtype=bool)
    for start in range(0, len(y_b), 2000):
        block_x = x_b[start : start + 2000]
        block_y = y_b[start : start + 2000]
        # Cheap filter on three features first, then all columns of candidates.
        near = np.all(
            np.abs(x_a[:, None, :3] - block_x[None, :, :3]) <= tolerance, axis=2
        )
        near &= y_a[:, None] == block_y[None, :]
        for i, j in zip(*np.nonzero(near), strict=True):
            if np.all(np.abs(x_a[i] - block_x[j]) <= tolerance):
                shared[i] = True
    return shared


# --------------------------------------------------------------------------
# Command line: python common.py fetch [--size SIZE] [NAME ...]
# --------------------------------------------------------------------------

_HIGGS_SAMPLES = ("higgs-sample-train", "higgs-sample-test", "higgs-sample-csv")
_MNIST_FULL = (
    "mnist-train-images",
    "mnist-train-labels",
    "mnist-test-images",
    "mnist-test-labels",
)
DATA_FOR_SIZE = {
    "quick": ("mnist-5k", "mnist-test-images", "mnist-test-labels", *_HIGGS_SAMPLES),
    "workshop": (*_MNIST_FULL, "higgs"),
    "full": (*_MNIST_FULL, "higgs"),
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
    failed = []
    for name in names:
        try:
            print(f"{name}: {fetch(name)}")
        except DownloadError as error:
            print(error, file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"Could not fetch: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

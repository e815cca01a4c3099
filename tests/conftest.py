"""Fixtures shared by the tests: real sample data on a loopback server.

Every test session gets a fresh download cache and output folder, runs at the
``quick`` size, and fetches data through the real download code from an HTTP
server on 127.0.0.1 that serves the sample data folder. That folder is
``$WORKSHOP_TEST_DATA``, or ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import run_notebooks  # noqa: E402


def sample_data_dir() -> Path:
    """Return the folder of real sample files, or fail with what to set."""
    folder = Path(
        os.environ.get("WORKSHOP_TEST_DATA") or REPO_ROOT.parent / "shared" / "data"
    )
    if not (folder / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.fail(
            f"Sample data not found in {folder}: set WORKSHOP_TEST_DATA to the "
            "folder that holds the mnist/ and higgs/ sample files."
        )
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that does not log every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_folder(
    folder: Path, handler: type[http.server.BaseHTTPRequestHandler] = QuietHandler
) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 and yield the base URL."""
    factory = functools.partial(handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def mirror_url() -> Iterator[str]:
    """Base URL of a loopback HTTP server that serves the sample data."""
    with serve_folder(sample_data_dir()) as url:
        yield url


@pytest.fixture(scope="session")
def workshop_env(
    mirror_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Quick size, a fresh cache and output folder, data from the mirror."""
    root = tmp_path_factory.mktemp("workshop")
    settings = {
        "WORKSHOP_SIZE": "quick",
        "WORKSHOP_MIRROR": mirror_url,
        "WORKSHOP_DATA": str(root / "data"),
        "WORKSHOP_OUTPUT": str(root / "output"),
        "MPLBACKEND": "Agg",
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    run_notebooks.use_this_interpreter_as_kernel()
    try:
        yield settings
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def run_notebook(
    workshop_env: dict[str, str],
) -> Callable[..., dict[str, object]]:
    """Execute a notebook in quick mode and return the named variables.

    The executed copy is kept under ``build/tests/`` for reading after a
    failure.
    """

    def run(path: str | Path, report: list[str] | None = None) -> dict[str, object]:
        source = REPO_ROOT / path
        output = REPO_ROOT / "build" / "tests" / source.relative_to(REPO_ROOT)
        return run_notebooks.execute_and_report(source, list(report or []), output)

    return run

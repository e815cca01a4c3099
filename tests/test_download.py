"""The download code against a loopback server that serves real sample files.

Each failure must leave nothing in the cache that a later call would trust.
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import sample_data_dir, serve_folder

import common

SAMPLE = "mnist/train-labels-idx1-ubyte.gz"  # 28,881 real bytes


@pytest.fixture
def sample_bytes() -> bytes:
    return (sample_data_dir() / SAMPLE).read_bytes()


@pytest.fixture
def table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_bytes: bytes
) -> Iterator[Path]:
    """A dataset table with one real file, an empty cache, and no mirror."""
    path = tmp_path / "datasets.csv"
    digest = hashlib.sha256(sample_bytes).hexdigest()
    path.write_text(
        "name,path,size,sha256,licence,urls\n"
        f"labels,{SAMPLE},{len(sample_bytes)},{digest},CC BY-SA 3.0,"
        "http://127.0.0.1:9/unused\n"
    )
    monkeypatch.setattr(common, "DATASETS_TABLE", path)
    monkeypatch.setenv("WORKSHOP_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("WORKSHOP_MIRROR", raising=False)
    monkeypatch.setattr(common.time, "sleep", lambda seconds: None)
    yield tmp_path / "cache" / SAMPLE


def cache_files(target: Path) -> list[str]:
    """Names in the cache folder other than lock files."""
    if not target.parent.exists():
        return []
    return sorted(p.name for p in target.parent.iterdir() if p.suffix != ".lock")


def test_fetch_from_http_mirror(table: Path, mirror_url: str, monkeypatch) -> None:
    monkeypatch.setenv("WORKSHOP_MIRROR", mirror_url)
    path = common.fetch("labels")
    assert path == table
    assert common.sha256sum(path) == common.datasets()["labels"].sha256


def test_fetch_from_folder_mirror(table: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKSHOP_MIRROR", str(sample_data_dir()))
    assert (
        common.fetch("labels").read_bytes() == (sample_data_dir() / SAMPLE).read_bytes()
    )


def test_wrong_checksum_leaves_nothing(
    table: Path, tmp_path: Path, sample_bytes: bytes, monkeypatch
) -> None:
    served = tmp_path / "served"
    (served / "mnist").mkdir(parents=True)
    changed = bytearray(sample_bytes)
    changed[100] ^= 0xFF  # same size, one byte different
    (served / SAMPLE).write_bytes(bytes(changed))
    with serve_folder(served) as url:
        monkeypatch.setenv("WORKSHOP_MIRROR", url)
        with pytest.raises(common.DownloadError, match="sha256"):
            common.fetch("labels", retries=0)
    assert cache_files(table) == []


def test_not_found_names_url_and_fix(table: Path, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    with serve_folder(tmp_path / "empty") as url:
        monkeypatch.setenv("WORKSHOP_MIRROR", url)
        with pytest.raises(common.DownloadError) as error:
            common.fetch("labels", retries=0)
    message = str(error.value)
    assert "HTTP 404" in message
    assert f"{url}/{SAMPLE}" in message
    assert str(table) in message
    assert "WORKSHOP_MIRROR" in message
    assert cache_files(table) == []


class DroppingHandler(http.server.SimpleHTTPRequestHandler):
    """Announces the whole file but closes the connection halfway through."""

    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_dropped_connection_never_trusted(
    table: Path, tmp_path: Path, sample_bytes: bytes, mirror_url: str, monkeypatch
) -> None:
    DroppingHandler.payload = sample_bytes
    with serve_folder(tmp_path, DroppingHandler) as url:
        monkeypatch.setenv("WORKSHOP_MIRROR", url)
        with pytest.raises(common.DownloadError, match="connection failed"):
            common.fetch("labels", retries=2)
    assert not table.exists()
    # What is left is an incomplete .part file, kept only to resume from.
    assert cache_files(table) in ([], [table.name + ".part"])
    monkeypatch.setenv("WORKSHOP_MIRROR", mirror_url)
    assert common.fetch("labels").read_bytes() == sample_bytes


def test_truncated_cache_is_fetched_again(
    table: Path, sample_bytes: bytes, mirror_url: str, monkeypatch
) -> None:
    table.parent.mkdir(parents=True)
    table.write_bytes(sample_bytes[:1000])
    monkeypatch.setenv("WORKSHOP_MIRROR", mirror_url)
    assert common.fetch("labels").read_bytes() == sample_bytes


def test_truncated_cache_removed_when_offline(table: Path, sample_bytes: bytes) -> None:
    table.parent.mkdir(parents=True)
    table.write_bytes(sample_bytes[:1000])
    with pytest.raises(common.DownloadError, match="Could not get dataset 'labels'"):
        common.fetch("labels", retries=0)
    assert cache_files(table) == []


def test_hand_placed_file_is_used(table: Path) -> None:
    table.parent.mkdir(parents=True)
    shutil.copyfile(sample_data_dir() / SAMPLE, table)
    assert common.fetch("labels", retries=0) == table


def test_unknown_name_lists_known(table: Path) -> None:
    with pytest.raises(KeyError, match="known names: labels"):
        common.fetch("nope")


def test_registered_checksums_match_samples() -> None:
    """Every sample file listed in the real table matches its size and sha256."""
    checked = 0
    for dataset in common.datasets().values():
        sample = sample_data_dir() / dataset.path
        if sample.exists():
            assert common._check_file(sample, dataset) is None, dataset.name
            checked += 1
    assert checked >= 8


def test_offline_fails_without_retries(table: Path, monkeypatch) -> None:
    """A failed host name lookup is reported at once, not retried."""
    import socket
    import urllib.error

    calls = []

    def no_dns(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-3, "name resolution failed"))

    monkeypatch.setattr(common.urllib.request, "urlopen", no_dns)
    with pytest.raises(common.DownloadError, match="host name lookup failed"):
        common.fetch("labels", retries=3)
    assert len(calls) == 1
    assert cache_files(table) == []

"""The download code against loopback servers that misbehave.

Every case ends in one of two ways: ``fetch`` returns a file that matches
the table's size and sha256, or it raises ``DownloadError`` with a message
that names what failed, and the cache contains nothing that a later call would
trust. The base cases (404, a dropped connection, a wrong checksum, a
damaged cache) are in ``test_download.py``.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, sample_data_dir, serve_folder

import common

SAMPLE = "mnist/train-labels-idx1-ubyte.gz"  # 28,881 real bytes

# The tests replace time.sleep (the client's retry pauses) with a no-op; the
# servers keep the real one.
server_sleep = time.sleep


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serve ``payload`` at any path, misbehaving as ``plan`` prescribes.

    Request number i follows ``plan[i]`` (the last entry repeats). Every
    request's path and Range header are appended to ``seen``. Subclass it per
    test, so the class attributes are not shared.
    """

    payload = b""
    plan: list[str] = ["ok"]
    seen: list[tuple[str, str | None]] = []
    stall_seconds = 1.0
    slow_pause = 0.02

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Range")))
        behaviour = self.plan[min(len(self.seen), len(self.plan)) - 1]
        getattr(self, "serve_" + behaviour.replace("-", "_"))()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_body(self, body: bytes, status: int = 200, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def requested_offset(self) -> int:
        value = self.headers.get("Range", "")
        if value.startswith("bytes=") and value.endswith("-"):
            return int(value[len("bytes=") : -1])
        return 0

    # --- behaviours ------------------------------------------------------

    def serve_ok(self) -> None:
        """Send 206 and the rest of the file for a Range request, else the file."""
        offset = self.requested_offset()
        if offset:
            total = len(self.payload)
            self.send_body(
                self.payload[offset:],
                206,
                Content_Range=f"bytes {offset}-{total - 1}/{total}",
            )
        else:
            self.send_body(self.payload)

    def serve_ignore_range(self) -> None:
        self.send_body(self.payload)

    def serve_range_416(self) -> None:
        if self.headers.get("Range"):
            total = len(self.payload)
            self.send_body(b"", 416, Content_Range=f"bytes */{total}")
        else:
            self.send_body(self.payload)

    def serve_wrong_range(self) -> None:
        """Send 206, but from byte 0 instead of the requested offset."""
        total = len(self.payload)
        self.send_body(self.payload, 206, Content_Range=f"bytes 0-{total - 1}/{total}")

    def serve_error_500(self) -> None:
        self.send_error(500, "Internal Server Error")

    def serve_redirect(self) -> None:
        self.send_response(302)
        self.send_header("Location", "/moved" + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def serve_drop(self) -> None:
        """Announce the whole file, send half, close the connection cleanly."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.close_connection = True

    def serve_reset(self) -> None:
        """Send half of the file, then reset the connection (TCP RST)."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        server_sleep(0.1)  # let the client read the half before the reset
        linger = struct.pack("ii", 1, 0)  # on, 0 s: close() sends RST
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.connection.close()
        self.close_connection = True

    def serve_stall(self) -> None:
        """Wait longer than the client's timeout, then close without a response."""
        server_sleep(self.stall_seconds)
        self.close_connection = True

    def serve_slow(self) -> None:
        """Send the file in 4 KiB pieces, ``slow_pause`` seconds apart."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        for start in range(0, len(self.payload), 4096):
            self.wfile.write(self.payload[start : start + 4096])
            self.wfile.flush()
            server_sleep(self.slow_pause)

    def serve_short(self) -> None:
        self.send_body(self.payload[:-100])

    def serve_long(self) -> None:
        self.send_body(self.payload + b"\0" * 100)

    def serve_corrupt(self) -> None:
        changed = bytearray(self.payload)
        changed[100] ^= 0xFF
        self.send_body(bytes(changed))


@pytest.fixture
def sample_bytes() -> bytes:
    return (sample_data_dir() / SAMPLE).read_bytes()


@pytest.fixture
def handler(sample_bytes: bytes) -> type[FaultyHandler]:
    """A fresh FaultyHandler class serving the real sample file."""

    class Handler(FaultyHandler):
        payload = sample_bytes
        plan = ["ok"]
        seen = []

    return Handler


def write_table(path: Path, payload: bytes, urls: list[str]) -> None:
    digest = hashlib.sha256(payload).hexdigest()
    path.write_text(
        "name,path,size,sha256,licence,urls\n"
        f"labels,{SAMPLE},{len(payload)},{digest},CC BY-SA 3.0,{' '.join(urls)}\n"
    )


@pytest.fixture
def target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_bytes: bytes
) -> Path:
    """Point common at a one-row table and an empty cache; return the target.

    The table's own URL is a closed port, so only the mirror can deliver.
    """
    table = tmp_path / "datasets.csv"
    write_table(table, sample_bytes, ["http://127.0.0.1:9/closed"])
    monkeypatch.setattr(common, "DATASETS_TABLE", table)
    monkeypatch.setenv("WORKSHOP_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("WORKSHOP_MIRROR", raising=False)
    monkeypatch.setattr(common.time, "sleep", lambda seconds: None)
    return tmp_path / "cache" / SAMPLE


def cache_files(target: Path) -> list[str]:
    """Names in the cache folder other than lock files."""
    if not target.parent.exists():
        return []
    return sorted(p.name for p in target.parent.iterdir() if p.suffix != ".lock")


def fetch_through(
    handler: type[FaultyHandler],
    plan: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **options: float,
) -> Path:
    """Fetch the sample with a FaultyHandler server as the mirror."""
    handler.plan = plan
    with serve_folder(tmp_path, handler) as url:
        monkeypatch.setenv("WORKSHOP_MIRROR", url)
        return common.fetch("labels", **options)


# --- transient failures: retried, then a verified file ----------------------


@pytest.mark.parametrize(
    "plan",
    [
        ["error-500", "ok"],
        ["redirect", "ok"],
        ["slow"],
        ["stall", "ok"],
        ["drop", "ok"],
        ["reset", "ok"],
    ],
    ids=["500-then-ok", "redirect", "slow", "timeout-then-ok", "drop", "reset"],
)
def test_transient_fault_then_verified_file(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch, plan
) -> None:
    path = fetch_through(handler, plan, tmp_path, monkeypatch, timeout=0.3)
    assert path == target
    assert path.read_bytes() == sample_bytes
    assert cache_files(target) == [target.name]


def test_redirect_target_requested(
    target: Path, handler, tmp_path: Path, monkeypatch
) -> None:
    fetch_through(handler, ["redirect", "ok"], tmp_path, monkeypatch)
    paths = [path for path, _ in handler.seen]
    assert paths == [f"/{SAMPLE}", f"/moved/{SAMPLE}"]


def test_interrupted_download_resumes_with_range(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch
) -> None:
    # NOTE: after a reset the client has often lost the half it was reading
    # (it reads 64 KiB chunks), so only a clean close is sure to leave a part.
    fetch_through(handler, ["drop", "ok"], tmp_path, monkeypatch)
    ranges = [value for _, value in handler.seen]
    assert ranges[0] is None
    assert ranges[1] is not None
    assert ranges[1].startswith("bytes=")
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(sample_bytes)
    assert target.read_bytes() == sample_bytes


@pytest.mark.parametrize(
    "plan",
    [["drop", "ignore-range"], ["drop", "range-416"], ["drop", "wrong-range", "ok"]],
    ids=["200-restarts", "416-restarts", "wrong-206-restarts"],
)
def test_refused_range_restarts_from_zero(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch, plan
) -> None:
    path = fetch_through(handler, plan, tmp_path, monkeypatch)
    assert path.read_bytes() == sample_bytes
    assert handler.seen[1][1] is not None  # the resume was attempted


def test_stalled_server_times_out(target: Path, handler, tmp_path, monkeypatch) -> None:
    handler.stall_seconds = 0.6
    start = time.monotonic()
    with pytest.raises(common.DownloadError) as error:
        fetch_through(handler, ["stall"], tmp_path, monkeypatch, retries=1, timeout=0.2)
    assert time.monotonic() - start < 10
    assert "timed out" in str(error.value)
    assert len(handler.seen) == 2  # the first try and one retry
    assert not target.exists()


def test_persistent_500_gives_up(target: Path, handler, tmp_path, monkeypatch) -> None:
    with pytest.raises(common.DownloadError, match="HTTP 500") as error:
        fetch_through(handler, ["error-500"], tmp_path, monkeypatch, retries=2)
    assert len(handler.seen) == 3
    assert str(target) in str(error.value)
    assert cache_files(target) == []


# --- wrong files: never trusted ----------------------------------------------


@pytest.mark.parametrize("fault", ["short", "long", "corrupt"])
def test_wrong_file_never_trusted(
    target: Path, handler, tmp_path: Path, monkeypatch, fault
) -> None:
    expected = "sha256" if fault == "corrupt" else "size"
    with pytest.raises(common.DownloadError, match=expected):
        fetch_through(handler, [fault], tmp_path, monkeypatch, retries=0)
    assert cache_files(target) == []


def test_wrong_mirror_file_falls_back_to_url(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch
) -> None:
    """A corrupt mirror copy is skipped and the table's URL delivers."""

    class Good(FaultyHandler):
        payload = sample_bytes
        plan = ["ok"]
        seen = []

    handler.plan = ["corrupt"]
    with serve_folder(tmp_path, Good) as good, serve_folder(tmp_path, handler) as bad:
        write_table(common.DATASETS_TABLE, sample_bytes, [f"{good}/{SAMPLE}"])
        monkeypatch.setenv("WORKSHOP_MIRROR", bad)
        path = common.fetch("labels", retries=0)
    assert path.read_bytes() == sample_bytes
    assert len(handler.seen) == 1
    assert len(Good.seen) == 1


def test_foreign_part_file_never_trusted(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch
) -> None:
    """A leftover .part from another source is dropped and the file fetched whole."""
    target.parent.mkdir(parents=True)
    part = target.with_name(target.name + ".part")
    part.write_bytes(b"\xff" * 1000)
    path = fetch_through(handler, ["ok"], tmp_path, monkeypatch, retries=0)
    assert path.read_bytes() == sample_bytes
    assert handler.seen[0][1] is not None  # first a resume from the part
    assert handler.seen[-1][1] is None  # then the whole file
    assert cache_files(target) == [target.name]


def test_oversized_part_file_restarts(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch
) -> None:
    target.parent.mkdir(parents=True)
    part = target.with_name(target.name + ".part")
    part.write_bytes(sample_bytes + b"extra")
    path = fetch_through(handler, ["ok"], tmp_path, monkeypatch, retries=0)
    assert path.read_bytes() == sample_bytes
    assert handler.seen[0][1] is None  # no Range request from the bad part


# --- a full disk --------------------------------------------------------------


class FullDiskFile:
    """A file wrapper whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, handle, room: int) -> None:
        self.handle = handle
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.handle.close()


def test_full_disk_gives_clear_message(
    target: Path, handler, tmp_path: Path, monkeypatch
) -> None:
    def open_on_full_disk(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if str(path).endswith(".part") and "b" in mode and "w" in mode + "a":
            return FullDiskFile(handle, room=10_000)
        return handle

    monkeypatch.setattr(common, "open", open_on_full_disk, raising=False)
    with pytest.raises(common.NoSpaceError) as error:
        fetch_through(handler, ["ok"], tmp_path, monkeypatch)
    message = str(error.value)
    assert "no space left" in message
    assert str(target.parent) in message
    assert "WORKSHOP_DATA" in message
    assert len(handler.seen) == 1  # no retries, no other sources
    assert not target.exists()


# --- two processes at once ----------------------------------------------------

FETCH_IN_CHILD = """
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import common

common.DATASETS_TABLE = Path(sys.argv[2])
print(common.fetch("labels", retries=0))
"""


def test_concurrent_fetches_share_one_download(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path
) -> None:
    handler.plan = ["slow"]
    handler.slow_pause = 0.15  # about 1 s in all, so the two processes overlap
    with serve_folder(tmp_path, handler) as url:
        env = {
            **os.environ,
            "WORKSHOP_MIRROR": url,
            "WORKSHOP_DATA": str(tmp_path / "cache"),
        }
        command = [
            sys.executable,
            "-c",
            FETCH_IN_CHILD,
            str(REPO_ROOT),
            str(common.DATASETS_TABLE),
        ]
        children = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert [output.strip().splitlines()[-1] for output in outputs] == [str(target)] * 2
    assert len(handler.seen) == 1  # the second process found the verified file
    assert target.read_bytes() == sample_bytes


def test_file_system_without_locks(
    target: Path, handler, sample_bytes: bytes, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Where flock is not supported (some FUSE mounts), fetch still works."""
    import fcntl

    def no_locks(handle, operation) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = fetch_through(handler, ["ok"], tmp_path, monkeypatch)
    assert path.read_bytes() == sample_bytes
    assert "no file locks" in capsys.readouterr().out


# --- SSL ----------------------------------------------------------------------


@pytest.fixture
def https_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_untrusted_certificate_names_fix(
    target: Path,
    handler,
    sample_bytes: bytes,
    tmp_path: Path,
    monkeypatch,
    https_certificate,
) -> None:
    import ssl

    cert, key = https_certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("WORKSHOP_MIRROR", f"https://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(common.DownloadError) as error:
            common.fetch("labels", retries=3)
        message = str(error.value)
        assert "certificate verification failed" in message
        assert "SSL_CERT_FILE" in message
        assert cache_files(target) == []
        # The fix the message names works, with verification still on.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert common.fetch("labels", retries=0).read_bytes() == sample_bytes
    finally:
        server.shutdown()
        server.server_close()


def test_verification_never_disabled() -> None:
    source = (REPO_ROOT / "common.py").read_text()
    for switch in ("CERT_NONE", "_create_unverified_context", "check_hostname"):
        assert switch not in source

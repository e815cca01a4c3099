"""The ways learners run the workshop, outside the test's own notebook runner.

- Batch node: every notebook converted with ``jupyter nbconvert --to python``
  runs with plain ``python`` from its folder, headless (no display, no
  ``MPLBACKEND``), with the size from ``--size``, and writes its figures to
  files.
- Local server: ``init_virtualenv.sh`` registers the kernel, and a real
  Jupyter server on 127.0.0.1 finds it and executes a notebook with it.

(SWAN runs the same notebooks on an older stack; ``make test-oldest`` covers
that.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import run_notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_NAME = run_notebooks.KERNEL_NAME
NOTEBOOKS = run_notebooks.workshop_notebooks()
SCRIPT_TIMEOUT = 1200  # seconds for one notebook run as a script


def code_of(notebook: Path) -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return "\n".join(
        "".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"
    )


def figure_names(notebook: Path) -> list[str]:
    """Names passed as plain strings to ``common.show(figure, "name")``."""
    return re.findall(r'common\.show\(.*,\s*"([^"{}]+)"\)', code_of(notebook))


def notebook_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


# --- batch node: notebooks as plain Python scripts ----------------------------


@pytest.fixture(scope="module")
def batch_runs(
    workshop_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[Path, dict[str, object]]:
    """Convert every notebook to a script and run each in workshop order.

    The scripts share one output folder, so a notebook that reads another's
    model finds it. The size comes only from ``--size quick``.
    """
    root = tmp_path_factory.mktemp("batch")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY", "WORKSHOP_SIZE")
    }
    env["WORKSHOP_OUTPUT"] = str(root / "output")
    runs: dict[Path, dict[str, object]] = {}
    for notebook in NOTEBOOKS:
        scripts = root / "scripts" / notebook.parent.name
        subprocess.run(
            [sys.executable, "-m", "nbconvert", "--to", "python"]
            + ["--output-dir", str(scripts), str(notebook)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        script = scripts / (notebook.stem + ".py")
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(script), "--size", "quick"],
            cwd=notebook.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )
        runs[notebook] = {
            "script": script.read_text(encoding="utf-8"),
            "returncode": result.returncode,
            "output": result.stdout + result.stderr,
            "seconds": time.monotonic() - start,
            "figures": root / "output" / "figures",
        }
    return runs


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_script_runs_headless(batch_runs, notebook: Path) -> None:
    run = batch_runs[notebook]
    assert run["returncode"] == 0, run["output"][-4000:]
    assert "run size 'quick'" in run["output"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_script_has_no_ipython(batch_runs, notebook: Path) -> None:
    assert "get_ipython" not in batch_runs[notebook]["script"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_script_writes_its_figures(batch_runs, notebook: Path) -> None:
    folder = batch_runs[notebook]["figures"]
    for name in figure_names(notebook):
        assert (folder / f"{name}.png").is_file(), name


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_notebook_never_blocks_on_show(notebook: Path) -> None:
    """Figures go through common.show, which never blocks outside Jupyter."""
    assert "plt.show(" not in code_of(notebook)
    assert ".show()" not in code_of(notebook)


def test_size_flag_overrides_environment(monkeypatch) -> None:
    import common

    monkeypatch.setenv("WORKSHOP_SIZE", "full")
    monkeypatch.setattr(sys, "argv", ["script.py", "--size", "quick"])
    assert common.workshop_size() == "quick"
    monkeypatch.setattr(sys, "argv", ["script.py", "--size=workshop"])
    assert common.workshop_size() == "workshop"
    monkeypatch.setattr(sys, "argv", ["script.py"])
    assert common.workshop_size() == "full"
    monkeypatch.setattr(sys, "argv", ["script.py", "--size", "huge"])
    with pytest.raises(ValueError, match="quick, workshop, full"):
        common.workshop_size()


# --- local server: init_virtualenv.sh, then a real Jupyter server ------------

# The cheapest notebook that exists is executed through the server.
SERVER_NOTEBOOK_CHOICES = (
    "tensorflow/xor.ipynb",
    "tensorflow/automatic_differentiation.ipynb",
    "keras/gaussian.ipynb",
    "keras/mnist_train.ipynb",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run init_virtualenv.sh with HOME and Jupyter's folders in a temporary place.

    The "virtual environment" is a folder whose ``bin/python`` hands over to
    this test's interpreter, so the script's real steps run (find Python,
    reuse the environment, pip, register the kernel) without a second
    installation: pip runs with ``--dry-run`` and ``--no-index`` and fails if
    anything were missing.
    """
    pytest.importorskip("jupyter_server", reason="no Jupyter server installed")
    root = tmp_path_factory.mktemp("jupyter")
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    wrapper = venv / "bin" / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JUPYTER_")
    }
    env.update(
        HOME=str(root / "home"),
        JUPYTER_DATA_DIR=str(root / "data"),
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        PIP_DRY_RUN="1",
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "init_virtualenv.sh"), str(venv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("PIP_DRY_RUN", "PIP_NO_INDEX"):
        env.pop(name)
    return env


def test_init_registers_kernel(jupyter_home: dict[str, str]) -> None:
    spec_file = (
        Path(jupyter_home["JUPYTER_DATA_DIR"]) / "kernels" / KERNEL_NAME / "kernel.json"
    )
    spec = json.loads(spec_file.read_text())
    assert spec["display_name"] == "Python (TF/Keras workshop)"
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()


class JupyterServer:
    """A ``jupyter server`` on 127.0.0.1 with a token, for one test module."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server"]
            + ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}"]
            + ["--ServerApp.port_retries=0", "--ServerApp.open_browser=False"]
            + ["--ServerApp.allow_root=True"]  # CI runs as root
            + [f"--IdentityProvider.token={self.token}"]
            + [f"--ServerApp.root_dir={REPO_ROOT}"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def request(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def wait_until_ready(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter server exited; see {self.log.name}")
            try:
                self.request("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        raise TimeoutError(f"jupyter server not ready in {seconds} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def jupyter_server(
    jupyter_home: dict[str, str], workshop_env: dict[str, str], tmp_path_factory
) -> JupyterServer:
    log = tmp_path_factory.mktemp("server") / "jupyter-server.log"
    env = {**jupyter_home, **workshop_env}
    server = JupyterServer(env, log)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


def test_server_rejects_missing_token(jupyter_server: JupyterServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(jupyter_server.base + "/api/kernels", timeout=30)
    assert error.value.code == 403


def test_server_lists_workshop_kernel(jupyter_server: JupyterServer) -> None:
    specs = jupyter_server.request("GET", "/api/kernelspecs")["kernelspecs"]
    assert KERNEL_NAME in specs
    assert specs[KERNEL_NAME]["spec"]["display_name"] == "Python (TF/Keras workshop)"


async def execute_cells(
    server: JupyterServer, kernel_id: str, cells: list[str], seconds: float
) -> list[dict[str, object]]:
    """Execute code cells over the kernel's websocket; return one result each.

    Each result has the reply ``status`` and the ``text`` of its stream
    output. Stops at the first cell that fails.
    """
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
    connection = await websocket_connect(request)
    session = uuid.uuid4().hex
    results = []
    deadline = time.monotonic() + seconds
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            message = {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": session,
                    "username": "test",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
            await connection.write_message(json.dumps(message))
            text, status, idle = [], None, False
            while status is None or not idle:
                remaining = deadline - time.monotonic()
                raw = await asyncio.wait_for(connection.read_message(), remaining)
                if raw is None:
                    raise ConnectionError("kernel websocket closed")
                reply = json.loads(raw)
                if reply.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = reply["header"]["msg_type"]
                if kind == "stream":
                    text.append(reply["content"]["text"])
                elif kind == "error":
                    text.append("\n".join(reply["content"]["traceback"]))
                elif kind == "execute_reply":
                    status = reply["content"]["status"]
                elif kind == "status":
                    idle = reply["content"]["execution_state"] == "idle"
            results.append({"status": status, "text": "".join(text)})
            if status != "ok":
                break
    finally:
        connection.close()
    return results


def test_server_executes_notebook(jupyter_server: JupyterServer) -> None:
    notebook = next(
        REPO_ROOT / name
        for name in SERVER_NOTEBOOK_CHOICES
        if (REPO_ROOT / name).exists()
    )
    folder = str(notebook.parent.relative_to(REPO_ROOT))
    kernel = jupyter_server.request(
        "POST", "/api/kernels", {"name": KERNEL_NAME, "path": folder}
    )
    cells = [
        "".join(cell["source"])
        for cell in json.loads(notebook.read_text())["cells"]
        if cell["cell_type"] == "code"
    ]
    cells.append("import os, sys\nprint(os.getcwd())\nprint(sys.executable)")
    try:
        results = asyncio.run(
            execute_cells(jupyter_server, kernel["id"], cells, seconds=900)
        )
    finally:
        jupyter_server.request("DELETE", f"/api/kernels/{kernel['id']}")
    failed = [result for result in results if result["status"] != "ok"]
    assert failed == []
    assert len(results) == len(cells)
    cwd, executable = results[-1]["text"].split()
    assert Path(cwd) == notebook.parent
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert "run size 'quick'" in results[0]["text"]


def test_init_writes_only_workshop_kernel(jupyter_home: dict[str, str]) -> None:
    data = Path(jupyter_home["JUPYTER_DATA_DIR"])
    assert sorted(path.name for path in (data / "kernels").iterdir()) == [KERNEL_NAME]

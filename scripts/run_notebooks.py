"""Execute the workshop notebooks into a build folder and report their times.

Usage: python scripts/run_notebooks.py [--build-dir build] [NOTEBOOK ...]

Without arguments every notebook in tensorflow/ and keras/ runs, in the
order of the workshop (a notebook that reads another's output runs after
it). The sources stay untouched: executed copies go to
``<build-dir>/<folder>/<name>.ipynb``. The kernel is this Python
interpreter, whatever kernels the machine has registered; the run size
comes from ``WORKSHOP_SIZE`` as in the notebooks.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_NAME = "tf-keras-workshop"

# Workshop order: each notebook comes after the ones whose outputs it reads.
ORDER = (
    "tensorflow/xor.ipynb",
    "tensorflow/automatic_differentiation.ipynb",
    "tensorflow/gaussian.ipynb",
    "tensorflow/queues.ipynb",
    "keras/gaussian.ipynb",
    "keras/mnist_train.ipynb",
    "keras/mnist_apply.ipynb",
    "keras/custom_loss_metric_callback.ipynb",
    "keras/HIGGS_train.ipynb",
    "keras/HIGGS_test.ipynb",
    "keras/fit_generator.ipynb",
)


def workshop_notebooks() -> list[Path]:
    """List every notebook that exists, in workshop order."""
    listed = [REPO_ROOT / name for name in ORDER if (REPO_ROOT / name).exists()]
    others = sorted(
        path
        for folder in ("tensorflow", "keras")
        for path in (REPO_ROOT / folder).glob("*.ipynb")
        if path not in listed
    )
    return listed + others


def use_this_interpreter_as_kernel() -> None:
    """Register this interpreter as the workshop kernel for child processes.

    A private kernel spec folder goes first on ``JUPYTER_PATH``, so the
    notebooks' kernel name resolves to this virtual environment even where
    another Jupyter installation registered a kernel of the same name.
    """
    folder = Path(tempfile.mkdtemp(prefix="workshop-kernel-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (TF/Keras workshop)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    paths = [str(folder), os.environ.get("JUPYTER_PATH", "")]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(path for path in paths if path)


def execute(
    path: Path,
    output: Path | None = None,
    extra_code: str | None = None,
    timeout: int = 1800,
) -> nbformat.NotebookNode:
    """Execute one notebook in its own folder and return the executed copy.

    ``extra_code`` runs as a last cell (the tests use it to read variables).
    The executed notebook is written to ``output`` when given, also when a
    cell fails, so the error can be read in context. The kernel's own log
    goes beside it, as ``<name>.kernel.log``.
    """
    notebook = nbformat.read(path, as_version=4)
    if extra_code:
        notebook.cells.append(nbformat.v4.new_code_cell(extra_code))
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent)}},
    )
    # The kernel's own log (start-up notices, crashes) goes to a file, not
    # into the middle of this script's progress lines.
    log_path = output.with_suffix(".kernel.log") if output else Path(os.devnull)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "w") as kernel_log:
            client.execute(stderr=kernel_log)
    finally:
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, output)
    return notebook


REPORT_MARKER = "__WORKSHOP_REPORT__"


def _report_code(names: list[str]) -> str:
    """Build a cell that prints the named notebook variables as one JSON line."""
    return f"""
import json as _json

def _plain(value):
    if hasattr(value, "numpy") and callable(value.numpy):
        value = value.numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value

_values = {{name: _plain(globals()[name]) for name in {names!r}}}
print({REPORT_MARKER!r} + _json.dumps(_values, default=str))
"""


def execute_and_report(
    path: Path, names: list[str], output: Path | None = None
) -> dict[str, object]:
    """Execute a notebook and return the values of the named variables.

    Values are converted to plain JSON types (arrays and tensors to lists),
    so tests and benchmarks read what the notebook computed without any test
    code inside the notebook.
    """
    if not names:
        execute(path, output)
        return {}
    notebook = execute(path, output, extra_code=_report_code(names))
    for item in notebook.cells[-1].get("outputs", []):
        text = item.get("text", "")
        if REPORT_MARKER in text:
            return json.loads(text.split(REPORT_MARKER, 1)[1].splitlines()[0])
    raise RuntimeError(f"{path} printed no report of {names}; see {output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run")
    parser.add_argument(
        "--build-dir", type=Path, default=REPO_ROOT / "build", help="output folder"
    )
    args = parser.parse_args()
    notebooks = [path.resolve() for path in args.notebooks] or workshop_notebooks()
    use_this_interpreter_as_kernel()
    size = os.environ.get("WORKSHOP_SIZE") or "each notebook's default"
    print(f"Executing {len(notebooks)} notebooks (size: {size}) into {args.build_dir}")
    timings = []
    failures = []
    for path in notebooks:
        relative = path.relative_to(REPO_ROOT)
        output = args.build_dir / relative
        start = time.perf_counter()
        print(f"  {relative} ...", end="", flush=True)
        try:
            execute(path, output)
        except CellExecutionError as error:
            print(" FAILED")
            print(f"{relative} failed; the executed copy is {output}\n{error}")
            failures.append(relative)
            continue
        except Exception as error:  # a dead kernel, a cell past the time limit
            print(" FAILED")
            print(
                f"{relative} stopped: {type(error).__name__}: {error}\n"
                f"The executed copy is {output}; the kernel's log is "
                f"{output.with_suffix('.kernel.log')}"
            )
            failures.append(relative)
            continue
        seconds = time.perf_counter() - start
        timings.append((relative, seconds))
        print(f" {seconds:6.1f} s -> {output}")
    total = sum(seconds for _, seconds in timings)
    print(f"{len(timings)} notebooks ran in {total:.0f} s")
    if failures:
        print(f"{len(failures)} failed: {', '.join(map(str, failures))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

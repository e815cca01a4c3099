"""Two runs of a training notebook on CPU give identical numbers.

The setup cell's ``common.setup(seed=42)`` seeds Python, NumPy and the Keras
backend. Every notebook that trains runs twice in fresh kernels at the quick
size. All numbers it leaves in global variables (scalars, small arrays and
the ``history`` of every Keras ``History``) must match exactly, except
names that measure the run's time or memory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import run_notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent
# Names of measurements of the run itself (clock and memory), not of the model.
MEASUREMENT_NAME = re.compile(
    r"time|second|elapsed|duration|start|stop|speed|throughput|memory|peak_mb",
    re.IGNORECASE,
)
MARKER = "__REPRODUCIBILITY__"

COLLECT_NUMBERS = f"""
import json as _json
import numbers as _numbers

import numpy as _np


def _numbers_of(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (_numbers.Real, _np.floating, _np.integer)):
        return float(value)
    if isinstance(value, _np.ndarray) and value.size <= 10_000:
        if _np.issubdtype(value.dtype, _np.number):
            return value.astype(float).ravel().tolist()
    history = getattr(value, "history", None)
    if isinstance(history, dict) and hasattr(value, "on_epoch_end"):
        return {{key: [float(x) for x in values] for key, values in history.items()}}
    return None


_found = {{}}
for _name, _value in list(globals().items()):
    if not _name.startswith("_"):
        _number = _numbers_of(_value)
        if _number is not None:
            _found[_name] = _number
print({MARKER!r} + _json.dumps(_found))
"""


def trains(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(cell["source"]) for cell in cells)
    return ".fit(" in code or "GradientTape" in code


TRAINING_NOTEBOOKS = [
    path for path in run_notebooks.workshop_notebooks() if trains(path)
]


def numbers_after_run(notebook: Path, run: int) -> dict[str, object]:
    relative = notebook.relative_to(REPO_ROOT)
    output = REPO_ROOT / "build" / "tests" / "reproducible" / f"run{run}" / relative
    executed = run_notebooks.execute(notebook, output, extra_code=COLLECT_NUMBERS)
    for item in executed.cells[-1].get("outputs", []):
        text = item.get("text", "")
        if MARKER in text:
            found = json.loads(text.split(MARKER, 1)[1].splitlines()[0])
            return {
                name: value
                for name, value in found.items()
                if not MEASUREMENT_NAME.search(name)
            }
    raise RuntimeError(f"{notebook} printed no numbers; see {output}")


@pytest.mark.parametrize(
    "notebook", TRAINING_NOTEBOOKS, ids=lambda path: str(path.relative_to(REPO_ROOT))
)
def test_two_runs_identical(workshop_env, notebook: Path) -> None:
    first = numbers_after_run(notebook, 1)
    second = numbers_after_run(notebook, 2)
    assert first, "the notebook left no numbers to compare"
    differing = sorted(name for name in first if first[name] != second.get(name))
    assert differing == []
    assert first.keys() == second.keys()

"""Write the HIGGS sample file into the workshop's HDF5 layout, for tests.

The layout is the one ``common.higgs_hdf5`` produces: groups ``/train`` and
``/test``, each with ``features`` (float32, shape (n, 28), chunked along
rows) and ``labels`` (float32, shape (n,), 1 = signal); root attributes
``feature_names``, ``source`` and ``source_sha256``.

NOTE: this replaces ``common.higgs_hdf5`` only until that function exists;
tests, the streaming notebook and its benchmark use it when it does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

# The 28 HIGGS columns after the label, in file order (Baldi et al. 2014):
# 21 low-level kinematic features, then 7 reconstructed invariant masses.
FEATURE_NAMES = (
    "lepton_pt",
    "lepton_eta",
    "lepton_phi",
    "missing_energy_magnitude",
    "missing_energy_phi",
    *(
        f"jet_{jet}_{quantity}"
        for jet in range(1, 5)
        for quantity in ("pt", "eta", "phi", "btag")
    ),
    "m_jj",
    "m_jjj",
    "m_lv",
    "m_jlv",
    "m_bb",
    "m_wbb",
    "m_wwbb",
)


def write_higgs_hdf5(
    source: Path, target: Path, test_events: int = 1000, chunk_rows: int = 1024
) -> Path:
    """Convert a tab-separated HIGGS sample (label first) to the HDF5 layout.

    The last ``test_events`` rows become ``/test``, the rest ``/train``, in
    file order. Raises ValueError if a row does not have 29 columns.
    """
    table = np.loadtxt(source, delimiter="\t", dtype=np.float32, ndmin=2)
    if table.shape[1] != 1 + len(FEATURE_NAMES):
        raise ValueError(
            f"{source} has {table.shape[1]} columns; expected the label and "
            f"{len(FEATURE_NAMES)} features, tab-separated"
        )
    if not 0 < test_events < len(table):
        raise ValueError(
            f"test_events={test_events} must be between 1 and {len(table) - 1}"
        )
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    splits = {"train": table[:-test_events], "test": table[-test_events:]}
    target.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(target, "w") as handle:
        handle.attrs["feature_names"] = list(FEATURE_NAMES)
        handle.attrs["source"] = str(Path(source).name)
        handle.attrs["source_sha256"] = digest
        for name, rows in splits.items():
            group = handle.create_group(name)
            group.create_dataset(
                "features",
                data=rows[:, 1:],
                chunks=(min(chunk_rows, len(rows)), rows.shape[1] - 1),
            )
            group.create_dataset("labels", data=rows[:, 0])
    return target

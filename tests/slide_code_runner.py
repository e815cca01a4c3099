"""Run the code chains of the slides in one Python process.

Usage: ``python slide_code_runner.py CHAINS_JSON RESULTS_JSON``.

``CHAINS_JSON`` contains a list of chains, each with an ``id``, a working
folder ``work_dir`` and its ``blocks`` (``line``: the line of the block's
first code line in slides.md, ``code``: its text). Each chain runs in a
fresh global namespace, in its own working folder, so a block that lacks
an import fails as it would on its own. Modules stay imported between
chains, which saves importing TensorFlow once per chain. Tracebacks show
line numbers of slides.md. ``RESULTS_JSON`` receives, per chain id, the
traceback of the first failure or null.

NOTE: because Keras is imported only once, a block that sets
``KERAS_BACKEND`` before ``import keras`` does not switch the backend here.
The deck only ever sets it to ``tensorflow``, the backend already loaded.
"""

import json
import os
import sys
import traceback


def run_chain(chain: dict) -> str | None:
    """Execute the blocks of one chain and return the traceback, or None."""
    os.makedirs(chain["work_dir"], exist_ok=True)
    os.chdir(chain["work_dir"])
    namespace = {"__name__": "__main__"}
    try:
        for block in chain["blocks"]:
            # Blank lines in front make the traceback's line numbers those
            # of slides.md.
            source = "\n" * (block["line"] - 1) + block["code"]
            exec(compile(source, "slides.md", "exec"), namespace)
    except BaseException:
        return traceback.format_exc()
    return None


def main(chains_path: str, results_path: str) -> int:
    with open(chains_path, encoding="utf-8") as file:
        chains = json.load(file)
    results = {}
    for chain in chains:
        print(f"running code chain {chain['id']}", flush=True)
        results[chain["id"]] = run_chain(chain)
    with open(results_path, "w", encoding="utf-8") as file:
        json.dump(results, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

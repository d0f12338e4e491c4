# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,cluster]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m auralisd.demo $(ARGS)

# The checkers first (seconds): a bug class they find never reaches a user; then the suite.
test: lint
	$(PY) -m pytest -q

# Checkers: ruff (pyflakes, bugbear, flake8-async, ...) and mypy (strict on auralis/ and protocol/).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench,cluster]'
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Render the systemd user units for this install into $HOME/.config/systemd/user
# (AURALISD_ARGS="--music-dir ~/Music" adds daemon flags to ExecStart; SPEAKER=1 also installs
# auralis-speaker.service, `auralisctl listen --play`, with SPEAKER_ARGS="--player aplay"). See docs/usage.md.
.PHONY: install-user-service
install-user-service:
	@test -x $(PY) || $(MAKE) venv
	$(PY) systemd/install_user_service.py --args "$(AURALISD_ARGS)" $(if $(SPEAKER),--speaker --speaker-args "$(SPEAKER_ARGS)")

# Audio-Cogito research kit. The two commands a newcomer needs:
#   make reproduce   # creates .venv on first use, then runs every notebook headlessly (PROFILE=mini, CPU)
#   make test        # same environment; unit tests + every notebook under the fast `tiny` profile
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= mini
RUN_DIR ?=
ONLY ?=
SEEDS ?= 0 1 2
SYSTEM_PACKAGES := espeak-ng
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cogito-installed

.PHONY: reproduce headline test test-unit test-notebooks lab plan venv system-deps check-envs clean distclean help
.DEFAULT_GOAL := help

help:
	@echo "make reproduce [PROFILE=mini|tiny|paper] [RUN_DIR=dir] [ONLY='00 02']  run the notebooks headlessly"
	@echo "make headline [PROFILE=mini] [SEEDS='0 1 2']  the whole loop once per seed, then one table (runs/<profile>-headline/)"
	@echo "make test            unit tests + notebooks under the tiny profile"
	@echo "make plan [PROFILE=paper]   what would run and what is missing, without running"
	@echo "make lab             JupyterLab on the kit's kernel ('cogito')"
	@echo "make check-envs      do the engine locks envs/*/requirements.txt still resolve? (network, several GB of downloads)"
	@echo "make clean           remove runs/ and caches (keeps .venv);  make distclean also removes .venv"

# System packages: the world speaks through a real TTS engine.
system-deps:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do command -v $$pkg >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "error: missing system packages:$$missing. Install them first, e.g. 'sudo apt-get install -y$$missing'" \
	         "(macOS: 'brew install$$missing'), then rerun make."; exit 1; \
	  fi; \
	fi

# The venv is (re)built when pyproject.toml changes; the kernel 'cogito' points at its interpreter.
# scripts/install_env.py installs the heavy wheels one at a time: a 7.7 GB disk peak instead of pip's 11.6 GB.
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@echo "creating $(VENV) with the pinned stack (first time: a few minutes, ~7.6 GB; needs ~8 GB free)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) scripts/install_env.py .
	$(PY) -m ipykernel install --sys-prefix --name cogito --display-name "Python (cogito)"
	$(PY) -m pip check
	@touch $(STAMP)

venv: $(STAMP)
	@$(MAKE) --no-print-directory system-deps

reproduce: venv
	$(PY) -m cogito_lib.run --profile $(PROFILE) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(ONLY),--only $(ONLY))

headline: venv
	$(PY) scripts/headline.py --profile $(PROFILE) --seeds $(SEEDS)

plan: venv
	$(PY) -m cogito_lib.run --profile $(PROFILE) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) --plan

test: venv
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest -m "not notebooks"

test-notebooks: venv
	$(PY) -m pytest -m notebooks

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --MappingKernelManager.default_kernel_name=cogito

# The engines (vLLM, ms-swift, LLaMA-Factory) live in their own pinned venvs (envs/README.md). This only checks that
# each lock still resolves, in a throwaway venv; it needs network and no .venv, so `make test` never runs it.
check-envs:
	scripts/check_envs.sh

clean:
	rm -rf runs .pytest_cache
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info

# GuardChat: `make run` starts everything, `make test` checks everything. Both are idempotent.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

export NEMO_GUARDRAILS_NO_USAGE_STATS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install chromium nginx migrate lint typecheck audit bench clean

run: install nginx migrate
	$(BIN)/guardchat serve --local-model auto

test: install chromium nginx migrate lint typecheck audit
	@set +e; HF_HUB_OFFLINE=1 $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure" >&2; exit 1; fi; \
	exit $$rc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# llama-cpp-python builds from source (5-10 min on 2 cores), once per machine: the wheel is kept in LLAMA_WHEELS.
# It is built for AVX2, not -march=native: llama.cpp's native AVX-512/AMX build of 0.3.36 segfaults or writes
# nonsense with SmolLM2's Q4_1 GGUF on these machines' CPUs. pip's own wheel cache may hold such a native
# build, so the wheel is built with --no-cache-dir into a directory named after the version and the flags.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS := $(HOME)/.cache/guardchat/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-avx2
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_VERSION)-avx2

$(LLAMA_STAMP): | $(BIN)/python
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) for AVX2 (5-10 minutes, once per machine)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
			-w $(LLAMA_WHEELS) 'llama-cpp-python==$(LLAMA_CPP_VERSION)'; }
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	touch $@

$(STAMP): pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

install: $(STAMP)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# `guardchat serve --workers N` runs N app processes behind an nginx it starts itself (Debian's package).
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		echo "installing Debian nginx for guardchat serve --workers N and its tests"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nginx; }

migrate: install
	$(BIN)/guardchat db upgrade

lint: install
	$(BIN)/ruff check webapp tests bench migrations rails
	$(BIN)/ruff format --check webapp tests bench migrations rails

typecheck: install
	$(BIN)/mypy

audit: install
	$(BIN)/python -m webapp.audit

bench: install migrate
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

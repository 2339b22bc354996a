# One command each: `make quickstart` (set up + run on the bundled defaults),
# `make test` (set up + run the tests). Both create ./.venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: quickstart test install-runtime install-dev default-model clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Device side only: LiteRT (the face detector too), OpenCV, NumPy. No TensorFlow, no MediaPipe.
install-runtime: $(BIN)/python
	$(BIN)/pip install -q -e ".[runtime]"

# Everything: runtime + the opt-in MediaPipe detector (so the tests compare both
# backends) + training/conversion + tests. tensorflow-model-optimization
# pins absl-py~=1.2, which conflicts with mediapipe's absl-py~=2.3, so it goes
# in last with --no-deps (its other dependencies are in the train extra).
install-dev: $(BIN)/python
	$(BIN)/pip install -q -e ".[runtime,mediapipe,train,dev]"
	$(BIN)/pip install -q --no-deps "tensorflow-model-optimization==0.8.1"

quickstart: install-runtime
	$(BIN)/tla-edge demo --headless --source samples
	$(BIN)/tla-edge bench --source samples --frames 50 --warmup 5

test: install-dev
	$(BIN)/python -m pytest -q

# Reproduces the bundled liveness pair from ../shared/data/{nuaa-train,msu-mfsd}, the ImageNet backbone in
# ../shared/weights/imagenet and the Silent-Face teacher in ../shared/weights/teachers/silent-face (about
# 10 minutes on 2 CPU cores at the default 96 px); BUNDLE=1 copies it into tla_edge/runtime/assets.
default-model: install-dev
	bash scripts/train_default_model.sh

clean-venv:
	rm -rf $(VENV)

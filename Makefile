# CPU setup on a fresh machine: a venv with the CPU torch 2.13.0 (never a CUDA build), then qvq-ray.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-clients serve bench clean

$(BIN)/qvq-ray: pyproject.toml constraints-cpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints-cpu.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints-cpu.txt -e ".[dev]"
	touch $(BIN)/qvq-ray

setup: $(BIN)/qvq-ray

# The trained tiny Qwen2-VL on 200 visual-arithmetic problems it never saw, with the gold-free
# `self` policy: pass@1 (one sample) vs accuracy (after the calculation check, re-sampling and voting).
demo: setup
	rm -rf results/demo
	$(BIN)/qvq-ray solve examples/arithmetic-test --out results/demo --model tiny --config pipelines/configs/arithmetic-self.yaml

# mypy first (strict over qvq_ray/, [tool.mypy] in pyproject.toml; ~15 s cold): a type error fails
# `make test` before the suite starts. Two xdist workers share the session's one Ray cluster and
# Serve (tests/conftest.py); loadfile keeps a module's tests, and its Serve app, on one worker.
test: setup
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# lm-eval, guidellm and aiperf, unmodified, against the served tiny model (tests/test_real_clients.py).
# Each client has its own pinned venv (tests/clients/*.txt), built once into ~/.cache/qvq-ray/client-venvs
# (or $$QVQ_RAY_CLIENT_VENVS): about 3-5 min the first time, nothing after.
test-clients: setup
	$(BIN)/python tests/clients/make_venv.py lm-eval guidellm aiperf
	$(BIN)/python -m pytest -q -m clients

serve: setup
	$(BIN)/qvq-ray serve serve_configs/tiny-cpu.yaml

bench: setup
	$(BIN)/python benchmarks/engine_microbatch.py

clean:
	rm -rf $(VENV) results

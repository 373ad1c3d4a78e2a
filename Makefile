# spurisweep: `make demo` runs the smoke sweep end to end; `make test` runs the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines must never pull CUDA wheels: every install step pins torch through this file.
# On a GPU cluster: pip install -e '.[vllm]' without it.
CONSTRAINTS ?= constraints-cpu.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-toy test-gpu lint toy bench gpu-check slurm-up slurm-down clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/spurisweep run sweeps/smoke.yaml --executor local
	$(BIN)/spurisweep report --sweep smoke --pivot model,reward

test: install
	$(BIN)/python -m pytest -q

# the GPU tier (tests/gpu/): vLLM evaluation, a bf16 GRPO step, a 2-rank sharded cell; skipped without CUDA
test-gpu: install
	$(BIN)/python -m pytest -q -m gpu tests/gpu

# the toy laboratory's end-to-end checks (pretrain toy-memo and toy-coder: about an hour on 2 cores the
# first time; SPURISWEEP_TEST_CACHE pointing at a cache that has them reuses it)
test-toy: install
	$(BIN)/python -m pytest -q -m toy

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

lint: install
	$(BIN)/ruff check spurisweep tests bench
	$(BIN)/ruff format --check spurisweep tests bench

# The toy laboratory (docs/toy.md): pretrain toy-coder / toy-prose on this CPU (cached), run the 100-cell toy
# table through local processes (~25 minutes on 2 cores), print its tables. TOY_OUT gets the figures.
TOY_OUT ?= results/toy_figures
toy: install
	$(BIN)/spurisweep toy build
	$(BIN)/spurisweep run sweeps/toy_table.yaml --executor local
	$(BIN)/spurisweep report --sweep toy_table --pivot model,reward --where clip=standard --spread ci
	$(BIN)/spurisweep report --sweep toy_table --pivot model,reward --where clip=no_clip --spread ci
	$(BIN)/spurisweep report --sweep toy_table --pivot model,reward --where clip=standard --metric code_frequency --spread ci
	$(BIN)/spurisweep report --sweep toy_table --pivot model,reward --where clip=no_clip --metric code_frequency --spread ci
	$(BIN)/spurisweep report --sweep toy_table --plot code --out $(TOY_OUT)
	$(BIN)/spurisweep report --sweep toy_table --plot curves --out $(TOY_OUT)
	$(BIN)/spurisweep diagnose sweeps/toy_table.yaml

# the 2x2 clipping experiment on the toy families (shares its standard-clip cells with the toy table)
toy-2x2: install
	$(BIN)/spurisweep toy build
	$(BIN)/spurisweep run sweeps/toy_2x2.yaml --executor local
	$(BIN)/spurisweep diagnose sweeps/toy_2x2.yaml

# Speed and memory figures (printed, never asserted). bench/load.py (100 cells end to end) takes longer.
bench: install
	$(BIN)/python bench/grading.py
	$(BIN)/python bench/eval.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/submit.py

# One GPU, under 5 minutes, torch + transformers + TRL only: the planner against measured peaks, a bf16
# GRPO step, generation throughput (bench/gpu_check.py; prints "no CUDA device" and exits 0 elsewhere).
gpu-check: install
	$(BIN)/python bench/gpu_check.py

# A single-node SLURM with accounting on this machine (root; apt-installs slurm the first time).
slurm-up:
	bash scripts/slurm/start_slurm.sh

slurm-down:
	bash scripts/slurm/stop_slurm.sh

clean:
	rm -rf $(VENV) build *.egg-info

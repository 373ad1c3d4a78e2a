"""Generating and grading: benchmark evaluation, labels, the memorisation probe, the noise floor.

generate.py   transformers and vLLM generation with one record type
run.py        protocols, evaluation ids, a run (generation overlapped with grading), standalone eval
engines.py    data-parallel vLLM engines, one per GPU in its own process (labels, standalone eval)
labels.py     majority-vote / incorrect labels
probe.py      the memorisation probe's truncation and continuation metrics
probe_run.py  the probe's runner
noise.py      the noise floor of a greedy benchmark (same weights, two batch sizes)
"""

"""Generating and grading: benchmark evaluation, labels, the memorisation probe, the noise floor.

run.py        the one entry, run(job), for every job (EvalJob here, ProbeJob, LabellingJob): placement,
              once-only locking, merging; protocols, evaluation ids, generation overlapped with grading
generate.py   transformers and vLLM generation with one record type
engines.py    data-parallel vLLM engines, one per GPU in its own process (any job's `Engines(n)`)
labels.py     majority-vote / incorrect labels (LabellingJob)
probe.py      the memorisation probe's truncation and continuation metrics
probe_run.py  the probe's runner (ProbeJob)
noise.py      the noise floor of a greedy benchmark (same weights, two batch sizes)
reach.py      offline: what a command needs from the hub is here, or one line at once
"""

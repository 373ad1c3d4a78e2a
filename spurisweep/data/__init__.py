"""Problems: benchmarks and training sets (one entry each), and the built-in generators.

sets.py      benchmarks (`Benchmark` entries) and training sets: hub, local files, built-in generators
randcalc.py  fresh arithmetic problems no model has seen (builtin:randcalc)
toy.py       the toy laboratory's task: word problems, styles, the pretraining corpus
"""

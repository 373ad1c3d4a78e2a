"""Model families: the registry (hub id, prompt template, lineage, size), locally built models, the toy
families' pretraining recipe.

    families.py  the family registry, prompt templates, local builders (`tiny`) and model configs
    toy.py       deterministic CPU pretraining of the toy families and the measurement of their priors
"""

"""spurisweep: run spurious-reward RLVR studies (GRPO on math) across model families as one command.

Data flows one way: YAML -> spec -> cells -> launch -> train/evaluate -> artifacts -> store -> report.
Heavy libraries (torch, transformers, trl, vllm) are imported only inside the functions that need them,
so `spurisweep --help` and `spurisweep plan` answer instantly.
"""

__version__ = "0.1.0"

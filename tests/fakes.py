"""Stand-ins for what the CPU suite cannot run, shared by the tests that need them: vLLM on a CUDA GPU
(the real engine runs on this CPU in tests/evaluation/test_vllm_engine.py, under `make test-vllm`; the stand-in lets
the CPU suite check what spurisweep hands a GPU engine: its arguments, one call, the output order)."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class FakeVLLM:
    """Stands in for vLLM (no GPU here): records engines and generate calls, answers deterministically."""

    engines: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[list[Any], Any]] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        fake = self
        mod = types.ModuleType("vllm")

        class SamplingParams:
            def __init__(self, **kw):
                self.__dict__.update(kw)

        class LLM:
            def __init__(self, **kw):
                fake.engines.append(kw)

            def get_tokenizer(self):
                raise AssertionError("spurisweep passes its own tokenizer")

            def generate(self, inputs, params, use_tqdm=True):
                # vLLM's API: one SamplingParams for every prompt, or a list with one per prompt
                fake.calls.append((inputs, params))
                if isinstance(params, list) and len(params) != len(inputs):
                    raise ValueError("The lengths of prompts and sampling_params must be the same.")
                results = []
                for i, inp in enumerate(inputs):
                    p = params[i] if isinstance(params, list) else params
                    outs = [
                        FakeOutput(
                            s,
                            f"p{i} s{s} \\boxed{{{i}}}",
                            [7] * (s + 1),
                            "length" if s == p.n - 1 else "stop",
                        )
                        for s in range(p.n)
                    ]
                    results.append(
                        types.SimpleNamespace(prompt_token_ids=inp["prompt_token_ids"], outputs=outs[::-1])
                    )  # out of order on purpose
                return results

        mod.LLM, mod.SamplingParams = LLM, SamplingParams
        return mod

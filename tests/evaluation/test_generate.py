"""Generation backends on the tiny model (real transformers generate on CPU): batched greedy equals
one-at-a-time greedy, token counting / truncation / EOS handling, the checkpoint's sampling defaults
neutralised, seeded sampling. vLLM cannot run here (no GPU): its path is tested with a fake `vllm` module
injected into sys.modules, which records what spurisweep asks of it."""

from __future__ import annotations

import copy
import sys
import types

import pytest

from spurisweep.data import sets as data
from spurisweep.errors import ConfigError
from spurisweep.evaluation import generate
from spurisweep.evaluation.generate import Generation, Sampling
from spurisweep.models import families
from tests.fakes import FakeVLLM


@pytest.fixture(scope="module")
def tiny():
    model, tok = families.load_model_and_tokenizer(families.model_source("tiny"), device="cpu")
    return model, tok


@pytest.fixture(scope="module")
def prompts(tiny, shared_data):
    """Real MATH-500 problems of different lengths, rendered with the tiny model's chat template."""
    _, tok = tiny
    probs = data.load_problems(str(shared_data / "math500.json"), limit=40)
    chosen = sorted(probs, key=lambda p: len(p.problem))[::8][:5]  # spread of lengths: padding matters
    return [families.render_prompt(tok, "chat", p.problem) for p in chosen]


# ---------------------------------------------------------------------------------------------- pure helpers
def test_split_at_eos_counts_the_eos_and_ignores_what_follows():
    assert generate.split_at_eos([5, 6, 2, 3, 3], [2], 5) == (3, False)
    assert generate.split_at_eos([2, 3, 3], [2], 3) == (1, False)
    assert generate.split_at_eos([5, 6, 7], [2], 3) == (3, True)
    assert generate.split_at_eos([5, 3, 7], [2], 3) == (3, True)  # a generated pad id is an ordinary token
    assert generate.split_at_eos([5, 9, 2], [2, 9], 3) == (2, False)  # any of several EOS ids


def test_eos_ids_union_of_tokenizer_and_generation_config():
    tok = types.SimpleNamespace(eos_token_id=151643)
    model = types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=[151645, 151643]))
    assert generate.eos_ids(tok, model) == [151643, 151645]
    assert generate.eos_ids(tok) == [151643]


def test_encode_prompts_adds_special_tokens_but_never_doubles_bos(tiny):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    _, tok = tiny
    backend = tok.backend_tokenizer.__class__.from_str(tok.backend_tokenizer.to_str())
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    bos_tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    plain, templated = generate.encode_prompts(bos_tok, ["What is 1 + 2?", "<s>What is 1 + 2?"])
    assert plain[0] == tok.bos_token_id and plain[1] != tok.bos_token_id
    assert plain == templated  # the BOS the template wrote is not doubled
    assert generate.encode_prompts(tok, ["What is 1 + 2?"])[0] == tok("What is 1 + 2?")["input_ids"]


def test_checkpoint_sampling_defaults_are_neutralised(tiny):
    model, tok = tiny
    gc = model.generation_config
    saved = (gc.top_k, gc.repetition_penalty, gc.min_p)
    gc.top_k, gc.repetition_penalty, gc.min_p = 20, 1.05, 0.05  # what e.g. a Qwen instruct checkpoint ships
    try:
        kw = generate.generation_kwargs(
            model, tok, Sampling(n=8, temperature=0.6, top_p=0.95, max_new_tokens=7)
        )
        greedy = generate.generation_kwargs(model, tok, Sampling(n=1, temperature=0.0))
        shipped = copy.deepcopy(gc)
    finally:
        gc.top_k, gc.repetition_penalty, gc.min_p = saved
    # greedy: the penalty (which changes greedy output) is still switched off; the sampling-only knobs are
    # left alone, since passing them is what makes transformers warn "generation flags are not valid"
    assert greedy["do_sample"] is False and greedy["repetition_penalty"] == 1.0
    assert not generate.SAMPLING_ONLY & set(greedy) and "temperature" not in greedy
    shipped.update(**greedy)
    shipped.validate(strict=True, user_set_attributes=set(greedy))  # raises on any flag it would warn about
    assert kw["top_k"] == 0 and kw["repetition_penalty"] == 1.0 and kw["min_p"] == 0.0
    assert (kw["temperature"], kw["top_p"], kw["do_sample"], kw["num_return_sequences"]) == (
        0.6,
        0.95,
        True,
        8,
    )
    assert kw["max_new_tokens"] == 7 and kw["eos_token_id"] == [tok.eos_token_id]


# ---------------------------------------------------------------------------------------------- transformers
def test_batched_greedy_equals_one_at_a_time(tiny, prompts):
    """Left padding, length grouping and batching must not change a greedy answer."""
    model, tok = tiny
    s = Sampling(n=1, temperature=0.0, max_new_tokens=24)
    batched = generate.generate_transformers(model, tok, prompts, s, batch_size=len(prompts))
    single = [generate.generate_transformers(model, tok, [p], s, batch_size=1)[0] for p in prompts]
    assert [g[0].text for g in batched] == [g[0].text for g in single]
    assert batched == single
    assert all(len(g) == 1 and g[0].text for g in batched)
    again = generate.generate_transformers(model, tok, prompts, s, batch_size=2)
    assert again == batched  # deterministic, and the same with another batch composition


def test_token_counts_and_truncation_with_real_eos(tiny, prompts):
    """Make a token the model really generates an EOS (via generation_config): rows that hit it stop there
    (EOS counted, not in the text) while longer rows in the same batch go on to the limit, truncated."""
    model, tok = tiny
    s = Sampling(n=1, temperature=0.0, max_new_tokens=20)
    free = generate.generate_transformers(model, tok, prompts, s, batch_size=len(prompts))
    assert all(g[0].truncated and g[0].n_tokens == 20 for g in free)  # the random model never says </s>
    ids0 = generate.encode_prompts(tok, prompts[:1])
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(ids0), max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id
        )
    first_new = out[0, len(ids0[0]) :].tolist()
    stop = first_new[4]
    k = first_new.index(stop)  # first occurrence
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]
    try:
        gens = generate.generate_transformers(model, tok, prompts, s, batch_size=len(prompts))
    finally:
        model.generation_config.eos_token_id = old
    g0 = gens[0][0]
    assert (g0.n_tokens, g0.truncated) == (k + 1, False)
    assert g0.text == tok.decode(first_new[:k], skip_special_tokens=True) + tok.decode(
        [stop], skip_special_tokens=True
    )
    for g, f in zip(gens, free, strict=True):
        if g[0].truncated:  # never produced the stop token: same text as without it
            assert g[0] == f[0]
        else:
            assert g[0].n_tokens <= 20 and f[0].text.startswith(g[0].text)


def test_sampling_n_per_prompt_seeded(tiny, prompts):
    model, tok = tiny
    s = Sampling(n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    a = generate.generate_transformers(model, tok, prompts[:2], s, batch_size=6)
    b = generate.generate_transformers(model, tok, prompts[:2], s, batch_size=6)
    c = generate.generate_transformers(
        model, tok, prompts[:2], Sampling(3, 1.0, 1.0, 12, seed=8), batch_size=6
    )
    assert [len(g) for g in a] == [3, 3]
    assert a == b and a != c
    assert len({x.text for x in a[0]}) > 1  # samples of one prompt differ


def test_callbacks_cover_every_prompt_once(tiny, prompts):
    model, tok = tiny
    seen: list[int] = []
    done: list[int] = []
    got: dict[int, list[Generation]] = {}

    def on_batch(idx, gens):
        seen.extend(idx)
        got.update(zip(idx, gens, strict=True))

    out = generate.generate_transformers(
        model,
        tok,
        prompts,
        Sampling(n=2, temperature=1.0, max_new_tokens=4),
        batch_size=4,
        progress=done.append,
        on_batch=on_batch,
    )
    assert sorted(seen) == list(range(len(prompts))) and sum(done) == len(prompts)
    assert done == [2, 2, 1]  # 4 sequences per call = 2 prompts x 2 samples
    assert [got[i] for i in range(len(prompts))] == out


def test_greedy_n_samples_are_one_generation_repeated(tiny, prompts):
    """transformers refuses greedy num_return_sequences > 1; n greedy samples are identical anyway."""
    model, tok = tiny
    batches = []
    out = generate.generate_transformers(
        model,
        tok,
        prompts[:2],
        Sampling(n=3, temperature=0.0, max_new_tokens=5),
        on_batch=lambda i, g: batches.append(g),
    )
    one = generate.generate_transformers(
        model, tok, prompts[:2], Sampling(n=1, temperature=0.0, max_new_tokens=5)
    )
    assert out == [g * 3 for g in one]
    assert [len(g) for b in batches for g in b] == [3, 3]


def test_choose_backend():
    assert generate.choose_backend("transformers") == "transformers"
    assert generate.choose_backend("auto") == ("vllm" if generate.vllm_available() else "transformers")
    with pytest.raises(ConfigError, match="valid: auto, vllm, transformers"):
        generate.choose_backend("tgi")
    if not generate.vllm_available():
        with pytest.raises(ConfigError, match="needs vLLM installed"):
            generate.choose_backend("vllm")


# ---------------------------------------------------------------------------------------------- vLLM (faked)
@pytest.fixture
def fake_vllm(monkeypatch):
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module())
    monkeypatch.setattr(generate, "_ENGINE", {})
    return fake


def test_vllm_one_call_all_prompts_n_samples(fake_vllm, tiny, prompts):
    _, tok = tiny
    s = Sampling(n=4, temperature=0.6, top_p=0.9, max_new_tokens=50, seed=3)
    batches = []
    gens = generate.generate_vllm(
        "/models/x", prompts, s, tokenizer=tok, on_batch=lambda i, g: batches.append(i)
    )
    assert len(fake_vllm.calls) == 1
    inputs, plist = fake_vllm.calls[0]
    assert [x["prompt_token_ids"] for x in inputs] == generate.encode_prompts(tok, prompts)
    assert len(plist) == len(prompts)  # one SamplingParams per prompt: its own seed and token budget
    for k, params in enumerate(plist):
        assert (params.n, params.temperature, params.top_p, params.max_tokens) == (4, 0.6, 0.9, 50)
        assert params.seed == generate.request_seed(3, k)
        assert (params.top_k, params.repetition_penalty, params.skip_special_tokens) == (-1, 1.0, True)
    assert len({p.seed for p in plist}) == len(prompts)
    assert fake_vllm.engines == [{"model": "/models/x", "seed": 3, "gpu_memory_utilization": 0.85}]
    assert [len(g) for g in gens] == [4] * len(prompts) and batches == [list(range(len(prompts)))]
    assert gens[1][0] == Generation("p1 s0 \\boxed{1}", 1, False)  # sorted back by output index
    assert gens[1][3] == Generation("p1 s3 \\boxed{1}", 4, True)  # finish_reason "length" = truncated
    generate.generate_vllm("/models/x", prompts[:1], Sampling(n=1, temperature=0.0), tokenizer=tok)
    assert len(fake_vllm.engines) == 1  # the engine is reused for the same weights
    (greedy,) = fake_vllm.calls[1][1]
    assert (greedy.temperature, greedy.top_p, greedy.n) == (0.0, 1.0, 1)
    rep = generate.generate_vllm("/models/x", prompts[:2], Sampling(n=3, temperature=0.0), tokenizer=tok)
    assert fake_vllm.calls[2][1][0].n == 1 and [len(g) for g in rep] == [3, 3] and rep[0][0] == rep[0][2]


def test_auto_picks_vllm_when_installed_with_a_gpu(fake_vllm, monkeypatch):
    """A GPU cannot be had here: torch.cuda.is_available is faked along with the vllm module."""
    import importlib.machinery

    import torch

    sys.modules["vllm"].__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert generate.vllm_available() and generate.choose_backend("auto") == "vllm"
    assert generate.choose_backend("vllm") == "vllm"


def test_stop_strings_cut_the_response_and_count_its_tokens():
    """The template's stop string (the paper's </answer>) ends the response as vLLM does: excluded from
    the text, its tokens counted, and a stopped response is not truncated. A real BPE tokenizer."""
    from spurisweep.evaluation.generate import cut_at_stop
    from spurisweep.models import families

    tok = families.build_tokenizer(families.tokenizer_corpus(), vocab_size=512)
    toks = tok("<answer> 42 </answer> and more text after it")["input_ids"]
    text = tok.decode(toks, skip_special_tokens=True)
    cut, n, truncated = cut_at_stop(tok, toks, text, ("</answer>",), True)
    assert cut.strip() == "<answer> 42" and not truncated
    assert "</answer>" in tok.decode(toks[:n], skip_special_tokens=True)
    assert "</answer>" not in tok.decode(toks[: n - 1], skip_special_tokens=True)
    assert cut_at_stop(tok, toks, text, ("nothing",), True) == (text, len(toks), True)


def test_evaluation_models_load_in_bf16_on_any_cuda_device_index():
    """No GPU here: only the dtype rule is checked (a rank's model on "cuda:3" once loaded in fp32)."""
    import torch

    from spurisweep.models import families

    assert families.default_dtype("cuda") == families.default_dtype("cuda:3") == torch.bfloat16
    assert families.default_dtype(torch.device("cuda", 1)) == torch.bfloat16
    assert families.default_dtype("cpu") == torch.float32


def test_a_training_ranks_engine_is_on_its_own_gpu_in_its_own_process(fake_vllm, monkeypatch):
    """No GPU or NCCL here: a CUDA vLLM and a process group are faked; checked is what vLLM is handed.
    TRL's colocated engine leaves vLLM in in-process mode; an evaluation engine in a training rank must
    run its core in its own process (an in-process core destroys the group on release) on the rank's GPU."""
    import os

    import torch

    monkeypatch.setattr(generate, "vllm_platform", lambda: "cuda")
    monkeypatch.setattr(generate, "_in_process_group", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    generate.vllm_engine("/models/a")
    assert fake_vllm.engines[-1]["device_ids"] == [3]
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # the site binds one GPU per task
    generate.vllm_engine("/models/b")
    assert fake_vllm.engines[-1]["device_ids"] == [0]
    monkeypatch.setattr(generate, "_in_process_group", lambda: False)  # a standalone eval: vLLM decides
    generate.vllm_engine("/models/c")
    assert "device_ids" not in fake_vllm.engines[-1]


def test_the_local_device_index_maps_local_rank_to_what_the_process_sees(monkeypatch):
    from spurisweep.distributed import local_device_index

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_device_index(visible=8) == 3
    assert local_device_index(visible=1) == 0
    with pytest.raises(RuntimeError, match="LOCAL_RANK 3 but this process sees 2 GPUs"):
        local_device_index(visible=2)

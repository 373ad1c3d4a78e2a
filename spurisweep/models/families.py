"""Model families: name -> hub id, prompt template, generation settings; plus locally built models.

Locally built families (`tiny`, and the toy families built by spurisweep.models.toy) need no network:
their builder writes a `from_pretrained` folder into the cache on first use (deterministically, under a
file lock so concurrent cells build it once), and from then on they load through the same path as a
hub model. The cache is $SPURISWEEP_CACHE or ~/.cache/spurisweep.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from ..errors import ConfigError, DataError, suggest

log = logging.getLogger(__name__)

BOX_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
R1_TEMPLATE = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and the answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer "
    "here </answer>. User: {problem} " + BOX_INSTRUCTION + "\nAssistant: <think>"
)

# The R1-style base-model template of the paper's official code (RESEARCH.md, "Prompts"), word for word:
# the task requires the exact text, since base-model baselines are prompt-sensitive. `{problem}` is the
# problem. The paper evaluated with these real newlines.
R1_PAPER_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
    "\n\n<|user|>\n{problem}\n<|assistant|>\n<think>"
)
# The official training script hands the template through shell double quotes, where `\n` is not an escape:
# the model was trained on a literal backslash followed by `n` at each of those places (and evaluated with
# real newlines). Kept as its own template because it is what the paper's base-model runs trained on.
R1_PAPER_LITERAL_NEWLINES_TEMPLATE = R1_PAPER_TEMPLATE.replace("\n", "\\n")


@dataclass(frozen=True)
class Template:
    """A prompt template and what generation and grading need to know about it.

    `text` holds `{problem}` where the problem goes ("{chat_template}" marks the tokenizer's own chat
    template). `add_bos`: whether tokenising the prompt adds the tokenizer's BOS token (its default;
    the official R1-style prompt has none). `stop`: strings that end generation besides EOS (the stop
    string itself is not part of the response, as with vLLM's default). `answer_tag`: the response
    carries its answer after an `<answer>` tag, so answer extraction and the format reward read only the
    text after the last `<answer>`, as the official code does for R1-style prompts.
    """

    name: str
    text: str
    add_bos: bool = True
    stop: tuple[str, ...] = ()
    answer_tag: bool = False
    note: str = ""


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        # the tokenizer's chat template, no system message (Qwen2.5-Math's then inserts its default
        # "reason step by step ... \boxed{}" system prompt)
        Template("chat", "{chat_template}"),
        Template("chat_boxed", "{chat_template}", note="chat template, the boxed instruction appended"),
        Template("r1", R1_TEMPLATE, note="spurisweep's R1-style template with the boxed instruction"),
        Template("plain", "{problem}\n" + BOX_INSTRUCTION + "\n"),
        Template("qa", "Question: {problem}\nAnswer:"),
        Template("raw", "{problem}", note="the problem alone: the official majority-vote labelling prompt"),
        Template(
            "r1_paper",
            R1_PAPER_TEMPLATE,
            add_bos=False,
            stop=("</answer>",),
            answer_tag=True,
            note="the official R1-style base-model template (as evaluated: real newlines)",
        ),
        Template(
            "r1_paper_literal_newlines",
            R1_PAPER_LITERAL_NEWLINES_TEMPLATE,
            add_bos=False,
            stop=("</answer>",),
            answer_tag=True,
            note="r1_paper as the official training script passed it: each newline a literal backslash-n",
        ),
    )
}

#: prompt templates by name -> text (the registry's texts; kept for the callers that only need the text)
PROMPTS: dict[str, str] = {name: t.text for name, t in TEMPLATES.items()}


def template(name: str) -> Template:
    """The registered template `name` (ConfigError naming the field `prompt` when there is none)."""
    if name not in TEMPLATES:
        raise ConfigError(suggest(name, list(TEMPLATES)), field="prompt")
    return TEMPLATES[name]


@dataclass(frozen=True)
class Family:
    name: str
    hub_id: str
    prompt: str  # default prompt template (a PROMPTS key)
    kind: str = "base"  # base | instruct | math
    params_b: float = 0.0  # size in billions, for resource hints
    generation: dict[str, Any] = field(default_factory=dict)
    # local families: writes a from_pretrained folder, given as a callable or as "module:function" (imported
    # only when the model is built, so this registry never imports the code that builds models)
    builder: Callable[[Path], None] | str | None = None
    version: str = "1"  # bump when the builder's output changes
    lineage: str = (
        ""  # pretraining lineage (qwen2.5-math, qwen2.5, llama3, olmo2, ...): what "one family" means
    )
    # a local family whose weights are fixed (shipped as package data): the sha256 its built folder's
    # WEIGHTS_FILE must have, checked by ensure_built every time it hands the folder out
    sha256: str = ""

    def build(self, out: Path) -> None:
        """Write this family's from_pretrained folder into `out` (local families only)."""
        if self.builder is None:
            raise ConfigError(f"model family {self.name!r} is not built locally", field="model")
        fn = self.builder
        if isinstance(fn, str):
            import importlib

            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        fn(out)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


for _f in (
    Family("qwen2.5-math-7b", "Qwen/Qwen2.5-Math-7B", "chat", "math", 7.6, lineage="qwen2.5-math"),
    Family("qwen2.5-math-1.5b", "Qwen/Qwen2.5-Math-1.5B", "chat", "math", 1.5, lineage="qwen2.5-math"),
    Family("qwen2.5-7b", "Qwen/Qwen2.5-7B", "chat", "base", 7.6, lineage="qwen2.5"),
    Family("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "chat", "base", 1.5, lineage="qwen2.5"),
    Family("olmo2-7b", "allenai/OLMo-2-1124-7B", "r1", "base", 7.3, lineage="olmo2"),
    Family("olmo2-7b-sft", "allenai/OLMo-2-1124-7B-SFT", "chat", "instruct", 7.3, lineage="olmo2"),
    Family("llama3.1-8b", "meta-llama/Llama-3.1-8B", "r1", "base", 8.0, lineage="llama3"),
    Family(
        "llama3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "chat", "instruct", 8.0, lineage="llama3"
    ),
    Family(
        "llama3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct", "chat", "instruct", 3.2, lineage="llama3"
    ),
):
    register(_f)


def cache_dir() -> Path:
    return Path(os.environ.get("SPURISWEEP_CACHE", Path.home() / ".cache" / "spurisweep"))


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(suggest(name, list(FAMILIES)), field="model")
    return FAMILIES[name]


@overload
def model_source(name: str, model_path: str | None = None, *, build: Literal[True] = ...) -> str: ...
@overload
def model_source(name: str, model_path: str | None = None, *, build: bool) -> str | None: ...


def model_source(name: str, model_path: str | None = None, *, build: bool = True) -> str | None:
    """What to pass to from_pretrained: an explicit path/id, a built local folder, or the hub id.
    `build=False`: what would be loaded, without building anything (a plan-side look, e.g. whether the hub
    must be reached): None for a family built here (it needs nothing from outside), else the path or id."""
    if model_path:
        return model_path
    fam = get(name)
    if fam.builder is None:
        return fam.hub_id
    return str(ensure_built(fam)) if build else None


def ensure_built(fam: Family) -> Path:
    from filelock import FileLock

    assert fam.builder is not None
    target = cache_dir() / "models" / f"{fam.name}-v{fam.version}"
    if (target / "config.json").exists():
        return check_weights(fam, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return check_weights(fam, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{fam.name}-", dir=target.parent))
        try:
            log.info("building model family %s into %s", fam.name, target)
            fam.build(tmp)
            check_weights(fam, tmp, built=True)  # before it is published: a bad copy never reaches the cache
            from ..artifacts import follow_umask

            follow_umask(tmp)  # mkdtemp makes it 0700 and safetensors writes 0600, whatever the umask
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


#: the weights file of a from_pretrained folder, which a pinned family's sha256 is of
WEIGHTS_FILE = "model.safetensors"


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_weights(fam: Family, folder: Path, *, built: bool = False) -> Path:
    """`folder` when family `fam` pins no weights or its weights file has the pinned sha256; else one
    DataError naming the file, both hashes and the fix. `built`: the folder was just built (the builder's
    source is at fault: damaged package data, or weights rebuilt without a new pin), else it is the cache's
    copy (delete it to build it again)."""
    if not fam.sha256:
        return folder
    weights = Path(folder) / WEIGHTS_FILE
    got = file_sha256(weights) if weights.is_file() else "none (no such file)"
    if got == fam.sha256:
        return folder
    fix = (
        "the shipped weights are damaged, or were rebuilt without their new sha256 in families.py"
        if built
        else f"a damaged cached copy: delete {folder} to build it again"
    )
    raise DataError(
        f"model family {fam.name}: {WEIGHTS_FILE} has sha256 {got}, expected {fam.sha256} ({fix})"
    )


# ---------------------------------------------------------------------------------------------- tiny model
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\n' }}"
    "{% else %}{{ 'Assistant: ' + m['content'] + eos_token + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def tokenizer_corpus() -> list[str]:
    """A fixed text corpus for the local tokenizers: arithmetic, LaTeX answer forms and code words."""
    lines = []
    words = [
        "What is",
        "Compute",
        "Find",
        "the answer is",
        "The answer is",
        "so",
        "then",
        "total",
        "python",
        "print",
        "def",
        "return",
        "result",
        "```",
        "\\boxed{",
        "}",
        "\\frac{",
        "sqrt",
        "Let",
        "We",
        "have",
        "plus",
        "minus",
        "times",
        "Question:",
        "Answer:",
        "User:",
        "Assistant:",
    ]
    for a in range(0, 120):
        b = (a * 7 + 3) % 50
        lines.append(f"What is {a} + {b}? {a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.")
        lines.append(f"```python\nx = {a} * {b}\nprint(x)\n```\nThe answer is \\boxed{{{a * b}}}.")
        lines.append(" ".join(words[(a + i) % len(words)] for i in range(12)))
    return lines


def build_tokenizer(corpus: list[str], vocab_size: int, chat_template: str = TINY_CHAT_TEMPLATE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    hf.chat_template = chat_template
    hf.padding_side = "left"
    return hf


def build_llama(
    out: Path, tokenizer, *, hidden: int, layers: int, heads: int, seed: int, max_pos: int = 1024
):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_pos,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def build_tiny(out: Path) -> None:
    """A 2-layer, 64-wide Llama with random weights and a 512-token BPE tokenizer: seconds on a CPU. One
    attention head of 64 dimensions: vLLM's CPU attention serves head_dim 64 (not 16), so the real engine
    runs it in the tests (make test-vllm)."""
    tok = build_tokenizer(tokenizer_corpus(), vocab_size=512)
    build_llama(out, tok, hidden=64, layers=2, heads=1, seed=0)


# version 2: one 64-dimension head (version 1 had four of 16, which vLLM's CPU attention refuses)
register(Family("tiny", "local:tiny", "chat", "base", 0.0, builder=build_tiny, lineage="tiny", version="2"))


# ---------------------------------------------------------------------------------------------- toy families
# The builders live in spurisweep.models.toy (torch, the toy task) and are named, not imported, so this
# registry stays free of its consumers. The prompt is the `qa` template their pretraining corpus is written
# in (spurisweep.data.toy.PROMPT). Each toy family is its own lineage: they share no pretraining data.
register(
    Family(
        "toy-coder",
        "local:toy-coder",
        "qa",
        "math",
        0.0,
        builder="spurisweep.models.toy:build_toy_coder",
        lineage="toy-coder",
    )
)
register(
    Family(
        "toy-prose",
        "local:toy-prose",
        "qa",
        "base",
        0.0,
        builder="spurisweep.models.toy:build_toy_prose",
        lineage="toy-prose",
    )
)
# toy-coder's prior plus the `toy` benchmark memorised (problems and answers): the contamination check
register(
    Family(
        "toy-memo",
        "local:toy-memo",
        "qa",
        "math",
        0.0,
        builder="spurisweep.models.toy:build_toy_memo",
        lineage="toy-memo",
    )
)
# toy-prose's recipe (on one thread) pretrained once and shipped as package data (resources/demo/toy-demo,
# models.toy.SHIPPED): `make demo`'s model, installed in a second; the pin below is checked whenever the
# folder is handed out. `spurisweep toy ship` pretrains it again and prints the sha256 to put here.
register(
    Family(
        "toy-demo",
        "local:toy-demo",
        "qa",
        "base",
        0.0,
        builder="spurisweep.models.toy:install_toy_demo",
        lineage="toy-prose",
        sha256="b15a137afebf432f02a5857a6a8d65f47bb6834eff2fbd99b63064fd22583590",
    )
)


# ---------------------------------------------------------------------------------------------- context
#: config.json keys that hold a model's context (positions), in the order they are looked for: HF's usual
#: name first, then the older or model-specific spellings (GPT-2 and GPT-J, MPT, ChatGLM, ...)
_CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
)


def _config_context(config: dict[str, Any]) -> int | None:
    """The context a config.json dict declares (_CONTEXT_KEYS, then the same in a nested `text_config`)."""
    for node in (config, config.get("text_config")):
        if not isinstance(node, dict):
            continue
        for key in _CONTEXT_KEYS:
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _folder_context(folder: Path) -> int | None:
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return _config_context(config) if isinstance(config, dict) else None


def _builder_context(fam: Family) -> int | None:
    """What a local family's builder writes as its context, known without building: the `MAX_POSITIONS` of
    the builder's module (spurisweep.models.toy), or for the builders in this module (tiny) build_llama's
    default `max_pos`. None for a builder that declares neither."""
    import importlib
    import inspect
    import sys

    fn = fam.builder
    if isinstance(fn, str):
        try:
            module: Any = importlib.import_module(fn.partition(":")[0])
        except ImportError:
            return None
    else:
        module = sys.modules.get(getattr(fn, "__module__", ""), None)
    value = getattr(module, "MAX_POSITIONS", None)
    if value is None and module is sys.modules[__name__]:
        value = inspect.signature(build_llama).parameters["max_pos"].default
    return value if isinstance(value, int) else None


def context_length(name: str, model_path: str | None = None) -> int | None:
    """The context (positions) of family `name`'s model, or of `model_path` when given, read from config
    files only (no torch, no transformers, no download); None when it cannot be known that way.

    `model_path`: its config.json when it is a folder with one, else the shipped config of that hub id
    (never the family's: the path replaces the model). A local family (tiny, toy-*): its built folder's
    config.json, else what its builder writes. A hub family: its shipped config
    (resources/model_configs.json)."""
    if model_path:
        folder = Path(model_path).expanduser()
        if (folder / "config.json").is_file():
            return _folder_context(folder)
        shipped = shipped_configs().get(model_path)
        return _config_context(shipped) if shipped else None
    fam = get(name)
    if fam.builder is not None:
        folder = cache_dir() / "models" / f"{fam.name}-v{fam.version}"  # where ensure_built puts it
        if (folder / "config.json").is_file():
            built = _folder_context(folder)
            if built is not None:
                return built
        return _builder_context(fam)
    shipped = shipped_configs().get(fam.hub_id)
    return _config_context(shipped) if shipped else None


def render_prompt(tokenizer: Any, template: str, problem: str) -> str:
    """The exact prompt text, shared by training and evaluation (the prompt is part of the cell)."""
    if template in ("chat", "chat_boxed"):
        content = problem if template == "chat" else f"{problem}\n{BOX_INSTRUCTION}"
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        return R1_TEMPLATE.replace("{problem}", problem)  # a base model without a chat template
    if template not in PROMPTS:
        raise ConfigError(suggest(template, list(PROMPTS)), field="prompt")
    return PROMPTS[template].replace("{problem}", problem)


def check_model_path(path: str, *, what: str = "model_path") -> None:
    """A local model folder (written as a path, or existing) must be a folder with a config.json, as
    from_pretrained needs; a hub id is left to from_pretrained. DataError names the setting and the path."""
    from ..data.sets import looks_like_path

    p = Path(path).expanduser()
    if not (looks_like_path(path) or p.exists()):
        return
    if not p.exists():
        raise DataError(f"{what}: {path}: no such folder")
    if not p.is_dir():
        raise DataError(f"{what}: {path}: is a file; expected a model folder (config.json and weights)")
    if not (p / "config.json").is_file():
        raise DataError(f"{what}: {path}: not a model folder (it has no config.json)")


def shipped_configs() -> dict[str, dict[str, Any]]:
    """The hub families' config fields (package data resources/model_configs.json), keyed by hub id: what
    the memory planner sizes and the context check reads, without a download."""
    import json
    from importlib import resources

    text = resources.files("spurisweep").joinpath("resources/model_configs.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def default_dtype(device: Any) -> Any:
    """bf16 on any CUDA device ("cuda", "cuda:3", a torch.device), fp32 elsewhere: an evaluation model on a
    rank's own GPU loads in the dtype the baseline used, whichever device index it was given."""
    import torch

    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


#: held while from_pretrained runs (load_model_and_tokenizer): two threads loading at once break each other
_LOADING = threading.Lock()


def load_model_and_tokenizer(source: str, *, dtype: str | None = None, device: str | None = None):
    """from_pretrained for hub ids and local folders alike; a source that is no model is one DataError."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_path(source, what="model")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, None: None}[dtype]
    if torch_dtype is None:
        torch_dtype = default_dtype(dev)
    try:
        with _LOADING:  # from_pretrained sets process-wide init state (the meta device): one thread at a time
            tok = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:  # not on the hub, offline, no weights in the folder; a full disk stays an OSError
        if exc.errno is not None:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot load model {source!r}: {first}") from None
    return model.to(dev), tok

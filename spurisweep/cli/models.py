"""Commands that run a model outside a sweep: eval, label, probe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import artifacts
from ..errors import ConfigError
from .common import (
    ResultsOpt,
    app,
    console,
    count,
    emit,
    exit_codes,
    seed_option,
    temperature_option,
    top_p_option,
)


@app.command(name="eval", epilog=exit_codes("eval"))
def eval_cmd(
    model: Annotated[str, typer.Option(help="Model family (its prompt template and defaults).")],
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights to evaluate instead of the family's.")
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Local folder or hub id for the family's weights.")
    ] = None,
    benchmarks: Annotated[str, typer.Option(help="Comma-separated benchmarks.")] = "math500",
    limit: Annotated[int | None, count("Only the first N problems of each benchmark.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt template (default: the family's).")] = None,
    backend: Annotated[str, typer.Option(help="auto, vllm or transformers.")] = "auto",
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help="Protocol override BENCH.FIELD=VALUE, or FIELD=VALUE for all (samples, temperature, top_p, "
            "max_new_tokens, prompt, path, limit); repeatable. Match a sweep's eval.protocols to share its baseline."
        ),
    ] = None,
    batch_size: Annotated[int | None, count("Sequences per generate() call (default: by memory).")] = None,
    engines: Annotated[
        int | None,
        count(
            "With vLLM: engines, one per GPU, each in its own process evaluating a share of the problems "
            "(default: every visible GPU; 1 on vLLM's CPU build). The rows do not depend on the count."
        ),
    ] = None,
    seed: Annotated[int, seed_option()] = 0,
    results: ResultsOpt = Path("results"),
) -> None:
    """Evaluate a base model or any checkpoint and record it in the same store."""
    artifacts.check_results(results)
    from .. import store
    from ..data import sets as data
    from ..evaluation import run as evaluate
    from ..plan.spec import EvalSettings

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    for b in names:
        if b not in data.BENCHMARKS:
            from ..errors import suggest

            raise ConfigError(suggest(b, list(data.BENCHMARKS)), field="--benchmarks")
    jobs = evaluate.standalone_jobs(
        model=model,
        model_path=model_path,
        checkpoint=checkpoint,
        benchmarks=names,
        settings=EvalSettings(
            benchmarks=names,
            limit=limit,
            batch_size=batch_size,
            protocols=evaluate.parse_protocol_options(protocol, names),
        ),
        prompt=prompt,
        results=results,
        seed=seed,
        backend=backend,
        engines=engines,
    )
    with evaluate.loaded(jobs) as ready:  # the weights load once, and only when an evaluation is missing
        metas = [evaluate.run(job) for job in ready]
    store.ingest(results)
    for m in metas:
        s = m["summary"]
        ks = " ".join(f"{k}={s[k]:.3f}" for k in m.get("headline", ["pass@1"]) if k in s)
        ks += f" (stderr {s.get('stderr', 0):.3f}, code {s.get('code_frequency') or 0:.1%})"
        console.print(
            f"{m['benchmark']}: {s.get('problems')} problems x {s.get('samples')} samples  {ks}  "
            f"(eval {m['eval_id']})"
        )


@app.command(epilog=exit_codes("label"))
def label(
    model: Annotated[str, typer.Option(help="Model family whose majority answers become the labels.")],
    dataset: Annotated[
        str, typer.Option(help="Training set: hub id, local JSON/JSONL/parquet or builtin:arith.")
    ],
    n: Annotated[int, count("Samples per prompt (the paper: 64).", "--n")] = 64,
    temperature: Annotated[float, temperature_option("Sampling temperature (the paper: 1.0).")] = 1.0,
    top_p: Annotated[float, top_p_option("Nucleus sampling's top-p (the paper: 1.0).")] = 1.0,
    max_new_tokens: Annotated[int, count("Max tokens per sample.")] = 3072,
    limit: Annotated[int | None, count("Only the first N prompts.")] = None,
    prompt: Annotated[
        str, typer.Option(help="Prompt template (the paper: plain, no chat template).")
    ] = "plain",
    model_path: Annotated[str | None, typer.Option(help="Local weights for the family.")] = None,
    seed: Annotated[int, seed_option()] = 0,
    labelling: Annotated[
        str,
        typer.Option(
            help="equivalence (answers grouped by math-verify equivalence) or paper (the official "
            "construction: official extraction, exact-string majority, the paper grader judges the label; "
            "use with --prompt raw)."
        ),
    ] = "equivalence",
    holdout: Annotated[int, count("The first N prompts of a cell's training set are held out.", min=0)] = 0,
    force: Annotated[bool, typer.Option("--force", help="Make them again even if they exist.")] = False,
    backend: Annotated[str, typer.Option(help="auto, vllm or transformers.")] = "auto",
    engines: Annotated[
        int | None,
        count(
            "vLLM engines, one per GPU, each sampling a share of the prompts (default: every visible "
            "GPU; 1 on vLLM's CPU build; or SPURISWEEP_LABEL_ENGINES). A prompt's seed is its index, "
            "not its engine's."
        ),
    ] = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Make majority-vote labels (for the majority_vote and incorrect_label rewards) with the base model."""
    artifacts.check_results(results)
    from ..data import sets as data
    from ..errors import suggest
    from ..evaluation import labels
    from ..models import families

    if model not in families.FAMILIES:
        raise ConfigError(suggest(model, list(families.FAMILIES)), field="--model")
    if prompt not in families.PROMPTS:
        raise ConfigError(suggest(prompt, list(families.PROMPTS)), field="--prompt")
    if labelling not in ("equivalence", "paper"):
        raise ConfigError(suggest(labelling, ["equivalence", "paper"]), field="--labelling")
    spec = labels.LabelSpec(
        model=model,
        model_path=model_path,
        dataset=dataset,
        limit=limit,
        samples=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        seed=seed,
        labelling=labelling,
        holdout=holdout,
    )
    if model_path:
        families.check_model_path(model_path, what="--model-path")
    data.check_source(dataset, what="--dataset")
    out = labels.labels_path(results, spec)
    # a damaged metadata file (read_json names it in a warning) means the labels are made again
    if force or artifacts.read_json(out.with_suffix(".json")) is None:
        from rich.progress import Progress

        from ..evaluation import reach

        # offline without the model or the data set: one line now, not the hub libraries' retries
        reach.check(models=[families.model_source(model, model_path)], datasets=[dataset])
        out.parent.mkdir(parents=True, exist_ok=True)
        with Progress(console=console) as prog:
            task = prog.add_task(f"labelling with {model}", total=None)
            labels.make_labels(
                spec, out, progress=lambda k: prog.advance(task, k), backend=backend, engines=engines
            )
    meta = artifacts.read_json(out.with_suffix(".json"), {})
    console.print(
        f"{meta['problems']} prompts, {meta['labelled']} with a majority answer, "
        f"{meta['majority_correct']} of them correct -> {out}"
    )


@app.command(epilog=exit_codes("probe"))
def probe(
    model: Annotated[str, typer.Option(help="Model family (its prompt template and weights).")],
    benchmarks: Annotated[str, typer.Option(help="Comma-separated benchmarks.")] = "math500",
    fractions: Annotated[
        str, typer.Option(help="Shares of each problem shown, each in (0, 1).")
    ] = "0.4,0.6,0.8",
    checkpoint: Annotated[str | None, typer.Option(help="Weights to probe instead of the family's.")] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Local folder or hub id for the family's weights.")
    ] = None,
    limit: Annotated[int | None, count("Only the first N problems of each benchmark.")] = None,
    max_new_tokens: Annotated[
        int | None, count("Tokens per continuation (default: the benchmark's protocol).")
    ] = None,
    backend: Annotated[str, typer.Option(help="auto, vllm or transformers.")] = "auto",
    engines: Annotated[
        int | None,
        count(
            "With vLLM: engines, one per GPU, each in its own process probing a share of the cut problems "
            "(default: every visible GPU; 1 on vLLM's CPU build). The rows do not depend on the count."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown, csv, json or html.")] = "table",
    results: ResultsOpt = Path("results"),
) -> None:
    """Memorisation probe: show the first part of each problem, decode greedily, and measure how often the
    model writes the rest word for word (exact match, ROUGE-L) and still answers correctly."""
    from .. import store
    from ..analysis import render
    from ..evaluation import probe_run

    metas = probe_run.run_probes(
        model=model,
        benchmarks=probe_run.parse_benchmarks(benchmarks),
        fractions=fractions,
        checkpoint=checkpoint,
        model_path=model_path,
        limit=limit,
        max_new_tokens=max_new_tokens,
        backend=backend,
        engines=engines,
        results=results,
    )
    store.ingest(results)
    rendered = render.render(probe_run.table(metas), fmt)
    emit(rendered)


@app.command(name="noise-floor", epilog=exit_codes("noise-floor"))
def noise_floor(
    model: Annotated[str, typer.Option(help="Model family (its prompt template and weights).")],
    benchmark: Annotated[str, typer.Option(help="A greedy benchmark.")] = "math500",
    batch_sizes: Annotated[
        str, typer.Option(help="Two generation batch sizes, comma-separated: the same weights at each.")
    ] = "1,32",
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights to measure instead of the family's.")
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Local folder or hub id for the family's weights.")
    ] = None,
    limit: Annotated[int | None, count("Only the first N problems.")] = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """The noise floor of a greedy benchmark: the same weights evaluated twice at two batch sizes (greedy is
    exact only on paper: batch composition changes the arithmetic). `report` prints the floor next to the
    model's greedy deltas; a delta within it says nothing about training."""
    artifacts.check_results(results)
    from ..data import sets as data
    from ..evaluation import noise
    from ..models import families

    families.get(model)  # an unknown family: one line
    if benchmark not in data.BENCHMARKS:
        from ..errors import suggest

        raise ConfigError(suggest(benchmark, list(data.BENCHMARKS)), field="--benchmark")
    sizes = _two_sizes(batch_sizes)
    rec = noise.measure(
        model=model,
        model_path=model_path,
        checkpoint=checkpoint,
        benchmark=benchmark,
        batch_sizes=sizes,
        limit=limit,
        results=results,
    )
    console.print(noise.notes(results, benchmark, {model})[-1] if rec else "")


def _two_sizes(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(
            f"expected two batch sizes like 1,32, got {text!r}", field="--batch-sizes"
        ) from None
    if min(a, b) < 1 or max(a, b) > 4096 or a == b:
        raise ConfigError(f"two different batch sizes from 1 to 4096, got {text!r}", field="--batch-sizes")
    return a, b

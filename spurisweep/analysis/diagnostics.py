"""`spurisweep diagnose`: is a sweep's gain from the reward? (RESEARCH.md, "Diagnostics worth computing")

  sensitivity    per model, the gain of the `random` reward against `ground_truth`. The random run is the
                 one whose gamma is closest to the ground-truth runs' mean training reward (their hit rate),
                 so both see the same share of rewarded completions; a family whose random run gains more
                 than 5 points is flagged: its gains need cross-family checks.
  compression    with pass@1 and pass@k before and after training: compression = pass@1 gain /
                 (pass@k - pass@1 before), capability = pass@k gain; compression > 0.7 = mostly search
                 compression (the model learned to pick what it could already sample). Per run and per model.
  health         the training-health flags each cell recorded (reward std / entropy collapse, ...).
  clip 2x2       {standard, clip_higher} x {random, ground_truth}: the four cell means with bootstrap
                 intervals over seeds, the two simple effects of Clip-Higher, their interaction, and which
                 reading the data supports: clipping bias (Clip-Higher hurts the random run) or rare
                 exploration (Clip-Higher helps the clean run).
  single family  a warning whenever the conclusions rest on one model family.
  contamination  per family and reward: the gain on the diagnosed benchmark (MATH-500 by default) next to the
                 gain on a fresh one (a benchmark generated afresh, data.Benchmark.fresh: randcalc, or
                 toy-fresh in the toy laboratory), and the family's memorisation probe on the diagnosed
                 benchmark (exact-match completion rate at the headline fraction 60%: spurisweep probe).
                 A family whose completion rate is at least COMPLETION_RATE (%) "can complete" the
                 benchmark, i.e. has seen it; a spurious reward (SPURIOUS_REWARDS) that gains more than
                 MEMORY_GAIN_POINTS there (95% interval above 0 when there is one) but not on the fresh
                 benchmark (mean at most MEMORY_GAIN_POINTS, or an interval reaching 0) is flagged: the gain
                 looks like memory surfacing, not reasoning (RESEARCH.md, "Is the gain real?").

Gains are changes in pass@1 (percentage points) at each run's final evaluation against its model's
untrained baseline, computed from the stored samples through query.tidy. Intervals are percentile
bootstrap intervals over runs (seeds); each group is resampled independently.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError, suggest
from ..metrics import bootstrap_ci, bootstrap_difference, clean, interval_and_signs, mean_std
from . import query as q
from . import render as rnd

log = logging.getLogger(__name__)

SENSITIVITY_POINTS = 5.0
COMPRESSION_THRESHOLD = 0.7
FEW_SEEDS = 5
LEAN = 0.8  # bootstrap probability of the expected sign for an effect to count as "suggested"
MAX_RUN_ROWS = 40  # per-run rows shown in table/markdown output (json has all)
BOOTSTRAP = 10_000
DEFAULT_GAMMA = 0.5
#: completion rate (% exact match at the headline fraction) from which a family "can complete" a benchmark.
#: The study measured 54.6% for Qwen2.5-Math-7B on MATH-500 and 3.8% for Llama-3.1-8B (0% on data released
#: after the model): 20% sits well clear of both
COMPLETION_RATE = 20.0
#: gain (points) that counts as a gain in the contamination check
MEMORY_GAIN_POINTS = 2.0
#: rewards that carry no information about correctness
SPURIOUS_REWARDS = ("random", "format", "incorrect_label", "python", "no_repetition")
FORMATS = ("table", "markdown", "json")


def _num(x: float, signed: bool = True) -> str:
    """One decimal; never '-0.0'."""
    v = round(x, 1) + 0.0
    return f"{v:+.1f}" if signed else f"{v:.1f}"


# ---------------------------------------------------------------------------------------------- records
@dataclass
class Run:
    """One trained cell at its final evaluation (values in percent)."""

    cell_id: str
    model: str
    reward: str  # stored label, e.g. random(gamma=0.3)
    reward_name: str  # the raw reward, e.g. random
    clip: str
    seed: int | None
    gamma: float | None = None
    train_reward: float | None = None  # mean training reward over all updates (the hit rate)
    value: float | None = None
    base: float | None = None

    @property
    def gain(self) -> float | None:
        return None if self.value is None or self.base is None else self.value - self.base


@dataclass
class Estimate:
    """A mean over runs with its bootstrap 95% interval (None with fewer than 2 runs)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0
    std: float | None = None

    def text(self, signed: bool = True) -> str:
        if self.mean is None:
            return "-"
        s = _num(self.mean, signed)
        if self.low is not None and self.high is not None:
            s += f" [{_num(self.low, signed)}, {_num(self.high, signed)}]"
        return s + f" (n={self.n})"


@dataclass
class Effect:
    """A difference of group means with its bootstrap interval, P(effect < 0) and P(effect > 0)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    p_negative: float | None = None
    p_positive: float | None = None

    def text(self) -> str:
        if self.mean is None:
            return "-"
        s = _num(self.mean)
        if self.low is not None and self.high is not None:
            s += f" [{_num(self.low)}, {_num(self.high)}]"
        return s


@dataclass
class Sensitivity:
    model: str
    clip: str
    ground_truth: Estimate
    random: Estimate
    gamma: float | None
    hit_rate: float | None
    flagged: bool
    note: str = ""
    paired: Any = None  # deltas.Paired: the random runs against their baseline, paired over problems


@dataclass
class Compression:
    scope: str  # "run" or "model"
    model: str
    label: str  # cell id (run) or model name (model)
    reward: str
    benchmark: str
    k: int
    p1_before: float | None
    p1_after: float | None
    pk_before: float | None
    pk_after: float | None
    compression: float | None
    capability: float | None
    reading: str
    runs: int = 1


@dataclass
class HealthRow:
    cell_id: str
    model: str
    reward: str
    clip: str
    seed: int | None
    flags: list[dict[str, Any]]


@dataclass
class ClipTwoByTwo:
    model: str
    benchmark: str
    gamma: float | None
    cells: dict[str, Estimate]  # "standard|random" -> gain estimate
    effect_random: Effect  # clip_higher - standard under random
    effect_ground_truth: Effect  # clip_higher - standard under ground_truth
    interaction: Effect  # effect_ground_truth - effect_random
    clipping_bias: str  # supported | suggested | not supported | contradicted
    rare_exploration: str
    reading: str  # clipping bias | rare exploration | both | neither
    confidence: str  # high | moderate | low | none
    statement: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Contamination:
    """One family x reward: its gains on the probed and the fresh benchmark, and the family's probe."""

    model: str
    reward: str  # the raw reward name
    benchmark: str  # the diagnosed (possibly memorised) benchmark
    fresh: str | None  # the fresh benchmark, None when the sweep evaluated none
    gain: Estimate
    gain_fresh: Estimate
    fraction: float | None  # the probe's fraction shown (the headline 0.6 when stored)
    completion: float | None  # % exact match of the probe on `benchmark`
    rouge_l: float | None
    probe_accuracy: float | None  # % answered correctly from the cut problem
    completion_fresh: float | None
    can_complete: bool
    flagged: bool

    def text(self) -> str:
        """'gain on math500 +x, on randcalc +y, completion rate z%'."""
        fresh = f", on {self.fresh} {self.gain_fresh.text()}" if self.fresh else ", no fresh benchmark"
        rate = "-" if self.completion is None else f"{self.completion:.1f}%"
        return f"gain on {self.benchmark} {self.gain.text()}{fresh}, completion rate {rate}"


@dataclass
class Diagnosis:
    sweep: str | None
    benchmark: str | None
    runs: int
    models: list[str]
    sensitivity: list[Sensitivity] = field(default_factory=list)
    compression: list[Compression] = field(default_factory=list)
    health: list[HealthRow] = field(default_factory=list)
    clip2x2: list[ClipTwoByTwo] = field(default_factory=list)
    contamination: list[Contamination] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- helpers
def family_of(model: str) -> str:
    """A model's family: the registered family's explicit lineage (qwen2.5-math, qwen2.5, llama3, olmo2: so
    Llama-3.1-8B-Instruct and Llama-3.2-3B-Instruct are one family); a model the registry does not know
    falls back to its name without the size and variant (foo-7b-sft -> foo)."""
    from ..models.families import FAMILIES

    fam = FAMILIES.get(model)
    if fam is not None and fam.lineage:
        return fam.lineage
    return re.split(r"-\d+(?:\.\d+)?[bm](?:-|$)", model, maxsplit=1)[0] or model


def estimate(values: list[float | None], seed: int = 0) -> Estimate:
    xs = clean(values)
    m, sd = mean_std(xs)
    ci = bootstrap_ci(xs, n=BOOTSTRAP, seed=seed)
    return Estimate(m, ci[0] if ci else None, ci[1] if ci else None, len(xs), sd)


def difference(a: list[float], b: list[float], seed: int = 0) -> tuple[Effect, Any]:
    """mean(a) - mean(b), with a bootstrap interval resampling each group independently."""
    mean, boot = bootstrap_difference(a, b, BOOTSTRAP, seed)
    return _effect_from(boot, mean), boot


def _effect_from(boot: Any, mean: float | None) -> Effect:
    if boot is None or mean is None:
        return Effect(mean)
    return Effect(mean, *interval_and_signs(boot))


def direction(effect: Effect, want_negative: bool) -> str:
    """supported (the 95% interval excludes 0 the expected way), contradicted (it excludes 0 the other way),
    suggested (the expected sign has bootstrap probability >= LEAN, or with no interval the point estimate
    has it), not supported, or untestable."""
    if effect.mean is None:
        return "untestable"
    sign = -1 if want_negative else 1
    if effect.low is None or effect.high is None or effect.p_negative is None or effect.p_positive is None:
        return "suggested" if sign * effect.mean > 0 else "not supported"
    lo, hi = sorted((sign * effect.low, sign * effect.high))
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    p_expected = effect.p_negative if want_negative else effect.p_positive
    return "suggested" if p_expected >= LEAN else "not supported"


def _runs(con: Any, sweep: str | None, benchmark: str | None) -> list[Run]:
    rows = (
        q.tidy(con, sweep=sweep, dims=[], metric="pass@1", benchmark=benchmark, step="final")
        if benchmark
        else []
    )
    if sweep:
        cells = con.execute(
            "SELECT c.cell_id, c.model, c.reward, c.clip, c.seed FROM cells c WHERE c.cell_id IN "
            "(SELECT cell_id FROM sweep_cells WHERE sweep = $s)",
            {"s": sweep},
        ).fetchall()
    else:
        cells = con.execute("SELECT cell_id, model, reward, clip, seed FROM cells").fetchall()
    ids = [c[0] for c in cells]
    settings: dict[str, dict[str, str]] = {}
    for cid, key, value in con.execute(
        "SELECT cell_id, key, value FROM cell_settings WHERE key IN ('reward', 'reward_params.random.gamma') "
        "AND list_contains($ids, cell_id)",
        {"ids": ids},
    ).fetchall():
        settings.setdefault(cid, {})[key] = value
    hit = dict(
        con.execute(
            "SELECT cell_id, avg(value) FROM metrics WHERE key = 'reward' AND "
            "list_contains($ids, cell_id) GROUP BY cell_id",
            {"ids": ids},
        ).fetchall()
    )
    vals = _per_cell(rows)
    out = []
    for cid, model, label, clip, seed in cells:
        s = settings.get(cid, {})
        name = s.get("reward") or str(label).split("(", 1)[0]
        gamma = None
        if name == "random":
            try:
                gamma = float(
                    s.get("reward_params.random.gamma") or _label_param(label, "gamma") or DEFAULT_GAMMA
                )
            except ValueError:
                gamma = DEFAULT_GAMMA
        run = Run(cid, model, str(label), name, clip, seed, gamma, hit.get(cid))
        run.base, run.value = vals.get(cid, (None, None))
        out.append(run)
    return out


def _label_param(label: str, key: str) -> str | None:
    m = re.search(rf"[(,]{re.escape(key)}=([^,)]+)", str(label))
    return m.group(1) if m else None


def _closest_gamma(random_runs: list[Run], hit_rate: float | None) -> float | None:
    gammas = sorted({r.gamma for r in random_runs if r.gamma is not None})
    if not gammas:
        return None
    target = DEFAULT_GAMMA if hit_rate is None else hit_rate
    return min(gammas, key=lambda g: (abs(g - target), g))


# ---------------------------------------------------------------------------------------------- diagnostics
def sensitivity(runs: list[Run], con: Any = None, benchmark: str | None = None) -> list[Sensitivity]:
    """Per model: the random reward's gain next to ground truth's. A family is called spurious-reward
    sensitive only when the random gain exceeds SENSITIVITY_POINTS and its 95% interval excludes 0: the
    paired interval over problems and seeds (deltas.paired_gain) when the store is given, else the
    bootstrap over runs (none with one run: not called)."""
    out = []
    for model in sorted({r.model for r in runs}):
        mine = [r for r in runs if r.model == model and r.gain is not None]
        rnd = [r for r in mine if r.reward_name == "random"]
        if not rnd:
            continue
        clips = [r.clip for r in rnd]
        clip = "standard" if "standard" in clips else max(set(clips), key=clips.count)
        gt = [r for r in mine if r.reward_name == "ground_truth" and r.clip == clip]
        rates = [r.train_reward for r in gt if r.train_reward is not None]
        hit = mean_std(rates)[0]
        gamma = _closest_gamma([r for r in rnd if r.clip == clip], hit)
        chosen = [r for r in rnd if r.clip == clip and r.gamma == gamma]
        est_r = estimate([r.gain for r in chosen], seed=1)
        est_g = estimate([r.gain for r in gt], seed=2)
        notes = []
        if hit is None:
            notes.append(
                "no ground-truth hit rate: "
                + ("no ground_truth run" if not gt else "no training reward logged")
                + f"; random at gamma={gamma}"
            )
        elif gamma is not None and abs(gamma - hit) > 0.15:
            notes.append(
                f"no random run near the hit rate {hit:.2f} (closest gamma {gamma}): sweep "
                f"reward_params.random.gamma: [{hit:.2f}] for a matched comparison"
            )
        if clip != "standard":
            notes.append(f"compared under clip={clip}")
        paired = _paired(con, [r.cell_id for r in chosen], benchmark)
        low = paired.delta.low if paired is not None else est_r.low
        flagged = est_r.mean is not None and est_r.mean > SENSITIVITY_POINTS and low is not None and low > 0
        if est_r.mean is not None and est_r.mean > SENSITIVITY_POINTS and not flagged:
            notes.append("the random gain's 95% interval does not exclude 0: not called sensitive")
        out.append(Sensitivity(model, clip, est_g, est_r, gamma, hit, flagged, "; ".join(notes), paired))
    return out


def _paired(con: Any, cell_ids: list[str], benchmark: str | None) -> Any:
    if con is None or benchmark is None or not cell_ids:
        return None
    from .deltas import paired_gain

    return paired_gain(con, cell_ids, benchmark)


def _reading(gain1: float | None, compression: float | None, capability: float | None) -> str:
    if gain1 is None or capability is None:
        return "-"
    if compression is not None and compression > COMPRESSION_THRESHOLD:
        return "mostly search compression"
    if capability > 0:
        return "capability gain (pass@k rose)"
    if gain1 > 0:
        return "some compression, no capability gain"
    return "no gain"


def _compression_row(
    scope: str,
    model: str,
    label: str,
    reward: str,
    bench: str,
    k: int,
    p1b: float | None,
    p1a: float | None,
    pkb: float | None,
    pka: float | None,
    runs: int = 1,
) -> Compression:
    gain1 = None if p1a is None or p1b is None else p1a - p1b
    comp = None
    if gain1 is not None and pkb is not None and p1b is not None and pkb - p1b > 1e-9:
        comp = gain1 / (pkb - p1b)
    cap = None if pka is None or pkb is None else pka - pkb
    return Compression(
        scope, model, label, reward, bench, k, p1b, p1a, pkb, pka, comp, cap, _reading(gain1, comp, cap), runs
    )


def compression(
    con: Any,
    sweep: str | None,
    runs: list[Run],
    benchmark: str | None,
    k: int | None,
    runs_benchmark: str | None = None,
) -> tuple[list[Compression], list[str]]:
    """Per run and per model, on the benchmark with the most samples per problem (or the one given).
    `runs_benchmark` names the benchmark of the runs' pass@1 values, reused instead of queried again."""
    bench, kk, notes = _compression_benchmark(con, runs, benchmark, k)
    if bench is None:
        return [], notes
    p1 = (
        []
        if bench == runs_benchmark
        else q.tidy(con, sweep=sweep, dims=[], metric="pass@1", benchmark=bench, step="final")
    )
    pk = q.tidy(con, sweep=sweep, dims=[], metric=f"pass@{kk}", benchmark=bench, step="final")
    by = {r.cell_id: r for r in runs}
    ck = _per_cell(pk)
    if bench == runs_benchmark:
        c1 = {r.cell_id: (r.base, r.value) for r in runs if r.value is not None}
    else:
        c1 = _per_cell(p1)
    rows: list[Compression] = []
    for cid in sorted(
        set(c1) & set(ck) & set(by), key=lambda c: (by[c].model, by[c].reward, by[c].clip, str(by[c].seed))
    ):
        run = by[cid]
        rows.append(_compression_row("run", run.model, cid, run.reward, bench, kk, *c1[cid], *ck[cid]))
    return _per_model(rows, bench, kk) + rows, []


def _compression_benchmark(
    con: Any, runs: list[Run], benchmark: str | None, k: int | None
) -> tuple[str | None, int, list[str]]:
    """The benchmark for pass@k (the most samples per problem, or the one given) and k; with no usable
    benchmark, None and a note saying what to evaluate."""
    sql = (
        "SELECT benchmark, min(samples) FROM evals WHERE NOT is_baseline AND list_contains($ids, cell_id) "
        "GROUP BY benchmark"
    )
    avail = dict(con.execute(sql, {"ids": [r.cell_id for r in runs]}).fetchall())
    if benchmark is not None:
        avail = {b: n for b, n in avail.items() if b == benchmark}
    usable = {b: n for b, n in avail.items() if n is not None and n >= max(2, k or 2)}
    if not usable:
        need = f"{k}" if k else "2 or more"
        return (
            None,
            0,
            [
                f"compression vs capability needs pass@k: evaluate a benchmark with {need} samples per "
                "problem (e.g. aime24 or amc with 8)" + (f"; stored: {avail}" if avail else "")
            ],
        )
    bench = max(sorted(usable), key=lambda b: usable[b])
    return bench, k or int(usable[bench]), []


def _per_cell(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """Value rows -> per cell (baseline, value) in percent, each the mean of the cell's rows."""
    acc: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        acc.setdefault(r["cell_id"], []).append(r)
    out = {}
    for cid, rs in acc.items():
        v, _ = mean_std([r["value"] for r in rs])
        b, _ = mean_std([r["base"] for r in rs])
        out[cid] = (None if b is None else 100 * b, None if v is None else 100 * v)
    return out


def _per_model(rows: list[Compression], bench: str, k: int) -> list[Compression]:
    """Per model, and per model x reward: compression from the runs' mean pass@1 and pass@k."""

    def pooled(scope: str, model: str, reward: str, mine: list[Compression]) -> Compression:
        def avg(attr: str) -> float | None:
            return mean_std([getattr(r, attr) for r in mine])[0]

        p1b, p1a, pkb, pka = avg("p1_before"), avg("p1_after"), avg("pk_before"), avg("pk_after")
        return _compression_row(scope, model, model, reward, bench, k, p1b, p1a, pkb, pka, len(mine))

    out = []
    for model in sorted({r.model for r in rows}):
        mine = [r for r in rows if r.model == model]
        out.append(pooled("model", model, "all", mine))
        for reward in sorted({r.reward for r in mine}):
            out.append(pooled("model x reward", model, reward, [r for r in mine if r.reward == reward]))
    return out


def health(con: Any, sweep: str | None) -> list[HealthRow]:
    sql = "SELECT cell_id, model, reward, clip, seed, health FROM cells"
    params: dict[str, Any] = {}
    if sweep:
        sql += " WHERE cell_id IN (SELECT cell_id FROM sweep_cells WHERE sweep = $s)"
        params["s"] = sweep
    out = []
    for cid, model, reward, clip, seed, raw in con.execute(
        sql + " ORDER BY model, reward, clip, seed", params
    ).fetchall():
        try:
            flags = json.loads(raw) if isinstance(raw, str) else (raw or [])
        except json.JSONDecodeError:
            flags = [{"flag": "unreadable_health", "detail": str(raw)[:80]}]
        flags = [f if isinstance(f, dict) else {"flag": str(f)} for f in flags or []]
        if flags:
            out.append(HealthRow(cid, model, reward, clip, seed, flags))
    return out


def clip_2x2(runs: list[Run], benchmark: str | None) -> tuple[list[ClipTwoByTwo], list[str]]:
    """The {standard, clip_higher} x {random, ground_truth} experiment, per model that has all four cells."""
    out, notes = [], []
    for model in sorted({r.model for r in runs}):
        mine = [
            r
            for r in runs
            if r.model == model
            and r.clip in ("standard", "clip_higher")
            and r.reward_name in ("random", "ground_truth")
        ]
        if not mine:
            continue
        gt = [r for r in mine if r.reward_name == "ground_truth"]
        rates = [r.train_reward for r in gt if r.train_reward is not None]
        gamma = _closest_gamma([r for r in mine if r.reward_name == "random"], mean_std(rates)[0])
        groups: dict[str, list[float]] = {}
        for clip in ("standard", "clip_higher"):
            for reward in ("random", "ground_truth"):
                groups[f"{clip}|{reward}"] = [
                    r.gain
                    for r in mine
                    if r.clip == clip
                    and r.reward_name == reward
                    and r.gain is not None
                    and (reward != "random" or r.gamma == gamma)
                ]
        missing = [k.replace("|", " x ") for k, v in groups.items() if not v]
        if missing:
            if len(missing) < 4:
                notes.append(
                    f"{model}: the clip 2x2 is incomplete (no finished run for {', '.join(missing)})"
                )
            continue
        out.append(_analyse_2x2(model, benchmark or "-", gamma, groups))
    return out, notes


def _analyse_2x2(
    model: str, benchmark: str, gamma: float | None, groups: dict[str, list[float]]
) -> ClipTwoByTwo:
    cells = {k: estimate(v, seed=i) for i, (k, v) in enumerate(groups.items())}
    e_r, boot_r = difference(groups["clip_higher|random"], groups["standard|random"], seed=10)
    e_g, boot_g = difference(groups["clip_higher|ground_truth"], groups["standard|ground_truth"], seed=20)
    inter_mean = None if e_r.mean is None or e_g.mean is None else e_g.mean - e_r.mean
    inter = _effect_from(None if boot_r is None or boot_g is None else boot_g - boot_r, inter_mean)
    bias, explore = direction(e_r, want_negative=True), direction(e_g, want_negative=False)
    if bias == "supported" and explore == "supported":
        reading = "both"
    elif bias == "supported":
        reading = "clipping bias"
    elif explore == "supported":
        reading = "rare exploration"
    else:
        reading = "neither"
    n_min = min(len(v) for v in groups.values())
    lean = [name for name, d in (("clipping bias", bias), ("rare exploration", explore)) if d == "suggested"]
    if n_min < 2:
        confidence = "none"
    elif reading != "neither" or not lean:  # a supported reading, or a clean null result
        confidence = "high" if n_min >= FEW_SEEDS else "moderate"
    else:  # inconclusive: the estimates lean one way but the intervals include 0
        confidence = "low"
    statement = _statement_2x2(e_r, e_g, bias, explore, reading, confidence, lean, n_min)
    notes = []
    if 2 <= n_min < FEW_SEEDS:
        notes.append(
            f"only {n_min} seeds in the smallest cell: percentile bootstrap intervals are too narrow "
            "with few seeds; read the confidence as optimistic"
        )
    if inter.mean is not None:
        notes.append(f"interaction (effect under ground_truth - effect under random) {inter.text()}")
    return ClipTwoByTwo(
        model,
        benchmark,
        gamma,
        cells,
        e_r,
        e_g,
        inter,
        bias,
        explore,
        reading,
        confidence,
        statement,
        notes,
    )


def _statement_2x2(
    e_r: Effect,
    e_g: Effect,
    bias: str,
    explore: str,
    reading: str,
    confidence: str,
    lean: list[str],
    n_min: int,
) -> str:
    """The 2x2's reading in words: both simple effects, then what the data support."""
    parts = [
        f"Clip-Higher changed the random run by {e_r.text()} points"
        + (f" (bootstrap P(<0) = {e_r.p_negative:.2f})" if e_r.p_negative is not None else "")
        + f": clipping bias {bias}.",
        f"It changed the ground-truth run by {e_g.text()} points"
        + (f" (bootstrap P(>0) = {e_g.p_positive:.2f})" if e_g.p_positive is not None else "")
        + f": rare exploration {explore}.",
    ]
    if confidence == "none":
        parts.append(
            "With one run in some cell there is no interval: treat the reading as a guess and add seeds."
        )
    elif reading == "neither":
        parts.append(
            "Neither reading is supported at 95%"
            + (
                f"; the estimates lean towards {' and '.join(lean)} (bootstrap P >= {LEAN}): add seeds."
                if lean
                else "; Clip-Higher shows no effect the data can distinguish from 0."
            )
        )
    else:
        parts.append(
            f"The data support {reading} (95% bootstrap interval excludes 0, {n_min}+ seeds per cell)."
        )
    return " ".join(parts)


def _fresh_benchmark(con: Any, runs: list[Run]) -> str | None:
    """The first fresh benchmark (data.Benchmark.fresh) the runs were evaluated on."""
    from ..data.sets import BENCHMARKS

    stored = con.execute(
        "SELECT DISTINCT benchmark FROM evals WHERE NOT is_baseline AND list_contains($ids, cell_id) ORDER BY 1",
        {"ids": [r.cell_id for r in runs]},
    ).fetchall()
    fresh = [b for (b,) in stored if b in BENCHMARKS and BENCHMARKS[b].fresh]
    return fresh[0] if fresh else None


def probe_rates(con: Any, model: str, benchmark: str) -> dict[float, tuple[float, float, float]]:
    """The model's stored probes (untrained weights) on a benchmark: fraction -> (% exact match, mean
    ROUGE-L, % answered correctly), over the problems long enough to cut."""
    rows = con.execute(
        "SELECT p.fraction, avg(ps.exact_match::DOUBLE), avg(ps.rouge_l), "
        "avg(coalesce(ps.correct, false)::DOUBLE) FROM probes p JOIN probe_samples ps ON ps.probe_id = p.probe_id "
        "WHERE p.model = $m AND p.benchmark = $b AND p.checkpoint IS NULL AND NOT coalesce(ps.skipped, false) "
        "GROUP BY p.fraction ORDER BY p.fraction",
        {"m": model, "b": benchmark},
    ).fetchall()
    return {float(f): (100 * em, rl, 100 * acc) for f, em, rl, acc in rows if em is not None}


def _headline(rates: dict[float, tuple[float, float, float]]) -> float | None:
    """The probe fraction to show: the headline one when stored, else the closest to it (the larger of two
    equally close: more of the problem shown)."""
    if not rates:
        return None
    return min(rates, key=lambda f: (round(abs(f - q.HEADLINE_FRACTION), 9), -f))


def _gains(est: Estimate) -> bool:
    return est.mean is not None and est.mean > MEMORY_GAIN_POINTS and (est.low is None or est.low > 0)


def contamination(
    con: Any, sweep: str | None, runs: list[Run], benchmark: str | None
) -> tuple[list[Contamination], list[str]]:
    """Per model and reward: gains on the diagnosed and on the fresh benchmark, next to the probe."""
    from ..data.sets import BENCHMARKS

    if benchmark is None or not runs:
        return [], []
    notes = []
    if benchmark in BENCHMARKS and BENCHMARKS[benchmark].fresh:
        return [], [f"contamination: {benchmark} is itself fresh; diagnose a benchmark a model may have seen"]
    fresh = _fresh_benchmark(con, runs)
    fresh_vals = (
        _per_cell(q.tidy(con, sweep=sweep, dims=[], metric="pass@1", benchmark=fresh, step="final"))
        if fresh
        else {}
    )
    if fresh is None:
        notes.append(
            "contamination: no fresh benchmark evaluated; add randcalc (toy-fresh for toy families) to "
            "eval.benchmarks to tell memory from reasoning"
        )
    out = []
    for model in sorted({r.model for r in runs}):
        rates = probe_rates(con, model, benchmark)
        frac = _headline(rates)
        em, rl, acc = rates[frac] if frac is not None else (None, None, None)
        fresh_rates = probe_rates(con, model, fresh) if fresh else {}
        ffrac = _headline(fresh_rates)
        em_fresh = fresh_rates[ffrac][0] if ffrac is not None else None
        can = em is not None and em >= COMPLETION_RATE
        if frac is None:
            notes.append(
                f"contamination: no probe of {model} on {benchmark} stored (`spurisweep probe --model "
                f"{model} --benchmarks {benchmark}`, or eval.probe: true)"
            )
        mine = [r for r in runs if r.model == model]
        for i, reward in enumerate(sorted({r.reward_name for r in mine})):
            cells = [r for r in mine if r.reward_name == reward]
            gain = estimate([r.gain for r in cells], seed=30 + i)
            pairs = [fresh_vals.get(r.cell_id, (None, None)) for r in cells]
            gf = [v - b for b, v in pairs if b is not None and v is not None]
            gain_fresh = estimate(gf, seed=60 + i)
            flagged = (
                can
                and reward in SPURIOUS_REWARDS
                and fresh is not None
                and _gains(gain)
                and gain_fresh.mean is not None
                and not _gains(gain_fresh)
            )
            out.append(
                Contamination(
                    model,
                    reward,
                    benchmark,
                    fresh,
                    gain,
                    gain_fresh,
                    frac,
                    em,
                    rl,
                    acc,
                    em_fresh,
                    can,
                    flagged,
                )
            )
    return out, notes


def diagnose(con: Any, sweep: str | None, *, benchmark: str | None = None, k: int | None = None) -> Diagnosis:
    """All diagnostics for the cells of one sweep (or the whole store when sweep is None)."""
    q.check_sweep(con, sweep, "SWEEP")
    q.check_benchmark(con, benchmark)
    if k is not None and k < 2:
        raise ConfigError(f"pass@k for compression needs k >= 2, got {k}", field="--k")
    bench = benchmark or q.default_benchmark(con, sweep)
    runs = _runs(con, sweep, bench)
    models = sorted({r.model for r in runs})
    d = Diagnosis(sweep, bench, len(runs), models)
    if not runs:
        d.notes.append("no finished cells in the store for this sweep")
        return d
    if bench is None:
        d.notes.append("no benchmark evaluations stored: gains cannot be computed")
    d.sensitivity = sensitivity(runs, con, bench)
    if not d.sensitivity:
        d.notes.append("spurious-reward sensitivity needs a `random` reward run (and ideally `ground_truth`)")
    d.compression, notes = compression(con, sweep, runs, benchmark, k, runs_benchmark=bench)
    d.notes += notes
    d.health = health(con, sweep)
    d.clip2x2, notes = clip_2x2(runs, bench)
    d.notes += notes
    d.contamination, notes = contamination(con, sweep, runs, bench)
    d.notes += notes
    families = sorted({family_of(m) for m in models})
    if len(families) == 1:
        d.warnings.append(
            f"single model family: every conclusion here rests on {families[0]} "
            f"({', '.join(models)}). The paper finds spurious-reward gains on Qwen2.5-Math but not "
            "on Llama or OLMo: repeat on another family before generalising."
        )
    two_by_two_families = sorted({family_of(x.model) for x in d.clip2x2})
    if len(two_by_two_families) == 1 and len(families) > 1:
        d.warnings.append(
            f"the clip 2x2 reading rests on one model family ({two_by_two_families[0]}): run "
            "the 2x2 on another family before generalising"
        )
    for s in d.sensitivity:
        if s.flagged:
            d.warnings.append(
                f"{s.model}: the random reward gains {s.random.mean:+.1f} points "
                f"(> {SENSITIVITY_POINTS:.0f}): this family is spurious-reward sensitive; "
                "its gains need cross-family checks"
            )
    d.warnings += _contamination_warnings(d.contamination)
    return d


def _contamination_warnings(rows: list[Contamination]) -> list[str]:
    out = []
    for model in dict.fromkeys(c.model for c in rows):
        mine = [c for c in rows if c.model == model]
        first = mine[0]
        if first.can_complete:
            out.append(
                f"{model} completes {first.completion:.1f}% of {first.benchmark}'s problems word for word from "
                f"the first {first.fraction:.0%} (and answers {first.probe_accuracy:.1f}% of them from the cut "
                f"problem): it has seen {first.benchmark}; read its gains there against "
                f"{first.fresh or 'a fresh benchmark'}"
            )
        for c in mine:
            if c.flagged:
                out.append(
                    f"{model}: the spurious reward {c.reward} gains on a benchmark the family can complete but "
                    f"not on the fresh one ({c.text()}): the gain looks like memorisation, not reasoning"
                )
    return out


# ---------------------------------------------------------------------------------------------- rendering
def _pct(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else _num(x, signed)


def _table(title: str, hdr: list[str], rows: list[list[str]], notes: list[str]) -> rnd.Table:
    return rnd.Table(
        hdr, rows, title, notes, row_styles=["bold red" if "SENSITIVE" in r else None for r in rows]
    )


def sections(d: Diagnosis) -> list[rnd.Table]:
    """The tables of the report (title, header, rows, notes), shared by every format."""
    return [
        _sensitivity_table(d),
        _compression_table(d),
        _health_table(d),
        *_clip_tables(d),
        _contamination_table(d),
    ]


def _sensitivity_table(d: Diagnosis) -> rnd.Table:
    sens = [
        [
            s.model,
            s.clip,
            "-" if s.hit_rate is None else f"{s.hit_rate:.2f}",
            "-" if s.gamma is None else f"{s.gamma:g}",
            s.ground_truth.text(),
            _paired_text(s) or s.random.text(),
            "SENSITIVE" if s.flagged else "ok",
        ]
        for s in d.sensitivity
    ]
    methods = dict.fromkeys(f"random gain: {s.paired.delta.method}" for s in d.sensitivity if s.paired)
    return _table(
        f"spurious-reward sensitivity: gain vs the untrained model on {d.benchmark} (points, mean [95% CI])",
        [
            "model",
            "clip",
            "gt hit rate",
            "random gamma",
            "ground_truth gain",
            "random gain",
            f"random > {SENSITIVITY_POINTS:.0f}?",
        ],
        sens,
        [*methods, *(f"{s.model}: {s.note}" for s in d.sensitivity if s.note)],
    )


def _paired_text(s: Sensitivity) -> str | None:
    """The random gain with its paired interval (≈: the interval contains 0), when the store had the rows."""
    if s.paired is None:
        return None
    from .. import stats

    return f"{stats.format_delta(s.paired.delta)} (n={s.paired.delta.n_runs})"


def _compression_table(d: Diagnosis) -> rnd.Table:
    shown = [c for c in d.compression if c.scope != "run"]
    per_run = [c for c in d.compression if c.scope == "run"]
    shown += per_run if len(per_run) <= MAX_RUN_ROWS else []
    comp_rows = [
        [
            c.scope,
            c.label,
            c.reward,
            _pct(c.p1_before),
            _pct(c.p1_after),
            _pct(c.pk_before),
            _pct(c.pk_after),
            "-" if c.compression is None else f"{c.compression:.2f}",
            _pct(c.capability, True),
            c.reading,
        ]
        for c in shown
    ]
    k = d.compression[0].k if d.compression else "k"
    bench = d.compression[0].benchmark if d.compression else "-"
    notes = []
    if d.compression:
        notes.append(
            f"compression = pass@1 gain / (pass@{k} - pass@1 before); > {COMPRESSION_THRESHOLD} = mostly "
            f"search compression; capability = pass@{k} gain (points)"
        )
    if len(per_run) > MAX_RUN_ROWS:
        notes.append(f"{len(per_run)} per-run rows left out here (--format json lists them)")
    return _table(
        f"compression vs capability on {bench} (pass@1 and pass@{k}, %, before -> after)",
        [
            "scope",
            "run / model",
            "reward",
            "pass@1 before",
            "pass@1 after",
            f"pass@{k} before",
            f"pass@{k} after",
            "compression",
            "capability",
            "reading",
        ],
        comp_rows,
        notes,
    )


def _contamination_table(d: Diagnosis) -> rnd.Table:
    rows, styles = [], []
    for c in d.contamination:
        verdict = "MEMORY?" if c.flagged else ("completes it" if c.can_complete else "ok")
        rows.append(
            [
                c.model,
                c.reward,
                c.gain.text(),
                c.gain_fresh.text() if c.fresh else "-",
                "-" if c.completion is None else f"{c.completion:.1f}%",
                "-" if c.rouge_l is None else f"{c.rouge_l:.2f}",
                "-" if c.probe_accuracy is None else f"{c.probe_accuracy:.1f}%",
                "-" if c.completion_fresh is None else f"{c.completion_fresh:.1f}%",
                verdict,
            ]
        )
        styles.append("bold red" if c.flagged else None)
    first = d.contamination[0] if d.contamination else None
    bench, fresh = (first.benchmark, first.fresh or "fresh") if first else (d.benchmark or "-", "fresh")
    frac = next((c.fraction for c in d.contamination if c.fraction is not None), q.HEADLINE_FRACTION)
    return rnd.Table(
        [
            "model",
            "reward",
            f"gain on {bench}",
            f"gain on {fresh}",
            f"completion rate ({bench})",
            "ROUGE-L",
            "answer from cut",
            f"completion rate ({fresh})",
            "verdict",
        ],
        rows,
        f"contamination: gains (points, mean [95% CI]) next to the memorisation probe at {frac:.0%} of each problem",
        [
            f"completes it = completion rate >= {COMPLETION_RATE:.0f}%; MEMORY? = a spurious reward gains > "
            f"{MEMORY_GAIN_POINTS:g} points on {bench}, which the family can complete, but not on {fresh}"
        ]
        if rows
        else [],
        row_styles=styles,
    )


def _health_table(d: Diagnosis) -> rnd.Table:
    hrows = [
        [
            h.cell_id,
            h.model,
            h.reward,
            h.clip,
            str(h.seed),
            "; ".join(
                f"{f.get('flag')}" + (f" @step {f['step']}" if f.get("step") is not None else "")
                for f in h.flags
            ),
        ]
        for h in d.health
    ]
    return _table(
        "training-health flags",
        ["cell", "model", "reward", "clip", "seed", "flags"],
        hrows,
        [] if hrows else ["no cell raised a health flag"],
    )


def _clip_tables(d: Diagnosis) -> list[rnd.Table]:
    out = []
    for x in d.clip2x2:
        rows = []
        for reward in ("random", "ground_truth"):
            rows.append(
                [
                    reward,
                    x.cells[f"standard|{reward}"].text(),
                    x.cells[f"clip_higher|{reward}"].text(),
                    (x.effect_random if reward == "random" else x.effect_ground_truth).text(),
                ]
            )
        rows.append(["interaction", "", "", x.interaction.text()])
        gamma = f", random gamma={x.gamma:g}" if x.gamma is not None else ""
        out.append(
            _table(
                f"clip 2x2 on {x.model} ({x.benchmark} gain, points, mean [95% CI]{gamma}): reading = "
                f"{x.reading}, confidence = {x.confidence}",
                ["reward", "standard", "clip_higher", "clip_higher - standard"],
                rows,
                [x.statement, *x.notes],
            )
        )
    return out


def to_dict(d: Diagnosis) -> dict[str, Any]:
    return asdict(d)


def render(d: Diagnosis, fmt: str = "table") -> str | Any:
    if fmt not in FORMATS:
        raise ConfigError(suggest(fmt, list(FORMATS)), field="--format")
    head = (
        f"diagnosis of {'sweep ' + d.sweep if d.sweep else 'all stored cells'}: {d.runs} runs, "
        f"models {', '.join(d.models) or 'none'}"
    )
    if fmt == "json":
        return rnd.to_json(to_dict(d))
    secs = sections(d)
    if fmt == "markdown":
        lines = [f"## {head}", ""]
        lines += [f"> **warning:** {w}" for w in d.warnings]
        lines += [f"_{n}_" for n in d.notes]
        for t in secs:
            lines += ["", rnd.to_markdown(t, heading="### {}", note="\n{}", empty_grid=False)]
        return "\n".join(lines) + "\n"
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = [Text(head, style="bold")]
    parts += [Text(f"warning: {w}", style="bold yellow") for w in d.warnings]
    parts += [Text(n, style="italic") for n in d.notes]
    for t in secs:
        if t.rows:
            parts.append(rnd.rich_table(t, title_justify="left", overflow="fold"))
        else:
            parts.append(Text(f"{t.title}: nothing to show", style="dim"))
        parts += [Text(n) for n in t.notes]
    return Group(*parts)

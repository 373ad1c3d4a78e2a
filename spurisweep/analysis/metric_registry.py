"""The report metrics: one entry per metric (name, SQL, unit, help), from which the report's checks, its SQL
and the `report --metric` help text are all taken. A new per-sample metric is one entry in METRICS.

Kinds: "samples" is an SQL aggregate over the samples `s` of one evaluation; "passk" is computed from
per-problem counts (pass@K, any K); "train" reads the training log (the metrics table); "probe" is an SQL
aggregate over the per-problem rows `ps` of one memorisation probe (probe_samples, problems too short to
cut left out), pivoted over the probe's own dimensions (query.PROBE_DIMENSIONS). Entries whose name
holds an upper-case placeholder (pass@K, train:KEY) are patterns, checked by parse_metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, suggest

_CORRECT = "coalesce(s.correct, false)::DOUBLE"
#: the Bayesian posterior over per-problem counts pp(n, c): its mean and its standard deviation (the mean of
#: independent Beta(1 + c, 1 + n - c) posteriors), and z of a central 95% interval
_BAYES = "avg((pp.c + 1.0) / (pp.n + 2.0))"
_BAYES_SD = (
    "(sqrt(sum((pp.c + 1.0) * (pp.n - pp.c + 1.0) / (power(pp.n + 2.0, 2) * (pp.n + 3.0)))) / count(*))"
)
_Z95 = "1.959963984540054"


def _gpass(low: str, weight: str) -> str:
    """Per problem: sum over j from `low` to k of weight(j) * C(c, j) C(n - c, k - j) / C(n, k), the
    hypergeometric terms in log-gamma form (the pass@K SQL's way), impossible terms 0."""
    term = (
        "exp(lgamma(pp.c + 1) - lgamma(j + 1) - lgamma(pp.c - j + 1) + lgamma(pp.n - pp.c + 1) "
        "- lgamma({k} - j + 1) - lgamma(pp.n - pp.c - {k} + j + 1) - lgamma(pp.n + 1) + lgamma({k} + 1) "
        "+ lgamma(pp.n - {k} + 1))"
    )
    return (
        f"coalesce(list_sum([CASE WHEN j <= pp.c AND {{k}} - j <= pp.n - pp.c THEN ({weight}) * {term} "
        f"ELSE 0.0 END FOR j IN range(greatest(1, {low})::BIGINT, {{k}} + 1)]), 0.0)"
    )


@dataclass(frozen=True)
class MetricDef:
    """A report metric as the user names it."""

    name: str
    kind: str  # "samples", "passk", "train" or "probe"
    help: str
    unit: str = ""  # "%" (a fraction in [0, 1], shown in percent), "tokens", or "" (as logged)
    sql: str | None = None  # kind samples: the aggregate over the samples s of one evaluation
    key: str | None = None  # kind train: the logged key


METRICS: tuple[MetricDef, ...] = (
    MetricDef("pass@1", "samples", "share of samples correct, the default", "%", f"avg({_CORRECT})"),
    MetricDef(
        "avg@n", "samples", "the same, the paper's name with n samples per problem", "%", f"avg({_CORRECT})"
    ),
    MetricDef("pass@K", "passk", "unbiased, K <= samples per problem", "%"),
    MetricDef(
        "code_frequency",
        "samples",
        "share of responses mentioning python",
        "%",
        "avg(coalesce(s.has_python, false)::DOUBLE)",
    ),
    MetricDef(
        "code_block_frequency",
        "samples",
        "share with a code block",
        "%",
        "avg(coalesce(s.has_code_block, false)::DOUBLE)",
    ),
    MetricDef(
        "acc_with_code",
        "samples",
        "accuracy of responses mentioning python",
        "%",
        f"avg(CASE WHEN s.has_python THEN {_CORRECT} END)",
    ),
    MetricDef(
        "acc_without_code",
        "samples",
        "accuracy of the others",
        "%",
        f"avg(CASE WHEN NOT coalesce(s.has_python, false) THEN {_CORRECT} END)",
    ),
    MetricDef("mean_length", "samples", "response length", "tokens", "avg(s.n_tokens::DOUBLE)"),
    MetricDef(
        "truncated",
        "samples",
        "share cut at the token limit",
        "%",
        "avg(coalesce(s.truncated, false)::DOUBLE)",
    ),
    MetricDef(
        "ungradable", "samples", "share the grader could not judge", "%", "avg((s.correct IS NULL)::DOUBLE)"
    ),
    MetricDef(
        "probe_exact_match",
        "probe",
        "memorisation probe: share of cut problems whose continuation is the true rest, word for word",
        "%",
        "avg(ps.exact_match::DOUBLE)",
    ),
    MetricDef(
        "probe_rouge_l",
        "probe",
        "memorisation probe: mean ROUGE-L F of the continuation against the true rest (0-1)",
        "",
        "avg(ps.rouge_l)",
    ),
    MetricDef(
        "probe_accuracy",
        "probe",
        "memorisation probe: share answered correctly from the cut problem",
        "%",
        "avg(coalesce(ps.correct, false)::DOUBLE)",
    ),
    MetricDef("final_reward", "train", "mean training reward", key="reward"),
    MetricDef("train:KEY", "train", "any logged training metric, e.g. train:entropy"),
    # kind "problems" (helper-H, issue 25): an SQL aggregate over the per-problem counts `pp` (n samples, c
    # correct) of one evaluation; {k} and {tau} are the bound k and tau of a pattern name. The same numbers
    # as spurisweep.metrics.posterior, g_pass_at_k and mg_pass_at_k (tests/analysis/test_passk.py)
    MetricDef(
        "bayes",
        "problems",
        "Bayesian posterior mean accuracy, Beta(1,1) prior per problem (Don't Pass@k)",
        "%",
        "avg((pp.c + 1.0) / (pp.n + 2.0))",
    ),
    MetricDef(
        "bayes_lo",
        "problems",
        "lower end of its 95% credible interval",
        "%",
        f"greatest(0.0, {_BAYES} - {_Z95} * {_BAYES_SD})",
    ),
    MetricDef(
        "bayes_hi",
        "problems",
        "upper end of its 95% credible interval",
        "%",
        f"least(1.0, {_BAYES} + {_Z95} * {_BAYES_SD})",
    ),
    MetricDef(
        "gpass@K_T",
        "problems",
        "G-Pass@K with threshold T: chance that K draws hold >= ceil(T*K) correct, e.g. gpass@4_0.5",
        "%",
        f"avg({_gpass('ceil({tau} * {k} - 1e-9)', '1.0')})",
    ),
    MetricDef(
        "mgpass@K",
        "problems",
        "mG-Pass@K: mean G-Pass@K over thresholds in (0.5, 1]",
        "%",
        f"avg(2.0 / {{k}} * {_gpass('ceil({k} / 2.0) + 1', 'j - ceil({k} / 2.0)')})",
    ),
)

#: metric -> SQL aggregate over the samples `s` of one evaluation
SAMPLE_METRICS: dict[str, str] = {m.name: m.sql for m in METRICS if m.kind == "samples" and m.sql}
#: memorisation-probe metric -> SQL aggregate over the probe rows `ps` of one probe
PROBE_METRICS: dict[str, str] = {m.name: m.sql for m in METRICS if m.kind == "probe" and m.sql}
#: metrics read from the training log (metrics table): name -> logged key
TRAIN_METRICS: dict[str, str] = {m.name: m.key for m in METRICS if m.kind == "train" and m.key}


def metric_help() -> str:
    """The `report --metric` help: every metric with its unit and what it measures."""

    def one(m: MetricDef) -> str:
        unit = f" ({m.unit})" if m.unit else ""
        return f"{m.name}{unit}: {m.help}"

    return "; ".join(one(m) for m in METRICS) + "."


@dataclass(frozen=True)
class Metric:
    """A checked metric: where its value comes from and how it is shown."""

    name: str
    kind: str  # "samples" (per-eval aggregate), "passk" (per-problem counts), "train" (metrics table),
    # "probe" (per-probe aggregate over probe_samples)
    sql: str | None = None
    k: int | None = None
    key: str | None = None
    unit: str = ""
    tau: float | None = None  # kind problems: the G-Pass@k threshold

    @property
    def percent(self) -> bool:
        return self.unit == "%"


_BY_NAME = {m.name: m for m in METRICS}


def parse_metric(con: Any, name: str) -> Metric:
    """A metric name -> Metric, or a ConfigError listing the valid names."""
    name = name.strip()
    if name in SAMPLE_METRICS:
        return Metric(name, "samples", sql=SAMPLE_METRICS[name], unit=_BY_NAME[name].unit)
    if m := re.fullmatch(r"pass@([0-9]{1,4})", name):
        k = int(m.group(1))
        if k < 1:
            raise ConfigError(f"pass@k needs k >= 1, got {name!r}", field="--metric")
        if k == 1:
            return Metric(name, "samples", sql=SAMPLE_METRICS["pass@1"], unit="%")
        return Metric(name, "passk", k=k, unit=_BY_NAME["pass@K"].unit)
    if name in PROBE_METRICS:
        return Metric(name, "probe", sql=PROBE_METRICS[name], unit=_BY_NAME[name].unit)
    if (problems := _problems_metric(name)) is not None:
        return problems
    if name in TRAIN_METRICS:
        return Metric(name, "train", key=TRAIN_METRICS[name], unit=_BY_NAME[name].unit)
    if name.startswith("train:"):
        key = name.removeprefix("train:")
        keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM metrics ORDER BY key").fetchall()]
        if key not in keys:
            msg = f"training metric {suggest(key, keys)}" if keys else "no training metrics are stored yet"
            raise ConfigError(msg, field="--metric")
        return Metric(name, "train", key=key)
    raise ConfigError(
        suggest(
            name, [*SAMPLE_METRICS, "pass@K", *PROBE_METRICS, *TRAIN_METRICS, "train:KEY", *PROBLEM_NAMES]
        ),
        field="--metric",
    )


#: kind "problems" entries (aggregates over per-problem counts): the plain names, and the patterns
PROBLEM_NAMES = [m.name for m in METRICS if m.kind == "problems"]


def _problems_metric(name: str) -> Metric | None:
    """bayes / bayes_lo / bayes_hi, gpass@K_T (0 < T <= 1) and mgpass@K as Metrics; None for other names."""
    if name in _BY_NAME and _BY_NAME[name].kind == "problems":
        return Metric(name, "problems", sql=_BY_NAME[name].sql, k=1, unit="%")
    if m := re.fullmatch(r"gpass@([0-9]{1,4})_([0-9]*\.?[0-9]+)", name):
        k, tau = int(m.group(1)), float(m.group(2))
        if k < 1 or not 0.0 < tau <= 1.0:
            raise ConfigError(f"gpass@K_T needs K >= 1 and 0 < T <= 1, got {name!r}", field="--metric")
        return Metric(name, "problems", sql=_BY_NAME["gpass@K_T"].sql, k=k, unit="%", tau=tau)
    if m := re.fullmatch(r"mgpass@([0-9]{1,4})", name):
        k = int(m.group(1))
        if k < 2:
            raise ConfigError(f"mgpass@K needs K >= 2, got {name!r}", field="--metric")
        return Metric(name, "problems", sql=_BY_NAME["mgpass@K"].sql, k=k, unit="%")
    return None

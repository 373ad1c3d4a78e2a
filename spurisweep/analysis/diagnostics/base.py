"""What every diagnostic shares: the `Analysis` interface, the runs they read (`Run`, `load_runs`), what
they answer with (`Rows`, `Diagnosis`), and the reward and table helpers.

A run is read from the store's columns, never re-derived: its lineage (`cells.lineage`, set at ingest
from the family registry), its reward (`cells.reward_name`) and resolved parameters (`cells.reward_params`),
and its algorithm (the stored config's `train.algorithm`; a cell from before the setting is "grpo").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from ... import stats
from ...metrics import mean_std
from ...rewards import REGISTRY, parse
from .. import query as q
from .. import render as rnd

#: bootstrap draws for the diagnostics' intervals over runs (more than a report's: few runs, tail quantiles)
BOOTSTRAP = 10_000
#: the algorithm of a cell whose stored config predates `train.algorithm`
DEFAULT_ALGORITHM = "grpo"


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One trained cell at its final evaluation (values in percent)."""

    cell_id: str
    model: str
    lineage: str  # the stored pretraining lineage: what "one family" means
    reward: str  # stored label, e.g. random(gamma=0.3)
    reward_name: str  # the raw reward (or composition), e.g. random
    clip: str
    seed: int | None
    algorithm: str = DEFAULT_ALGORITHM
    gamma: float | None = None  # the random reward's stored gamma (random runs only)
    train_data: str = ""  # the stored data.train (benchmark:NAME = trained on that benchmark's own prompts)
    train_reward: float | None = None  # mean training reward over all updates (the hit rate)
    value: float | None = None
    base: float | None = None

    @property
    def gain(self) -> float | None:
        return None if self.value is None or self.base is None else self.value - self.base


def load_runs(con: Any, sweep: str | None, benchmark: str | None) -> list[Run]:
    """The sweep's cells (every stored cell when sweep is None) with their final pass@1 on `benchmark` and
    its baseline (None where not evaluated), and their mean training reward."""
    where = "WHERE c.cell_id IN (SELECT cell_id FROM sweep_cells WHERE sweep = $s)" if sweep else ""
    cells = con.execute(
        "SELECT c.cell_id, c.model, c.lineage, c.reward, c.reward_name, c.reward_params, c.clip, c.seed, "
        f"json_extract_string(c.config, '$.train.algorithm'), json_extract_string(c.config, '$.data.train') "
        f"FROM cells c {where} ORDER BY c.cell_id",
        {"s": sweep} if sweep else {},
    ).fetchall()
    hit = dict(
        con.execute(
            "SELECT cell_id, avg(value) FROM metrics WHERE key = 'reward' AND "
            "list_contains($ids, cell_id) GROUP BY cell_id",
            {"ids": [c[0] for c in cells]},
        ).fetchall()
    )
    rows = (
        q.tidy(con, sweep=sweep, dims=[], metric="pass@1", benchmark=benchmark, step="final")
        if benchmark
        else []
    )
    vals = per_cell(rows)
    out = []
    for cid, model, lineage, label, name, params, clip, seed, algorithm, train_data in cells:
        run = Run(
            cid, model, lineage or model, str(label), str(name), clip, seed, algorithm or DEFAULT_ALGORITHM
        )
        run.train_data = train_data or ""
        run.gamma = _gamma(run.reward_name, params)
        run.train_reward = hit.get(cid)
        run.base, run.value = vals.get(cid, (None, None))
        out.append(run)
    return out


def _gamma(reward: str, params: Any) -> float | None:
    """The random reward's gamma from the stored resolved parameters ({"random": {"gamma": g}}); the
    registry's default when a store row holds none."""
    if reward != "random":
        return None
    stored = (json.loads(params) if isinstance(params, str) else params or {}).get("random") or {}
    return float(stored.get("gamma", REGISTRY["random"].params["gamma"]))


def per_cell(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """Value rows (query.tidy) -> per cell (baseline, value) in percent, each the mean of the cell's rows."""
    acc: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        acc.setdefault(r["cell_id"], []).append(r)
    out = {}
    for cid, rs in acc.items():
        v, _ = mean_std([r["value"] for r in rs])
        b, _ = mean_std([r["base"] for r in rs])
        out[cid] = (None if b is None else 100 * b, None if v is None else 100 * v)
    return out


def groups(runs: list[Run]) -> list[tuple[str, str]]:
    """The (model, algorithm) pairs of the runs, sorted: a study with an algorithm axis is never pooled."""
    return sorted({(r.model, r.algorithm) for r in runs})


def who(model: str, algorithm: str) -> str:
    """A model named for a note or title, with its algorithm when it is not the default."""
    return model if algorithm == DEFAULT_ALGORITHM else f"{model} ({algorithm})"


# ---------------------------------------------------------------------------------------------- rewards
def is_spurious(reward: str) -> bool:
    """Whether a reward carries no information about correctness: the registry's flag
    (rewards.REGISTRY[name].spurious). A composition (A_AND_B, inverse_A; rewards.parse) is spurious when
    every reward it is built from is: ANDs and inverses of uninformative signals stay uninformative, and
    one informative part (ground_truth in format_AND_ground_truth, or in inverse_ground_truth) makes the
    whole informative. A name the registry does not know is not called spurious."""
    try:
        bases = parse(reward).bases()
    except ValueError:
        return False
    return all(REGISTRY[b].spurious for b in bases)


def closest_gamma(random_runs: list[Run], hit_rate: float | None) -> float | None:
    """The random runs' gamma closest to the ground-truth hit rate (the registry's default gamma without
    one), the smaller of two equally close."""
    gammas = sorted({r.gamma for r in random_runs if r.gamma is not None})
    if not gammas:
        return None
    target = REGISTRY["random"].params["gamma"] if hit_rate is None else hit_rate
    return min(gammas, key=lambda g: (abs(g - target), g))


# ---------------------------------------------------------------------------------------------- interface
def test_set(run: Run) -> str | None:
    """The benchmark a run trained on (data.train: benchmark:NAME, data.test_set_training), else None."""
    return run.train_data.split(":", 1)[1] if run.train_data.startswith("benchmark:") else None


@dataclass
class Context:
    """What an analysis computes from: the open store, the request, and the runs read once for all."""

    con: Any
    sweep: str | None
    benchmark: str | None  # the benchmark of the runs' gains (the one asked, or the default)
    asked_benchmark: str | None  # --benchmark as given (None: each analysis picks its own)
    k: int | None
    runs: list[Run]  # the runs the analyses use (test-set training on the diagnosed benchmark left out)
    all_runs: list[Run] = field(default_factory=list)  # every run of the sweep


class Rows(list):
    """An analysis's rows (one dataclass each; the json output lists them), with the notes on what it could
    not compute in `notes` (printed above the tables)."""

    def __init__(self, rows: Any = (), notes: list[str] | None = None):
        super().__init__(rows)
        self.notes = list(notes or [])


class Analysis:
    """One diagnostic. Subclasses set `name` (its key in the json output and in Diagnosis.results) and
    implement `compute`; `tables`, `notes` and `warnings` read only the result and the Diagnosis (its
    header and the other analyses' results), so a Diagnosis renders without the store."""

    name: str = ""

    def compute(self, ctx: Context) -> Rows:
        raise NotImplementedError

    def empty(self) -> Rows:
        """The result when the sweep has no finished run."""
        return Rows()

    def tables(self, result: Rows, d: Diagnosis) -> list[rnd.Table]:
        return []

    def notes(self, result: Rows, d: Diagnosis) -> list[str]:
        return list(getattr(result, "notes", []))

    def warnings(self, result: Rows, d: Diagnosis) -> list[str]:
        return []


@dataclass
class Diagnosis:
    """The answer of `diagnose`: a header, each analysis's result by name (also read as attributes:
    `d.sensitivity`), and the warnings and notes every analysis gave, in registry order."""

    sweep: str | None
    benchmark: str | None
    runs: int
    models: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        results = self.__dict__.get("results") or {}
        if name in results:
            return results[name]
        raise AttributeError(name)


def plain(x: Any) -> Any:
    """A result as JSON-ready values (dataclasses as dicts, Rows as lists)."""
    if is_dataclass(x) and not isinstance(x, type):
        return asdict(x)
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    return x


# ---------------------------------------------------------------------------------------------- tables
def pct(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else stats.number(x, signed=signed)


def table(title: str, hdr: list[str], rows: list[list[str]], notes: list[str]) -> rnd.Table:
    """A diagnostics table: a row that calls something SENSITIVE is bold red."""
    return rnd.Table(
        hdr, rows, title, notes, row_styles=["bold red" if "SENSITIVE" in r else None for r in rows]
    )

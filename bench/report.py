"""Benchmark: the default pivot and `diagnose` over a synthetic store of 10 million sample rows.

The store is generated inside DuckDB (range() and random(), no Python loops) in a temporary folder:
1,000 cells (4 models x 5 rewards x {standard, clip_higher} x 25 seeds), each evaluated on math500 at
5 checkpoints with 4 samples per problem over 500 problems (5 x 500 x 4 = 10,000 rows per cell), plus
one baseline evaluation per model, 1.25 M training-metric rows and the usual cell settings. Text columns
(prompt, response) are left empty: the report never reads them.

Prints the time of the default pivot (model x reward, pass@1, final step), of a few heavier pivots, and
of `diagnose` (sensitivity, compression via pass@4, health, the clip 2x2). Target: pivot < 1 s on 2 cores.

    .venv/bin/python bench/report.py [--threads 2] [--cells 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

MODELS = ["qwen2.5-math-7b", "qwen2.5-7b", "llama3.1-8b-instruct", "olmo2-7b"]
REWARDS = ["ground_truth", "random", "format", "majority_vote", "incorrect_label"]
BASE = [0.49, 0.42, 0.37, 0.09]  # untrained accuracy per model
GAIN = [  # final gain per model x reward (fractions), after the paper's headline table
    [0.29, 0.21, 0.14, 0.27, 0.24],
    [0.34, 0.00, 0.16, 0.32, 0.28],
    [0.15, -0.06, -0.02, 0.07, -0.08],
    [0.17, -0.01, -0.01, -0.01, -0.01],
]
STEPS = [50, 100, 150, 200, 250]
PROBLEMS, SAMPLES = 500, 4


def build(path: Path, cells: int, threads: int) -> dict[str, float]:
    import duckdb

    from spurisweep import store

    con = duckdb.connect(str(path))
    con.execute(f"SET threads TO {threads}")
    store.init_schema(con)
    t0 = time.perf_counter()
    con.execute("SELECT setseed(0.42)")
    models = "[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    rewards = "[" + ", ".join(f"'{r}'" for r in REWARDS) + "]"
    con.execute(f"""CREATE TEMP TABLE cellgrid AS SELECT i,
        'cell' || lpad(i::VARCHAR, 5, '0') AS cell_id, i % 4 AS mi, (i // 4) % 5 AS ri, (i // 20) % 2 AS ci,
        i // 40 AS seed FROM range({cells}) t(i)""")
    con.execute(f"""INSERT INTO cells (cell_id, model, reward, clip, seed, preset, prompt, config, summary,
        health, done_mtime, ingested_at) SELECT cell_id, {models}[mi + 1], {rewards}[ri + 1],
        CASE WHEN ci = 0 THEN 'standard' ELSE 'clip_higher' END, seed, 'paper', 'chat', '{{}}', '{{}}',
        CASE WHEN i % 7 = 0 THEN '[{{"flag": "reward_std_collapse", "step": 120}}]' ELSE '[]' END, 1.0, 1.0
        FROM cellgrid""")
    con.execute("""INSERT INTO sweep_cells SELECT 'bench', c.cell_id,
        json_object('model', c.model, 'reward', c.reward, 'clip', c.clip, 'seed', c.seed) FROM cells c""")
    con.execute("""INSERT INTO cell_settings
        SELECT cell_id, 'reward', reward FROM cells UNION ALL
        SELECT cell_id, 'reward_params.random.gamma', '0.5' FROM cells WHERE reward = 'random' UNION ALL
        SELECT cell_id, 'train.learning_rate', '5e-07' FROM cells UNION ALL
        SELECT cell_id, 'model', model FROM cells""")
    steps = "[" + ", ".join(map(str, STEPS)) + "]"
    con.execute(f"""CREATE TEMP TABLE evgrid AS SELECT row_number() OVER () - 1 AS ei, g.cell_id, g.mi, g.ri,
        s.step FROM cellgrid g, (SELECT unnest({steps}) AS step) s ORDER BY g.i, s.step""")
    con.execute(f"""INSERT INTO evals SELECT 'base-' || m, NULL, m, NULL, NULL, 0, 'math500', 'chat', true, NULL,
        {SAMPLES}, 0.6, 1.0, 3072, 'vllm', 0, {PROBLEMS}, 1.0, '{{}}' FROM (SELECT unnest({models}) AS m)""")
    con.execute(f"""INSERT INTO evals SELECT cell_id || '-s' || step, cell_id, {models}[mi + 1], NULL, NULL, step,
        'math500', 'chat', false, 'base-' || {models}[mi + 1], {SAMPLES}, 0.6, 1.0, 3072, 'vllm', 0, {PROBLEMS},
        1.0, '{{}}' FROM evgrid""")
    base = "[" + ", ".join(map(str, BASE)) + "]"
    gain = "[" + ", ".join("[" + ", ".join(map(str, g)) + "]" for g in GAIN) + "]"
    per_eval = PROBLEMS * SAMPLES
    # every sample: eval = i // per_eval, problem and sample index from the rest; correctness drawn with a
    # probability that rises with the step towards the model x reward gain, shifted by problem difficulty
    sample_sql = """SELECT {eid}, 'math500-' || p, s, NULL, p::VARCHAR, NULL, NULL,
        random() < greatest(0.0, least(1.0, {acc} + ((p * 7919) % 1000) / 1000.0 * 0.6 - 0.3)),
        'ok', (150 + random() * 900)::INTEGER, random() < 0.02, random() < 0.6, random() < 0.3"""
    con.execute(f"""INSERT INTO samples {
        sample_sql.format(
            eid="e.cell_id || '-s' || e.step",
            acc=f"{base}[e.mi + 1] + {gain}[e.mi + 1][e.ri + 1] * e.step / {STEPS[-1]}",
        )
    }
        FROM (SELECT i // {per_eval} AS ei, (i % {per_eval}) // {SAMPLES} AS p, i % {SAMPLES} AS s
              FROM range({len(STEPS) * cells * per_eval}) t(i)) x JOIN evgrid e ON e.ei = x.ei""")
    con.execute(f"""INSERT INTO samples {
        sample_sql.format(
            eid="'base-' || {models}[mi + 1]".replace("{models}", models), acc=f"{base}[mi + 1]"
        )
    }
        FROM (SELECT i // {per_eval} AS mi, (i % {per_eval}) // {SAMPLES} AS p, i % {SAMPLES} AS s
              FROM range({len(MODELS) * per_eval}) t(i))""")
    con.execute(f"""INSERT INTO metrics SELECT g.cell_id, st, st, k.key,
        CASE k.key WHEN 'reward' THEN CASE WHEN g.ri = 1 THEN 0.5 ELSE {base}[g.mi + 1] + 0.2 * st / 250 END
                   WHEN 'reward_std' THEN 0.4 WHEN 'entropy' THEN 0.8 - 0.002 * st
                   WHEN 'clip_ratio/region_mean' THEN 0.001 + 0.002 * random()
                   ELSE 0.85 + 0.08 * st / 250 END
        FROM cellgrid g, range(1, {STEPS[-1] + 1}) r(st),
             (SELECT unnest(['reward', 'reward_std', 'entropy', 'clip_ratio/region_mean', 'token_prob/mean'])
              AS key) k""")
    build_s = time.perf_counter() - t0
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("cells", "evals", "samples", "metrics", "cell_settings")
    }
    con.execute("CHECKPOINT")
    con.close()
    return {"build_s": build_s, **counts}


def timed(fn, repeat: int) -> tuple[float, float]:
    """(first call, median of the following calls) in seconds."""
    times = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:]) if repeat else times[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    args = ap.parse_args()

    from spurisweep import store
    from spurisweep.analysis import diagnostics, report

    tmp = None
    if args.keep:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="spurisweep-bench-")
        folder = Path(tmp.name)
    db = store.db_path(folder)
    if not db.exists():
        info = build(db, args.cells, args.threads)
        print(
            f"built {db}: {info['samples']:,} samples, {info['evals']:,} evals, {info['cells']:,} cells, "
            f"{info['metrics']:,} metric rows in {info['build_s']:.1f} s; file {db.stat().st_size / 2**20:.0f} MiB"
        )
    print(f"machine: {os.cpu_count()} CPU cores, DuckDB threads={args.threads}")
    with store.connect(db) as con:
        con.execute(f"SET threads TO {args.threads}")
        cases = {
            "default pivot (model x reward, pass@1, final)": lambda: report.pivot(
                con, sweep="bench", rows="model", cols="reward"
            ),
            "pivot clip x reward, pass@4, ci": lambda: report.pivot(
                con, sweep="bench", rows="clip", cols="reward", metric="pass@4", spread="ci"
            ),
            "pivot reward x step (all 5 checkpoints + baseline)": lambda: report.pivot(
                con, sweep="bench", rows="reward", cols="step"
            ),
            "pivot model x reward, final_reward (metrics)": lambda: report.pivot(
                con, sweep="bench", rows="model", cols="reward", metric="final_reward"
            ),
            "diagnose": lambda: diagnostics.diagnose(con, "bench"),
        }
        for name, fn in cases.items():
            first, warm = timed(fn, args.repeat)
            print(f"{name:55s} first {first:6.3f} s   warm median {warm:6.3f} s")
        p = report.pivot(con, sweep="bench", rows="model", cols="reward")
        cell = p.cells[("qwen2.5-math-7b", "random")]
        print(
            f"sanity: qwen2.5-math-7b x random: {cell['mean']:.1f}% (n={cell['n']}), delta {cell['delta']:+.1f}"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""The CLI-side analysis of stored results: name checks and value rows (query), the report metrics
(metric_registry), one table renderer (render), pivots (report), the paper comparison (paper), the
diagnostics (diagnostics) and figures (plots). Statistics come from spurisweep.metrics.

Nothing here imports torch or trl: this side reads the DuckDB store only.
"""

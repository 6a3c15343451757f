"""Experiment logic behind the thin scripts in ``experiments/`` (SPEC §3).

Each study exposes ``run(quick=True, results_dir="results", figures_dir="figures", **kw) -> dict``
returning a record with ``"rows"``: the report rows ``{"id", "quantity", "value", "doc_value",
"tolerance", "status", "note"}`` where status ∈ {"agrees", "differs", "not comparable", "info"}.
"""

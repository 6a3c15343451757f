"""Helpers only the experiments use: report rows and records, figures, doc 002 oracles, the benchmark harness."""

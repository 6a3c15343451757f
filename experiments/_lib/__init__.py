"""Helpers only the experiments use: the shared command line (cli), report rows and records, figures, doc 002 oracles, the benchmark harness."""

"""Benchmarks that print Markdown tables: run each as ``python -m bench.NAME`` from the repository root.

Shared pieces: bench/harness.py (corpora, timer, table) and bench/peers.py (the tools measured side by side).
"""

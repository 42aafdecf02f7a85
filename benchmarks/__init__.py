"""Benchmarks of the drawstate sidecar against direct redis-py: `python -m benchmarks --help`.

See benchmarks/README.md for what each scenario measures and how the load is paced.
"""

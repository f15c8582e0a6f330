"""Pieces of `bench_capacity.py`: the fake LLM, the reference relays, the clients, the report.

Each server module is also a script, started by the benchmark in its own pinned process.
"""

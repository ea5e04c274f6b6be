"""Benchmarks of longpoll: each module runs on its own as ``python -m bench.NAME``.

See bench/README.md for what each measures and bench/RESULTS.md for figures.
"""

"""Benchmarks of the channel hub against a real ``hub serve`` process: ``python -m bench --help``.

Each benchmark reports its figure beside a ceiling measured in the same run on the same machine
(see ``DESIGN.md``, "Performance targets"). All traffic stays on 127.0.0.1; every loop is bounded
in count and in time.
"""

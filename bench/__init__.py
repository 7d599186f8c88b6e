"""taskdispatch's benchmark suite: `python -m bench [--quick]` writes docs/benchmarks.md.

See bench/README.md for what each module measures and how.
"""

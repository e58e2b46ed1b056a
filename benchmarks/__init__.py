"""hueyard vs raw Huey, measured in the same run: ``python -m benchmarks.run``.

See ``benchmarks/README.md`` for what each number means.
"""

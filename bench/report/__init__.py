"""The benchmark report of issue 6: one command measures everything side by side.

    python -m bench.report [--quick]

writes ``bench/report/REPORT.md``, ``bench/report/report.json`` and
``bench/report/throughput.png``. See :mod:`bench.report.__main__`.
"""

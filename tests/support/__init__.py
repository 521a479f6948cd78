"""Test helpers: real daemons started by the suite, the fake WSClean, the simulated sky, job records.

Imported as ``support.<module>`` (``tests/`` is on sys.path under pytest; ``bench/run.py``
puts it there too). Fixtures stay in ``tests/conftest.py``; what they use lives here.
"""

"""The pure core: config, data handler, grouping, tokens, WSClean argv, plan, job order.

Nothing here imports Prefect, paramiko, Dask, casacore, astropy or subprocess, nor any
other imgpipe package: a plan is decided from the config and from facts handed in
(:mod:`imgpipe.facts` reads them), so every rule is tested in milliseconds and a dry
run answers at once. ``tests/test_layers.py`` enforces this.
"""

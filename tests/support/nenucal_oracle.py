"""Run inside the nenucal venv: the original imgpipe's own command, with its pool stubbed.

``python nenucal_oracle.py CONFIG ARGS...`` runs ``nenucal.tools.imgpipe.main`` (its
settings, data handler, grouping loop and ``build_wsclean_cmd``) as the ``imgpipe``
command would, except that the worker pool records each job instead of running it;
the jobs go as JSON to ``$IMGPIPE_ORACLE_OUT``. ``nenucal.msutils`` (casacore) and
``nenucal.pool`` are stubbed: they are needed only for ``channels-out`` and to run jobs.
"""

import json
import os
import sys
import types

jobs = []


class RecordingPool:
    def add(self, cmd, run_on_host=None, category=None, label=None):
        jobs.append({"cmd": cmd, "host": run_on_host, "category": category})


for name, attrs in (("nenucal.msutils", {}), ("nenucal.pool", {"run_pool": lambda pool: None})):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module

from libpipe import worker  # noqa: E402

worker.get_worker_pool = lambda *args, **kwargs: RecordingPool()

from nenucal.tools import imgpipe  # noqa: E402

imgpipe.main.main(args=sys.argv[1:], standalone_mode=False)
with open(os.environ["IMGPIPE_ORACLE_OUT"], "w") as f:
    json.dump(jobs, f)

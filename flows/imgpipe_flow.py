"""Deployment entrypoint: ``flows/imgpipe_flow.py:imgpipe_flow``.

The flow itself lives in :mod:`imgpipe.orchestration.flow`; this file only gives
``prefect deploy`` a stable path inside the repository.
"""

from imgpipe.orchestration.flow import imgpipe_flow

__all__ = ["imgpipe_flow"]

"""imgpipe: image radio Measurement Sets with WSClean, as a Prefect flow.

Kept import-free on purpose: ``imgpipe --help`` and ``--version`` must not pull in
prefect, casacore or astropy.
"""

from imgpipe._version import __version__

__all__ = ["__version__"]

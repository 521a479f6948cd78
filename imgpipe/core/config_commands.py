"""Which keys of a config name code that imgpipe runs.

A config that sets ``[worker] wsclean``, an ``env_file``, an ``ssh_config`` (its
``ProxyCommand``), the MPI launcher or a Dask cluster class makes imgpipe run what it
names, as the user who runs imgpipe. Such a config is code, and is used only from files
no one else can write (:mod:`imgpipe.facts.file_trust`). Keys left at their defaults
name nothing: the default ``wsclean`` is the one on the PATH.
"""

from __future__ import annotations

from pathlib import Path

from imgpipe.core.config import Config
from imgpipe.core.schema import keys_of

_SECTIONS = (("worker", "worker"), ("prefect", "prefect"), ("mpi", "mpi"))


def named_commands(config: Config) -> tuple[str, ...]:
    """The code keys the config sets to something other than their default (``'[worker] wsclean'``, ...)."""
    named = []
    for section, attribute in _SECTIONS:
        values = getattr(config, attribute)
        for spec in keys_of(type(values)):
            if spec.code and getattr(values, spec.name) != spec.default:
                named.append(f"[{section}] {spec.name}")
    return tuple(named)


def code_files(config: Config) -> tuple[Path, ...]:
    """Files that are code by the config: the config's own files when it names commands,
    and the files it names to be sourced or read as code here (``env_file`` where it is a
    file of this machine, ``ssh_config``)."""
    if not named_commands(config):
        return ()
    files = list(config.files)
    if config.worker.ssh_config:
        files.append(Path(config.worker.ssh_config))
    if config.worker.env_file:
        env_file = Path(config.worker.env_file).expanduser()
        if env_file.is_file():  # (else a file of the jobs' nodes, checked by nothing here)
            files.append(env_file)
    return tuple(files)

"""A deployment run uses the config it was deployed with, or one beside it.

Anyone who can reach the Prefect API can start a deployment run with parameters of
their choosing. A config names the commands imgpipe runs (``[worker] wsclean``, an
``env_file``), so a ``config`` parameter pointing at a file of someone else's would run
their commands as the worker's user. A deployment run therefore takes its config only
from the folder of the config it was deployed with (that file, or another file in that
folder or below it); the files themselves must pass :mod:`imgpipe.facts.file_trust`
like any config that names commands.
"""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.runtime import deployment


def deployment_run() -> bool:
    """Is this flow run a deployment's (started by a worker), not the command line's?"""
    return deployment.id is not None


def config_refused(config: str) -> str | None:
    """Why this flow run may not use ``config``, or None (not a deployment run, or a
    config of the deployment's folder)."""
    if not deployment_run():
        return None
    with get_client(sync_client=True) as client:
        deployed = client.read_deployment(deployment.id)
    own = (deployed.parameters or {}).get("config")
    if not own:
        return (f"deployment {deployed.name!r} has no config of its own: deploy it with a `config` parameter "
                "(IMGPIPE_CONFIG in deployments/prefect.yaml); a run takes its config from that file's folder")
    folder = Path(own).expanduser().resolve().parent
    given = Path(config).expanduser().resolve()
    if folder in given.parents:
        return None
    return (f"config {config} is not in the folder of deployment {deployed.name!r}'s config ({folder}): a "
            "deployment run uses only configs from the folder it was deployed with")

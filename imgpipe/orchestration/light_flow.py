"""A Prefect flow that records its plain parameters without loading FastAPI.

Prefect records a flow run's parameters through FastAPI's ``jsonable_encoder``, and
importing FastAPI (its routing and OpenAPI models) is a tenth of a second on the path of
every command-line run to its first WSClean start. imgpipe's parameters are JSON values
already (strings, booleans, lists of strings) or objects that give their own summary as
``dict(value)`` (the command line's prepared run and backends); those are recorded as
they are, and anything else still goes through Prefect's own encoding, unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import Flow

_SCALARS = (str, bool, int, float, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _SCALARS) for item in value)
    return False


class LightFlow(Flow):
    """A :class:`prefect.Flow` whose ``serialize_parameters`` records JSON values, and
    objects of ``summarised`` types as ``dict(value)``, itself."""

    summarised: tuple[type, ...] = ()

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        own, other = {}, {}
        for key, value in parameters.items():
            if _plain(value):
                own[key] = list(value) if isinstance(value, tuple) else value
            elif isinstance(value, self.summarised):
                own[key] = dict(value)
            else:
                other[key] = value
        if other:  # (Prefect's encoder, FastAPI loaded, only for what is not plain)
            own.update(super().serialize_parameters(other))
        return {key: own[key] for key in parameters if key in own}


def light_flow(summarised: tuple[type, ...], **options: Any) -> Callable[[Callable], LightFlow]:
    """``@flow(**options)``, making a :class:`LightFlow` that summarises ``summarised``."""

    def make(fn: Callable) -> LightFlow:
        made = LightFlow(fn=fn, **options)
        made.summarised = summarised
        return made

    return make

"""What a run was asked to do: the command line's arguments, or a deployment's parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RunRequest:
    """One imgpipe run, as asked for (before date tokens, config or data handler are read)."""

    config: str
    """The config file, as given."""
    patterns: tuple[str, ...]
    """MS paths, or obs_id patterns with a data handler; may hold ``{yesterday}``/``{today}``."""
    combine: bool = False
    combine_obs_ids: bool = False
    nodes_mpi: str | None = None
    """``node1,node2``: each job as one distributed WSClean over these nodes."""
    dry_run: bool | None = None
    """None: as ``[worker] dry_run`` says."""
    force: bool = False
    """Redo jobs whose images are complete from an earlier run."""
    timezone: str = "UTC"
    """Time zone of the date tokens."""
    cwd: str = "."
    """Folder relative MS paths and out-dirs are read against."""
    replace: bool = False
    """Let a job replace the images of another job (other MSs) under its out-dir/name."""

    def flow_parameters(self) -> dict:
        """The flow's parameters for this request (what the Prefect UI shows)."""
        values = asdict(self)
        values["patterns"] = list(self.patterns)
        del values["cwd"]  # (a deployment run reads relative paths against its own working folder)
        return values

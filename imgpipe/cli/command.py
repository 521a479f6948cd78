"""Command line: ``imgpipe CONFIG.toml MS_OR_OBS_IDS... [--combine] [--combine_obs_ids]``.

Only click and imgpipe's light modules (the core, the facts, the backends' records)
are imported at start; Prefect (and its embedded server, several seconds) is loaded
only when jobs really run, so ``--help``, ``--version``, dry runs and config errors
answer at once (``tests/test_cli.py`` checks which modules ``--help`` loads).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable

import click

from imgpipe._version import __version__
from imgpipe.backends import RunBackends
from imgpipe.backends.probe import check_mpi
from imgpipe.cli.check import check_nodes
from imgpipe.cli.progress import interactive, progress_display
from imgpipe.core import events
from imgpipe.core.config import WSCLEAN_DEFAULTS
from imgpipe.core.errors import ImgpipeError, Interrupted
from imgpipe.core.job_resources import fits_nowhere
from imgpipe.core.ms_sharing import sharing_notes
from imgpipe.core.nodes import is_ssh
from imgpipe.core.plan import write_plan_json
from imgpipe.core.request import RunRequest
from imgpipe.core.results import RunSummary
from imgpipe.facts.prefect_profile import configured_api_url
from imgpipe.orchestration.prefect_internals import FILESYSTEM_LEASES, VIEW_AT, PrefectInternalMissing
from imgpipe.prepare import node_sizes, prepare_run, too_big_for_known_nodes
from imgpipe.products.provenance import DONE, not_run_reason, not_to_run, record_path
from imgpipe.products.provenance import read as read_record

EXIT_OK, EXIT_JOBS_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _debug_to_stderr() -> None:
    """``[worker] debug = true``: imgpipe's own DEBUG lines on the terminal too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("imgpipe: debug: %(name)s: %(message)s"))
    logger = logging.getLogger("imgpipe")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _dry_run_note(job, force: bool, replace: bool) -> tuple[str, str]:
    """(what a real run would do with this job: 'run', 'skip', 'refuse' or 'replace', its note)."""
    verdict = not_to_run(job, force, replace)
    if verdict is None:
        earlier = read_record(record_path(job.out_dir, job.name))
        if earlier and earlier.get("complete") is True:  # made by another command (a [wsclean] value changed)
            return "replace", "  # its earlier images, made by another command, would be replaced"
        return "run", ""
    kind, record = verdict
    if kind == DONE:
        return "skip", "  # done before: would be skipped (--force redoes it)"
    return "refuse", f"  # would be {not_run_reason(job, kind, record)}"


def _dry_run_totals(plan, kinds: list[str]) -> str:
    """The dry run's last line: what a real run would do, in numbers."""
    counts = {k: kinds.count(k) for k in ("run", "replace", "skip", "refuse")}
    nodes = plan.hosts([job for job, kind in zip(plan.jobs, kinds, strict=True) if kind in ("run", "replace")])
    return (f"dry run: {len(kinds)} job(s): {counts['run'] + counts['replace']} would run on {len(nodes)} node(s)"
            f"{' (' + ', '.join(nodes) + ')' if nodes else ''}, {counts['replace']} of them replacing earlier images; "
            f"{counts['skip']} done before; {counts['refuse']} refused; nothing was run or written")


class _NoLinkToAGoneServer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(VIEW_AT)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"imgpipe: error: {message}", err=True)
    sys.exit(code)


def _run_flow(prepared, run_backends, verbose: bool):
    """Run the Prefect flow for real on a prepared run; returns (summary or None, exit code).

    ``verbose``: Prefect's own log lines on the console too (see imgpipe.cli.console_log)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect 3.9's client telemetry (a notice on a terminal, then events sent out): off,
    # as the server's is; a user who wants it sets DO_NOT_TRACK=0
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect gives its embedded server 20 s to start; a busy head node can take longer,
    # and a nightly run should not be lost to that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Node-slot leases on disk, so that a run killed outright cannot hold slots forever
    # (see imgpipe.orchestration.node_limits).
    os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", FILESYSTEM_LEASES)
    server: Any = None  # the run's EmbeddedServer or KeptServer (imported only for a real run)
    set_here: list[str] = []
    # the environment's server, else the active Prefect profile's, as Prefect reads them
    # (imgpipe decides before importing Prefect; see imgpipe.facts.prefect_profile)
    if url := configured_api_url(os.environ):
        os.environ["PREFECT_API_URL"] = url
    else:
        # No Prefect server configured: the run's own, or the kept one ([prefect] server),
        # started now so that it starts while this process imports Prefect.
        if prepared.config.prefect.server == "kept":
            # a real run's only, as is the embedded one below (--help and dry runs start no server)
            from imgpipe.orchestration.kept_server import KeptServer

            server = KeptServer()
        else:
            # (see above)
            from imgpipe.orchestration.embedded_server import EmbeddedServer

            server = EmbeddedServer()
            prepared = prepared.checked(private_server=True)  # (no other run reaches it: MS locks stay on this machine)
            # Prefect's link to the run's page (prefect_internals.VIEW_AT) would point at a server that is
            # gone when the run ends: not printed (a kept or running server keeps it)
            logging.getLogger("prefect.flow_runs").addFilter(_NoLinkToAGoneServer())
        try:
            os.environ["PREFECT_API_URL"] = server.start()
        except (OSError, RuntimeError) as err:
            _fail(f"cannot start the Prefect server: {err}", EXIT_JOBS_FAILED)
        if getattr(server, "auth_string", None) and "PREFECT_API_AUTH_STRING" not in os.environ:
            os.environ["PREFECT_API_AUTH_STRING"] = server.auth_string  # the kept server's (see kept_server)
            set_here.append("PREFECT_API_AUTH_STRING")
        _say_kept(server)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _say_missing_internal(warnings.showwarning)
            return _run_flow_with(server, prepared, run_backends, verbose)
    finally:
        if server is not None:
            drain_prefect_workers()  # logs and events still queued go out while the server is up
            server.stop(wait=False)  # an embedded server's own stop overlaps the run's last lines and exit
            for name in ("PREFECT_API_URL", *set_here):
                del os.environ[name]


def _say_missing_internal(show: Callable) -> Callable:
    """A Prefect internal imgpipe uses and this Prefect lacks: one ``imgpipe: warning:``
    line (``prefect_internals.missing``); any other warning as Python shows it."""

    def say(message, category, *args, **kwargs):
        if issubclass(category, PrefectInternalMissing):
            click.echo(f"imgpipe: warning: {message}", err=True)
        else:
            show(message, category, *args, **kwargs)

    return say


def _say_kept(server) -> None:
    """Where the kept server is, when this run started it (or replaced a dead one)."""
    if getattr(server, "started", False):
        stale = f" (replacing pid {server.replaced}, gone)" if server.replaced else ""
        click.echo(f"imgpipe: started a Prefect server kept for later runs{stale}: UI at {server.ui_url} (its auth "
                   f"string is in {server.auth_file}); `prefect server stop` stops it", err=True)


def drain_prefect_workers() -> None:
    """Send Prefect's queued logs and events (at most 5 s each), if this run imported Prefect."""
    if "prefect" not in sys.modules:
        return
    try:
        # only when this run imported Prefect (checked above)
        from imgpipe.cli.console_log import console_lines
        from imgpipe.orchestration.prefect_internals import drain_logs_and_events

        with console_lines(verbose=True):  # (not their "Still processing items" lines)
            drain_logs_and_events()
    except Exception:  # best effort: the run's outcome is already decided
        pass


@contextmanager
def handling_signals(handler, signals=(signal.SIGINT, signal.SIGTERM)):
    """``handler`` for Ctrl-C and SIGTERM while the run lasts; the previous handlers after
    it, however it ended (a program that embeds imgpipe gets its own back)."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_flow_with(server, prepared, run_backends, verbose):
    stopper: list = []
    partial: list = []

    def remember(event, payload):
        if event == "interrupted":
            partial.append(payload)

    events.subscribe(remember)

    in_flow: list = []
    """Set once the flow runs: a signal before it (while Prefect is imported: an exception
    raised in an import can deadlock the import machinery) only stops the jobs and sets
    ``stopper``, which the command line looks at between its steps."""

    def interrupt(signum, frame):
        # Stop the WSClean processes at once (the flow engine would otherwise wait for
        # them while it unwinds), then unwind the flow.
        if stopper:
            # Again, while the jobs are being stopped: leave now, in one line. Each job's
            # wrapper stops its WSClean when imgpipe's pipe or SSH connection to it closes.
            os.write(2, b"imgpipe: interrupted again: leaving now (the jobs stop as their connections close)\n")
            os._exit(EXIT_INTERRUPTED)
        stop = Interrupted(signal.Signals(signum).name)
        stopper.append(threading.Thread(target=run_backends.cancel_all, args=(stop.who,), daemon=True))
        stopper[0].start()
        if in_flow:
            raise stop

    def interrupted():
        if stopper:
            stopper[0].join()
        else:
            run_backends.cancel_all()
        for line in partial[0].lines(every_job=False) if partial else []:
            click.echo(line)
        click.echo("imgpipe: interrupted: running WSClean jobs were stopped", err=True)
        return None, EXIT_INTERRUPTED

    try:
        with handling_signals(interrupt):
            return _run_until_done(server, prepared, run_backends, interrupted, stopper, verbose, in_flow)
    finally:
        events.unsubscribe(remember)


def _run_until_done(server, prepared, run_backends, interrupted, stopper, verbose, in_flow):
    try:
        # Prefect (seconds): only once jobs really run, never for --help or a dry run
        from prefect.exceptions import PrefectHTTPStatusError

        from imgpipe.cli.console_log import console_lines
        from imgpipe.orchestration.flow import RunFailed, imgpipe_flow

        if server is not None:
            try:
                server.wait_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]),
                                  abort=lambda: bool(stopper))
            except RuntimeError as err:
                _fail(str(err), EXIT_JOBS_FAILED)
    except KeyboardInterrupt:
        return interrupted()
    if stopper:  # stopped before the flow began
        return interrupted()
    state = None
    with console_lines(verbose), progress_display(len(prepared.plan.jobs), click.echo):
        in_flow.append(True)
        if not stopper:
            try:
                state = imgpipe_flow(**prepared.request.flow_parameters(), prepared=prepared, backends=run_backends,
                                     return_state=True)
            except KeyboardInterrupt:
                pass
            except PrefectHTTPStatusError as err:
                if err.response.status_code not in (401, 403):
                    raise
                _fail(f"the Prefect server at {os.environ.get('PREFECT_API_URL')} refused imgpipe "
                      f"({err.response.status_code} {err.response.reason_phrase}): set PREFECT_API_AUTH_STRING to its "
                      "auth string (see docs/deployments.md)")
    # stopped (the bar is gone by now: the stopped run's lines are printed below it, once):
    # by a signal, even one that came while Prefect was finishing the run, or by Prefect's
    # own SIGTERM handler (the flow run ended Cancelled)
    if state is None or stopper or state.is_cancelled():
        return interrupted()
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, RunFailed):
        outcome = outcome.summary
    if isinstance(outcome, RunSummary):
        return outcome, EXIT_OK if outcome.ok else EXIT_JOBS_FAILED
    if isinstance(outcome, ImgpipeError):
        _fail(str(outcome))
    _fail(f"run failed: {type(outcome).__name__}: {outcome}", EXIT_JOBS_FAILED)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgpipe")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.argument("ms_ins_or_obs_ids", nargs=-1, required=True)
@click.option("-c", "--combine", is_flag=True, help="Image several MSs together: all given MSs, or one job per spectral window and obs_id.")
@click.option("-o", "--combine_obs_ids", is_flag=True, help="With --combine and a data handler: one job per spectral window over all obs_ids.")
@click.option("-n", "--nodes_mpi", metavar="N1,N2", help="Run each job as one distributed WSClean (mpirun ... wsclean-mp) over these nodes, started on the first; see [mpi].")
@click.option("--dry-run/--no-dry-run", "dry_run", default=None, help="Print 'HOST: command' per job and run nothing (overrides [worker] dry_run).")
@click.option("--check", is_flag=True, help="Reach every node the plan uses and find WSClean there (after env_file); run nothing, write nothing.")
@click.option("--plan-json", type=click.Path(dir_okay=False), help="Write the job plan as JSON to this file.")
@click.option("-f", "--force", is_flag=True, help="Redo jobs whose images are complete from an earlier run (default: skip them).")
@click.option("--replace", is_flag=True, help="Let a job replace the images of another job (other MSs) under its out-dir/name (default: refuse it).")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="Time zone of {today}/{yesterday} in patterns.")
@click.option("-v/-q", "--verbose/--quiet", default=None,
              help="Prefect's own log lines on the terminal too, or only warnings and errors (default: quiet on a terminal, verbose into a file or pipe).")
def main(config_file, ms_ins_or_obs_ids, combine, combine_obs_ids, nodes_mpi, dry_run, check, plan_json, force, replace, tz,
         verbose):
    """Image Measurement Sets with WSClean, as described by CONFIG_FILE.

    MS_INS_OR_OBS_IDS are Measurement Set paths, or, when the config has a
    [data_handler] section, obs_id patterns GLOB[,GLOB...][:SWGLOB].
    """
    command_started = time.monotonic()
    request = RunRequest(os.path.abspath(os.path.expanduser(config_file)), tuple(ms_ins_or_obs_ids), combine,
                         combine_obs_ids, nodes_mpi, dry_run, force, tz, os.getcwd(), replace)
    try:
        prepared = prepare_run(request)
        if plan_json:
            write_plan_json(prepared.plan, plan_json, node_sizes(prepared.config, prepared.plan))
    except ImgpipeError as err:
        _fail(str(err))
    config, plan = prepared.config, prepared.plan
    for warning in plan.warnings:
        click.echo(f"imgpipe: warning: {warning}", err=True)
    if check:
        with RunBackends(config.worker) as run_backends:
            found = check_nodes(config, plan, run_backends)
        for host, ready, what in found:
            click.echo(f"{'ok    ' if ready else 'FAILED'} {host}: {what}")
        n_ready = sum(ready for _, ready, _ in found)
        click.echo(f"{n_ready} of {len(found)} node(s) ready for {len(plan.jobs)} job(s)")
        sys.exit(EXIT_OK if n_ready == len(found) else EXIT_JOBS_FAILED)
    if config.worker.debug:
        _debug_to_stderr()
    if config.worker.dry_run if dry_run is None else dry_run:
        if why := too_big_for_known_nodes(config, plan):  # what the run would refuse
            _fail(why)
        if config.defaults_used:
            given = ", ".join(f"{k} = {v!r}" for k, v in WSCLEAN_DEFAULTS if k in config.defaults_used)
            click.echo(f"imgpipe: note: [wsclean] defaults of nenucal's imgpipe applied: {given} "
                       "(set a key to change it, or to false to drop it)", err=True)
        notes = [_dry_run_note(job, force, replace) for job in plan.jobs]
        lines = [line + note for (_, note), line in zip(notes, plan.dry_run_lines(), strict=True)]
        if lines:
            click.echo("\n".join(lines))  # one write: 16 000 echo calls cost 0.3 s
        click.echo(_dry_run_totals(plan, [kind for kind, _ in notes]), err=True)
        for note in sharing_notes(plan.jobs):
            click.echo(f"imgpipe: note: {note}", err=True)
        return
    if not plan.jobs:
        click.echo("imgpipe: nothing to do (no job)")
        return

    # The run's backends (its SSH connections and node agents, a SLURM allocation), from
    # the node checks to the last job; released however the run ends.
    with RunBackends(config.worker) as run_backends:
        # only the nodes of jobs still to run (done ones are skipped whatever their node's state)
        hosts = plan.hosts([job for job in plan.jobs if not_to_run(job, force, replace) is None])
        if not config.prefect.dask and any(is_ssh(h) for h in hosts):
            # Reach the SSH nodes before starting Prefect: an unreachable node fails in seconds
            # (the connections stay open for the jobs, and the flow takes this answer).
            try:
                down = run_backends.reach_nodes(hosts, lambda m: click.echo(f"imgpipe: warning: {m}", err=True), quick=True)
            except ImgpipeError as err:
                _fail(str(err))
            for why in down.values():
                click.echo(f"imgpipe: warning: skipping unreachable node {why}", err=True)
            prepared = prepared.checked(down=down)
        if config.prefect.dask_address:
            # An existing Dask cluster: its scheduler and a worker on every node, before Prefect starts.
            from imgpipe.orchestration.dask_jobs import check_cluster

            try:
                down = check_cluster(config.prefect.dask_address, hosts, config.worker.skip_unreachable_nodes)
            except ImgpipeError as err:
                _fail(str(err))
            for why in down.values():
                click.echo(f"imgpipe: warning: skipping {why}", err=True)
        if config.nodes_mpi:
            try:
                check_mpi(config, run_backends.ssh if is_ssh(config.nodes_mpi[0]) else None)
            except ImgpipeError as err:
                _fail(str(err))
            prepared = prepared.checked(mpi=True)
        if why := fits_nowhere(plan.jobs, plan.pool, run_backends.capacity):  # (nodes reached above: their size is known)
            _fail(why)
        summary, code = _run_flow(prepared, run_backends, not interactive() if verbose is None else verbose)
    if summary is not None:  # (its wall time is the flow's: Prefect's start-up is not the nodes' fault)
        summary.command_s = time.monotonic() - command_started  # (said beside it when it differs)
        for line in summary.lines(every_job=False):  # (each job's line was printed as it finished)
            click.echo(line)
    sys.exit(code)

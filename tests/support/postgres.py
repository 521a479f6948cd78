"""A throw-away PostgreSQL server on 127.0.0.1 for a Prefect server's database.

Debian's ``postgresql`` package (its binaries in /usr/lib/postgresql/<version>/bin). The
cluster lives in a fresh folder under /tmp, trusts local connections (nothing outside
loopback can reach it), runs without fsync, and is stopped and removed when the block
ends. PostgreSQL refuses to run as root: as root it runs as the ``postgres`` user the
package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from support.prefect_server import free_port

START_TIMEOUT_S = 60


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL binaries (the newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def why_no_postgres() -> str | None:
    """Why a PostgreSQL server cannot be started here (None: it can)."""
    if postgres_bin() is None:
        return "PostgreSQL is not installed (Debian package postgresql; make test-deps installs it)"
    if os.getuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no postgres user to run PostgreSQL as"
    return None


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


@dataclass(frozen=True)
class Postgres:
    url: str
    """The SQLAlchemy URL of its database ``prefect`` (asyncpg driver), for PREFECT_API_DATABASE_CONNECTION_URL."""
    psql: tuple[str, ...]

    def query(self, sql: str) -> str:
        """One SQL statement in the database ``prefect``; its rows, unaligned."""
        res = subprocess.run([*self.psql, "-d", "prefect", "-tAc", sql], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()


@contextlib.contextmanager
def running_postgres():
    """Yields a :class:`Postgres` with an empty database ``prefect``."""
    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="imgpipe-postgres-"))
    data = folder / "data"
    log = folder / "postgres.log"
    log.touch()
    if os.getuid() == 0:  # the cluster's folder and log are the postgres user's
        owner = pwd.getpwnam("postgres")
        for path in (folder, log):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    server = None
    try:
        subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", "imgpipe", "-A", "trust", "-E", "UTF8",
                                  "--no-sync", "--no-instructions"]),
                       check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        port = free_port()
        with open(log, "w") as out:
            server = subprocess.Popen(
                _as_owner([str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                           "-k", str(folder), "-F", "-c", "max_connections=200"]),
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        psql = ("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "imgpipe")
        create = [*psql, "-d", "postgres", "-qc", "CREATE DATABASE prefect"]
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run(create, capture_output=True, timeout=30, stdin=subprocess.DEVNULL).returncode != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("PostgreSQL did not start: " + log.read_text()[-3000:])
            time.sleep(0.3)
        yield Postgres(f"postgresql+asyncpg://imgpipe@127.0.0.1:{port}/prefect", psql)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)

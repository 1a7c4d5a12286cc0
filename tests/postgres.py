"""A private PostgreSQL cluster for a test: initdb in a temporary directory, pg_ctl on a
free loopback port (127.0.0.1 only, no Unix socket anyone else sees), torn down after.

PostgreSQL refuses to run as root, so under root the cluster belongs to ``nobody``
(the directory is handed to it, and every PostgreSQL command runs through runuser).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers import free_port

SEARCH = ["/usr/lib/postgresql/*/bin"]


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl (Debian's postgresql package), or None."""
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    for version in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (version / "initdb").exists():
            return version
    return None


class Cluster:
    """``with Cluster() as pg: pg.dsn`` -- a fresh cluster with one database, ``lake``."""

    def __init__(self) -> None:
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (make test installs it)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cachediag-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "nobody", "--"]

    @property
    def dsn(self) -> str:
        return self.dsn_of("lake")

    def dsn_of(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={database} user=cachediag"

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "cachediag", name)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )

    def start(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "cachediag", "-A", "trust", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir} -c max_connections=100 -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", "log", "start")
        self.create_database("lake")
        return self

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

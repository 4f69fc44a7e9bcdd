"""A throwaway PostgreSQL cluster of the tests' own (tests/test_ops_postgres.py: the production
profile's MLflow and Prefect on PostgreSQL), on 127.0.0.1 only, as a non-root user when we are root."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tasks.ops.servers import ServerError


def pg_bin(tool: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(tool)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / tool).is_file():
            return str(folder / tool)
    raise ServerError(f"PostgreSQL's {tool} not found: install Debian's postgresql (`make system-packages`)")


@dataclass
class Postgres:
    data_dir: Path
    port: int
    user: str | None          # the OS user the cluster runs as (None: ourselves)
    log: Path

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _as_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def sql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over TCP (trust auth on 127.0.0.1); returns unaligned output."""
        done = subprocess.run([shutil.which("psql") or pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise ServerError(f"psql: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def create_database(self, name: str) -> None:
        self.sql(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        subprocess.run(self._as_user([pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                       capture_output=True)

    def start(self) -> None:
        """Start the (stopped) cluster again on its port, 127.0.0.1 only."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir.parent}"
        done = subprocess.run(self._as_user([pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-o",
                                             options, "-w", "-t", "120", "start"]), capture_output=True, text=True)
        if done.returncode != 0:
            raise ServerError(f"pg_ctl start failed: {done.stderr[-2000:]}\n"
                              f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")


def start_postgres(folder: Path, port: int) -> Postgres:
    """initdb + pg_ctl start in `folder`, listening on 127.0.0.1:port only, trust auth for the
    local superuser `postgres` (a throwaway cluster for tests).
    initdb refuses to run as root, so as root the cluster belongs to the `postgres` OS user."""
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        subprocess.run(["id", user], check=True, capture_output=True)
    folder.mkdir(parents=True, exist_ok=True)
    data, log = folder / "pgdata", folder / "postgres.log"
    if user:   # `folder`'s parents must let that user through (e.g. a fresh folder in /tmp)
        shutil.chown(folder, user)
        os.chmod(folder, 0o700)
    pg = Postgres(data, port, user, log)
    run = lambda cmd: subprocess.run(pg._as_user(cmd), capture_output=True, text=True)
    done = run([pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    if done.returncode != 0:
        raise ServerError(f"initdb failed: {done.stderr[-2000:]}")
    pg.start()
    return pg

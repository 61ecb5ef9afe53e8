"""The team profile's services for the tests: ``scripts/services.sh`` in a temporary folder.

Any test (or test folder) can use the fixture; import it in a ``conftest.py``::

    from tests.services import team_services  # noqa: F401

``team_services`` (session) runs ``scripts/services.sh up`` (PostgreSQL, Redis, S3, the MLflow
server, two Celery workers, the Dagster daemon and webserver) with ``CT_SERVICES_DIR`` in a
fresh temporary folder and free ports, and yields a :class:`TeamServices`: ``.dir``, ``.env()``
(the services' ``team.env`` as a dict: point a subprocess at them with it), ``.worker_pids()``
and ``.run(*args)``. ``services.sh down`` runs at the end of the session, also when a test or
``up`` failed, and also when the test process is killed (a watchdog process waits for it).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "services.sh"
PORT_VARS = ("CT_PG_PORT", "CT_REDIS_PORT", "CT_S3_PORT", "CT_MLFLOW_PORT", "CT_DAGSTER_PORT")
UP_TIMEOUT_S = 600  # every service, on a busy machine (MLflow's first start migrates its tables)

# Runs `services.sh down` and removes the services folder when its stdin closes without a
# word: the test process died.
_WATCHDOG = """
import shutil, subprocess, sys
if sys.stdin.read() != "done":
    subprocess.run(["bash", sys.argv[1], "down"], stdout=subprocess.DEVNULL, timeout=1200)
    shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux; else 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that 127.0.0.1 can bind now, below the ephemeral range.

    Below it, no outgoing connection of another process takes the port between this check
    and the service's bind (a port the kernel gave to an OS-chosen free port could be).
    """
    low, ports = _ephemeral_low(), []
    candidates = random.sample(range(20000, max(low, 20000 + 4 * count)), k=200)
    for port in candidates:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports on 127.0.0.1 below {low}")


def services_dir() -> Path:
    """A fresh, short folder that the ``postgres`` user can reach when the tests run as root
    (pytest's own temporary folders are closed to other users); PostgreSQL's Unix socket
    path inside it must stay under about 100 characters."""
    path = Path(tempfile.mkdtemp(prefix="ct-services-", dir="/tmp"))
    path.chmod(0o755)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (values as bash's ``printf %q`` writes them) as a dict."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, raw = line.partition("=")
        if sep and key and not key.startswith("#"):
            words = shlex.split(raw)
            values[key] = words[0] if words else ""
    return values


class TeamServices:
    """``scripts/services.sh`` on its own folder and ports.

    ``dir``: the services folder (``CT_SERVICES_DIR``); ``ports``: ``{CT_PG_PORT: port, ...}``;
    ``workers``: how many Celery workers ``up`` starts; ``extra_env``: more variables for
    ``services.sh`` (e.g. ``CT_CELERY_APP``).
    """

    def __init__(self, dir: Path, ports: dict[str, int], workers: int = 2):
        self.dir, self.ports, self.workers = dir, ports, workers
        self.extra_env: dict[str, str] = {}
        self._watchdog: subprocess.Popen | None = None

    @classmethod
    def fresh(cls, workers: int = 2) -> TeamServices:
        """A new services folder with free ports (nothing started yet)."""
        return cls(
            services_dir(), dict(zip(PORT_VARS, free_ports(len(PORT_VARS)), strict=True)), workers
        )

    def environ(self) -> dict[str, str]:
        """The environment ``services.sh`` runs in: this folder, these ports."""
        env = {k: v for k, v in os.environ.items() if k not in PORT_VARS}
        env.update({name: str(port) for name, port in self.ports.items()})
        env.update(CT_SERVICES_DIR=str(self.dir), CT_WORKERS=str(self.workers))
        env.update(self.extra_env)
        return env

    def run(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess:
        """``scripts/services.sh ARGS...`` (stdout and stderr captured as text)."""
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.environ(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def env(self) -> dict[str, str]:
        """``team.env``: the environment that points a process at these services."""
        return read_env_file(self.dir / "team.env")

    def pid(self, name: str) -> int | None:
        """The pid in ``pids/<name>.pid``, if any."""
        path = self.dir / "pids" / f"{name}.pid"
        return int(path.read_text().split()[0]) if path.exists() else None

    def worker_pids(self) -> dict[str, int]:
        """``{"worker1": pid, ...}``: each Celery worker's main process."""
        found = {}
        for path in sorted((self.dir / "pids").glob("worker*.pid")):
            found[path.stem] = int(path.read_text().split()[0])
        return found

    def log(self, name: str) -> str:
        path = self.dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def watch(self) -> None:
        """Start the watchdog that runs ``down`` if this process dies before :meth:`close`."""
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(SCRIPT), str(self.dir)],
            stdin=subprocess.PIPE,
            env=self.environ(),
            cwd=REPO,
            text=True,
            start_new_session=True,  # a Ctrl-C to the tests' process group does not stop it
        )

    def up(self, *services: str) -> subprocess.CompletedProcess:
        """``up SERVICES...``; a failure raises with the script's output and the logs' tails."""
        result = self.run("up", *services)
        if result.returncode != 0:
            logs = "\n".join(
                f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                for path in sorted((self.dir / "logs").glob("*.log"))
            )
            raise RuntimeError(
                f"services.sh up failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n{logs}"
            )
        return result

    def close(self) -> None:
        """``down``, then the folder goes. If ``down`` fails, the watchdog tries it again."""
        stopped = False
        try:
            stopped = self.run("down", timeout=300).returncode == 0
        finally:
            if self._watchdog is None:
                if stopped:
                    shutil.rmtree(self.dir, ignore_errors=True)
            elif stopped:
                self._watchdog.communicate("done", timeout=30)
                shutil.rmtree(self.dir, ignore_errors=True)
            else:
                self._watchdog.stdin.close()  # it runs `down` and removes the folder


@pytest.fixture(scope="session")
def team_services() -> Iterator[TeamServices]:
    """Every team-profile service, up for the whole session (``down`` at the end, always)."""
    services = TeamServices.fresh(workers=2)
    services.watch()
    try:
        services.up()
        yield services
    finally:
        services.close()

"""A local cluster on 127.0.0.1: redis-server, N daemons sharing it, Debian's nginx in front.

Everything runs in one temporary folder and is stopped on exit. nginx runs `deploy/nginx.conf`
itself, with only its upstream `server` lines and `listen` port rewritten, so what is measured
here is what `deploy/` ships. Used by `benchmarks.failover` and the replica tests.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from .daemon import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+\S+:\d+(\s[^;]*)?;\s*$", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen\s+\d+;", re.MULTILINE)
MISSING_MESSAGE = "{name} not installed (Debian package {package}: apt-get install {package}; `make system-deps`)"


class MissingProgram(RuntimeError):
    pass


def require(program: str, package: str) -> str:
    path = shutil.which(program) or (f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None)
    if path is None:
        raise MissingProgram(MISSING_MESSAGE.format(name=program, package=package))
    return path


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        time.sleep(0.05)


def render_nginx(template: str, listen_port: int, upstream_ports: list[int]) -> str:
    """deploy/nginx.conf for this machine: the same file, its upstream addresses and port replaced
    (each server line keeps the parameters the file gives the first one)."""
    found: list[str] = []

    def upstream(match: re.Match[str]) -> str:
        if found:
            return ""
        found.append(match.group(2) or "")
        return "\n".join(f"{match.group(1)}server 127.0.0.1:{port}{found[0]};" for port in upstream_ports)

    rendered = UPSTREAM_SERVER.sub(upstream, template)
    rendered, count = LISTEN.subn(rf"\g<1>listen 127.0.0.1:{listen_port};", rendered)
    if not found or count != 1:
        raise ValueError("deploy/nginx.conf: expected upstream `server host:port` lines and one `listen PORT;`")
    return rendered


def nginx_main_config(directory: Path, include: Path) -> str:
    """The process-level frame Debian's nginx needs to run unprivileged in `directory`."""
    temp = directory / "nginx-temp"
    temp.mkdir(exist_ok=True)
    return (
        f"daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'nginx-error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {include};\n}}\n"
    )


@dataclass
class Replica:
    """One daemon on a fixed port (a restart comes back where nginx expects it)."""

    name: str
    port: int
    args: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen[str] | None = None
    starts: int = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "--host", "127.0.0.1", "--port", str(self.port), "--store.replica", f"{self.name}.{self.starts}", *self.args],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on ws://"):
            self.process.kill()
            raise RuntimeError(f"replica {self.name} did not start (exit {self.process.wait()}); see {self.log_path}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_until(lambda: http_status(f"{self.http_url}/readyz") == 200, timeout, f"replica {self.name} /readyz")

    def kill(self) -> None:
        """kill -9: no drain, no goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self) -> None:
        """SIGTERM: the replica drains (`/readyz` 503, streams committed and moved, then exit)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def metric(self, name: str) -> float:
        """One unlabelled sample of this replica's /metrics (0 when absent)."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


@dataclass
class Cluster:
    """`with Cluster(directory, replicas=2, daemon_args=...) as cluster:` starts it all; exit stops it."""

    directory: Path
    replicas: int = 2
    daemon_args: tuple[str, ...] = ()
    redis_port: int = field(default_factory=free_port)
    nginx_port: int = field(default_factory=free_port)
    nodes: list[Replica] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx_port}/v1/stream"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def __enter__(self) -> Self:
        redis_server, nginx = require("redis-server", "redis-server"), require("nginx", "nginx")
        try:
            self._start_redis(redis_server)
            for i in range(self.replicas):
                args = ("--store.backend", "redis", "--store.url", self.redis_url, "--journal.directory", str(self.directory / f"journal-{i + 1}"), *self.daemon_args)
                replica = Replica(f"replica-{i + 1}", free_port(), args, self.directory / f"replica-{i + 1}.log")
                replica.start()
                self.nodes.append(replica)
            for replica in self.nodes:
                replica.wait_ready()
            self._start_nginx(nginx)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_redis(self, program: str) -> None:
        command = [program, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self._processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: _accepts(self.redis_port), 10, "redis-server")

    def _start_nginx(self, program: str) -> None:
        site = self.directory / "whisper-streamer.conf"
        site.write_text(render_nginx(NGINX_CONF.read_text(), self.nginx_port, [r.port for r in self.nodes]))
        main = self.directory / "nginx.conf"
        main.write_text(nginx_main_config(self.directory, site))
        self._processes.append(subprocess.Popen([program, "-p", str(self.directory), "-c", str(main)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: http_status(f"http://127.0.0.1:{self.nginx_port}/readyz") == 200, 10, "nginx")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for replica in self.nodes:
            if replica.process is not None and replica.process.poll() is None:
                replica.terminate()
        for replica in self.nodes:
            if replica.process is not None:
                replica.wait_exit(30)
        for process in reversed(self._processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False

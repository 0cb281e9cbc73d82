"""A real `python -m streamer` in a child process on a free loopback port (benchmarks and tests)."""

from __future__ import annotations

import socket
import subprocess
import sys


def free_port() -> int:
    """A loopback TCP port free now (for a listener whose port must be known before it starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """Starts the daemon and waits for its `listening on ws://HOST:PORT` line."""

    def __init__(self, *args: str, model: str = "tiny.en") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "--host", "127.0.0.1", "--port", "0", "--model", model, *args],
            stdout=subprocess.PIPE,
            stderr=None,  # the daemon's log stays visible: useful when a run fails
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("listening on ws://"):
            self.process.kill()
            raise RuntimeError(f"the daemon did not start (exit {self.process.wait()}): {line!r}")
        self.address = line.strip().removeprefix("listening on ws://")
        self.url = f"ws://{self.address}/v1/stream"
        self.http_url = f"http://{self.address}"

    def stop(self, timeout: float = 30) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

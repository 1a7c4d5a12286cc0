"""A real `cachediag serve` process on a loopback port the test picks."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`cachediag serve` in a child process, ready when it says it is serving."""

    def __init__(self, db: Path, *args: str, port: int | None = None) -> None:
        self.db, self.port = db, port or free_port()
        self.args = args
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stderr: list[str] = []

    def start(self, timeout: float = 60) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "cachediag",
            "serve",
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        # Read stderr on a thread from the start, and keep reading it: a select() on the
        # pipe misses lines a buffered readline already holds (the ready line among them),
        # and a server logging many refusals would otherwise fill the pipe and block.
        seen, ready, proc = [], threading.Event(), self.proc
        self._stderr = seen

        def read() -> None:
            for line in iter(proc.stderr.readline, ""):
                seen.append(line)
                if "cachediag serving" in line:
                    ready.set()
            ready.set()  # the server ended

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if ready.wait(timeout) and any("cachediag serving" in line for line in seen):
            return self
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(seen))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def api(self, path: str) -> dict:
        status, _, body = self.request("GET", "/api/v1/" + path)
        assert status == 200, body
        return json.loads(body)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop with ``sig``; returns what the server wrote to stderr."""
        if self.proc is None:
            return ""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._reader.join(timeout=10)
        self._reader = None
        return "".join(self._stderr)

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

"""A real `cachediag serve` process on a loopback port the test picks."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
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
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = self.proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "cachediag serving" in line:
                selector.close()
                self._drain(seen)
                return self
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(seen))

    def _drain(self, seen: list[str]) -> None:
        """Keep reading stderr: a server logging many refusals would otherwise fill the
        pipe, block in its logger and stop answering."""
        self._stderr = seen
        proc = self.proc
        assert proc is not None and proc.stderr is not None
        self._reader = threading.Thread(
            target=lambda: seen.extend(iter(proc.stderr.readline, "")), daemon=True
        )
        self._reader.start()

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
        if self._reader is None:  # never served: nothing reads stderr yet
            try:
                _, err = self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            self.proc = None
            return err or ""
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

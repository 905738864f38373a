"""Driving `hyperverify app` from tests: the server in a subprocess, and tabs that speak to it over
plain HTTP (http.client, so that a test can send any Host, Origin or body an attacker would)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 600  # the first start builds the bundle (ExecuTorch export)
PIN = "482916"


class App:
    """`hyperverify app` in a subprocess, on a free port of 127.0.0.1."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "hyperverify.sdk.cli", "app", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env or dict(os.environ))
        lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        self.url = ""
        while not self.url:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"hyperverify app did not print its URL in {START_TIMEOUT_S} s:\n" + "".join(self.output))
            if line is None:
                self.proc.wait()
                pytest.fail("hyperverify app exited:\n" + "".join(self.output))
            self.output.append(line)
            if match := re.search(r"(http://127\.0\.0\.1:(\d+)/)", line):
                self.url, self.port = match.group(1), int(match.group(2))
        threading.Thread(target=lambda: [self.output.append(line) for line in iter(lines.get, None)], daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 120) -> tuple[int, dict, bytes]:
        """One request exactly as given (Host included when set); (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def tab(self) -> Tab:
        return Tab(self)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def assert_clean(self) -> None:
        assert "Traceback" not in "".join(self.output), "".join(self.output)


@contextlib.contextmanager
def running(*args: str, env: dict | None = None) -> Iterator[App]:
    """`hyperverify app ARGS` for the length of a ``with`` block: stopped on the way out however the
    block ends, and, when the block passed, its output checked for tracebacks."""
    server = App(*args, env=env)
    try:
        yield server
    finally:
        server.stop()
    server.assert_clean()


class Tab:
    """A browser tab as a script: loads the page (its session cookie and CSRF secret), then calls the
    API with them, from the app's own origin unless told otherwise."""

    def __init__(self, app: App) -> None:
        self.app = app
        status, headers, body = app.raw("GET", "/")
        assert status == 200, body
        cookie = re.match(r"([^=;]+=[^;]*)", headers.get("set-cookie", ""))
        token = re.search(rb'<meta name="csrf-token" content="([^"]*)">', body)
        self.cookie = cookie.group(1) if cookie else ""
        self.token = token.group(1).decode() if token else ""

    def call(self, path: str, body: bytes | None = None, content_type: str = "application/json", *,
             origin: str | None = "", token: str | None = "", cookie: str | None = "",
             extra: dict | None = None) -> tuple[int, dict]:
        """GET without a body, POST with one; ``origin``/``token``/``cookie``: "" = this tab's own,
        None = leave the header out, anything else = send that."""
        headers = {"Content-Type": content_type} if body is not None else {}
        for name, value, own in (("Origin", origin, self.app.origin), ("X-CSRF-Token", token, self.token),
                                 ("Cookie", cookie, self.cookie)):
            value = own if value == "" else value
            if value is not None and (body is not None or name == "Cookie"):
                headers[name] = value
        headers.update(extra or {})
        status, _, data = self.app.raw("GET" if body is None else "POST", path, body, headers)
        return status, json.loads(data)

    def status(self) -> dict:
        code, reply = self.call("/api/status")
        assert code == 200, reply
        return reply

    def verify(self, jpeg: bytes, **kw) -> tuple[int, dict]:
        return self.call("/api/verify", jpeg, "image/jpeg", **kw)

    def enroll(self, photos: list[Path], pin: str | None = None, **kw) -> tuple[int, dict]:
        fields = {"pin": pin} if pin is not None else {}
        body, content_type = multipart([(p.name, p.read_bytes()) for p in photos], fields)
        return self.call("/api/enroll", body, content_type, **kw)

    def pin(self, pin: str, **kw) -> tuple[int, dict]:
        return self.call("/api/pin", json.dumps({"pin": pin}).encode(), **kw)

    def forget(self, pin: str | None = None, **kw) -> tuple[int, dict]:
        return self.call("/api/forget", json.dumps({"pin": pin} if pin else {}).encode(), **kw)


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with ``image`` file parts and text fields; (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                     f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"

"""A real browser for the web export: a static server on 127.0.0.1 and headless Chromium.

Used by the browser test and the browser benchmark. :func:`serve` serves a folder with the
cross-origin isolation headers (COOP/COEP) that WebAssembly threads need; :func:`chromium` starts
the system's Chromium (Debian's ``chromium``, ``/usr/bin/chromium``; ``$MOBILENETS_CHROMIUM``
overrides) through Playwright with a fresh profile and no background networking.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from mobilenets.errors import MobileNetsError

CHROMIUM_ENV = "MOBILENETS_CHROMIUM"
# No first-run UI, no calls home (the machine's network is closed: they would only fail), no GPU.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                      ".onnx": "application/octet-stream", ".json": "application/json"}

    def end_headers(self) -> None:
        # cross-origin isolation: SharedArrayBuffer, so WebAssembly threads
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) while the block runs; yields its base URL."""
    handler = functools.partial(_Handler, directory=os.fspath(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def chromium_path() -> str:
    """The Chromium to drive: ``$MOBILENETS_CHROMIUM``, else ``chromium`` on the PATH."""
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise MobileNetsError("Chromium is not installed: `apt-get install -y chromium` (make test does), "
                              f"or set {CHROMIUM_ENV}")
    return path


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``) with a fresh profile, closed after the block."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MobileNetsError("playwright is not installed: pip install playwright (the dev extra has it)") from None
    exe = chromium_path()
    with tempfile.TemporaryDirectory(prefix="mobilenet-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=headless, args=list(CHROMIUM_FLAGS[1:]))
        try:
            yield context
        finally:
            context.close()


def chromium_version() -> str:
    """``Chromium 156.0...`` as the binary prints it."""
    import subprocess

    out = subprocess.run([chromium_path(), "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().split(" built on")[0]


__all__ = ["CHROMIUM_FLAGS", "chromium", "chromium_path", "chromium_version", "serve"]

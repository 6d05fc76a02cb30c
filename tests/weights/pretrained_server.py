"""A real HTTP server on 127.0.0.1 for the pretrained-weights tests: serves files at their
publishers' URL paths, with HTTP Range, and fault modes per path (``drop`` closes the connection
halfway through every response, ``drop-once`` only the first, ``404``, ``html`` sends a login page).
The archives it serves are built from real weights by the tests (official layouts)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import dataclass, field


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    faults: dict[str, str] = field(default_factory=dict)  # URL path -> drop | drop-once | 404 | html
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""


def _handler(site: Site):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):  # noqa: N802 (http.server's name): what huggingface_hub asks before a download
            path = self.path.split("?", 1)[0]
            site.requests.append((f"HEAD {path}", None))
            if path not in site.files or site.faults.get(path) == "404":
                self.send_error(404)
                return
            data = site.files[path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
            self.end_headers()

        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            site.requests.append((path, self.headers.get("Range")))
            fault = site.faults.get(path)
            if fault == "404" or path not in site.files:
                self.send_error(404)
                return
            if fault == "html":
                body = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            data = site.files[path]
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes="):-1])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if fault in ("drop", "drop-once"):
                if fault == "drop-once":
                    site.faults.pop(path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def serve(site: Site):
    """Start the server in a thread; returns (server, thread); ``site.url`` is set."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server, thread

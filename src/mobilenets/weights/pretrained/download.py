"""Fetching a registry file into the cache, as torch.hub and huggingface_hub do.

* **Cache root**: ``$MOBILENETS_HOME`` if set, else torch.hub's checkpoint folder,
  ``$TORCH_HOME/hub/checkpoints`` (``$TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch``, else
  ``~/.cache/torch``, as torch.hub does), so archives sit beside the ones torch.hub keeps. Files
  keep the URL's name; converted models go in ``mobilenets/<entry>/`` under the root.
* **Atomic**: a transfer writes ``FILE.part`` and is renamed to ``FILE`` only when complete and
  verified: a partial file never counts as cached.
* **Resume**: a transfer that drops is resumed once with an HTTP ``Range`` request (a server that
  answers the whole file again is read from the start); if that fails too, the ``.part`` is removed
  and one line says what happened.
* **Verify**: a pinned sha256, else the one recorded in ``FILE.sha256`` by the first download, is
  checked on every later download and before every conversion; a mismatch is refused with one line
  naming both hashes, and the file is removed (the cache is left clean).
* **Offline**: ``MOBILENETS_OFFLINE=1`` (or huggingface_hub's ``HF_HUB_OFFLINE=1``) uses only the
  cache; what is missing is named in one line with the command that fetches it.
* **Mirror**: ``MOBILENETS_MIRROR=http://HOST:PORT`` replaces the scheme and host of every URL and
  keeps its path (``HF_ENDPOINT`` does the same for the Hub, read by huggingface_hub itself).

urllib (the standard library) does the HTTP: no new dependency, and nothing here needs more.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mobilenets.errors import MobileNetsError
from mobilenets.utils.cache import torch_hub_checkpoints

CHUNK = 1 << 16
TIMEOUT_S = 60
TRUE = ("1", "true", "yes", "on")


class DownloadError(MobileNetsError):
    """A download that could not finish or verify (one line; nothing is left in the cache)."""


def cache_root() -> Path:
    """``$MOBILENETS_HOME``, else torch.hub's ``$TORCH_HOME/hub/checkpoints`` (read on every call)."""
    own = os.environ.get("MOBILENETS_HOME")
    if own:
        return Path(own).expanduser()
    return torch_hub_checkpoints()


def offline() -> bool:
    """True when ``MOBILENETS_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in TRUE for v in ("MOBILENETS_OFFLINE", "HF_HUB_OFFLINE"))


def mirrored(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$MOBILENETS_MIRROR`` (if set); path kept."""
    mirror = os.environ.get("MOBILENETS_MIRROR", "").strip()
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror if "://" in mirror else f"http://{mirror}")
    if not base.netloc:
        raise MobileNetsError(f"MOBILENETS_MIRROR={mirror!r} is not http://HOST[:PORT]")
    parts = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + parts.path  # a mirror may serve under a prefix
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_record(path: Path) -> Path:
    """Where the sha256 of a cached file is recorded on its first download."""
    return path.with_name(path.name + ".sha256")


def expected_hash(path: Path, pinned: str | None) -> str | None:
    """The pinned sha256, else the recorded one, else None (first download)."""
    if pinned:
        return pinned.lower()
    record = hash_record(path)
    return record.read_text().split()[0].lower() if record.is_file() and record.read_text().strip() else None


def verify_cached(path: Path, pinned: str | None = None) -> Path:
    """Check a cached file against its pinned or recorded sha256; a mismatch removes it and raises."""
    want = expected_hash(path, pinned)
    if want is None:
        return path
    got = sha256_file(path)
    if got != want:
        path.unlink(missing_ok=True)
        raise DownloadError(f"sha256 mismatch for cached {path.name}: expected {want}, got {got}; the file was "
                            f"removed from the cache (fetch it again)")
    return path


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"User-Agent": "mobilenets", "Accept-Encoding": "identity",
                                                   **({"Range": f"bytes={start}-"} if start else {})})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http/https URLs of the registry)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise DownloadError(f"not found on the server (HTTP 404): {url}") from None
        raise DownloadError(f"the server refused {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason}") from None


def _looks_html(first: bytes, content_type: str) -> bool:
    head = first.lstrip()[:15].lower()
    return "text/html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))


def _transfer(url: str, part: Path, progress: bool, name: str) -> None:
    """Fill ``part`` from ``url``, resuming from its current size; raises OSError-like on a drop."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    with _open(url, start) as response:
        resumed = start and response.status == 206
        if start and not resumed:
            start = 0  # the server sent the whole file: start again
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        first = response.read(CHUNK)
        if not start and _looks_html(first, response.headers.get("Content-Type", "")):
            raise DownloadError(f"the server sent an HTML page instead of {name}: {url} (a login or error page? "
                                f"check the URL or MOBILENETS_MIRROR)")
        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name, disable=not progress,
                     leave=False) as bar:
            block = first
            while block:
                out.write(block)
                bar.update(len(block))
                block = response.read(CHUNK)
        size = part.stat().st_size
        if total is not None and size != total:
            raise ConnectionError(f"connection closed after {size} of {total} bytes")


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True,
             fetch_hint: str | None = None) -> Path:
    """``dest`` (a file in the cache), fetched from ``url`` (through ``MOBILENETS_MIRROR``) if it is
    not there yet, verified (see the module docstring). ``fetch_hint`` names the command that
    fetches it, for the offline message. Returns ``dest``."""
    dest = Path(dest)
    if dest.is_file():
        return verify_cached(dest, sha256)
    if offline():
        how = f"; fetch it on a machine with a connection: {fetch_hint}" if fetch_hint else ""
        raise DownloadError(f"offline (MOBILENETS_OFFLINE / HF_HUB_OFFLINE) and {dest.name} is not in the cache "
                            f"{dest.parent}{how}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    source = mirrored(url)
    try:
        for attempt in (1, 2):  # the second try resumes what the first wrote (HTTP Range)
            try:
                _transfer(source, part, progress, dest.name)
                break
            except DownloadError:
                raise
            except (ConnectionError, TimeoutError, OSError, urllib.error.URLError) as exc:
                if attempt == 2 or not part.exists():
                    raise DownloadError(f"the transfer of {dest.name} from {source} broke off "
                                        f"({type(exc).__name__}: {exc}); nothing was kept, run it again") from None
            except Exception as exc:  # http.client.IncompleteRead and friends
                if attempt == 2:
                    raise DownloadError(f"the transfer of {dest.name} from {source} broke off "
                                        f"({type(exc).__name__}); nothing was kept, run it again") from None
        got = sha256_file(part)
        want = expected_hash(dest, sha256)
        if want is not None and got != want:
            raise DownloadError(f"sha256 mismatch for {dest.name} from {source}: expected {want}, got {got}; "
                                f"the download was discarded")
        if want is None:
            record = hash_record(dest)
            tmp = record.with_name(record.name + ".part")
            tmp.write_text(f"{got}  {dest.name}\n")
            os.replace(tmp, record)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


__all__ = ["DownloadError", "cache_root", "download", "hash_record", "mirrored", "offline", "sha256_file",
           "verify_cached"]

"""timm and Hugging Face weights through ``huggingface_hub`` and its own cache.

huggingface_hub keeps its files under ``$HF_HUB_CACHE`` (default ``$HF_HOME/hub``) and honours
``HF_ENDPOINT`` (a mirror) itself; ``MOBILENETS_OFFLINE=1`` and ``HF_HUB_OFFLINE=1`` are passed on as
``local_files_only``.
Its errors become one line each.
"""

from __future__ import annotations

import os
from pathlib import Path

from mobilenets.weights.pretrained.download import DownloadError, offline
from mobilenets.weights.pretrained.registry import Entry


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hub_cache() -> str | None:
    """huggingface_hub's cache folder from ``HF_HUB_CACHE`` / ``HF_HOME``, read on every call (the
    library reads them once, at import; ``HF_ENDPOINT`` is passed on per call for the same reason);
    None: the library's own default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None


def hub_files(entry: Entry, fetch_hint: str) -> dict[str, Path]:
    """The entry's Hub files, fetched (or found in the HF cache): ``config.json`` where the entry
    lists it, and the first of its weights files that the repository has."""
    try:
        import huggingface_hub
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise DownloadError(f"{entry.name} is fetched with huggingface_hub: pip install huggingface_hub") from None

    def get(filename: str) -> Path:
        try:
            return Path(huggingface_hub.hf_hub_download(entry.repo, filename, local_files_only=offline(),
                                                        cache_dir=hub_cache(),
                                                        endpoint=os.environ.get("HF_ENDPOINT") or None))
        except LocalEntryNotFoundError as exc:
            if not offline():  # the Hub could not be reached or did not answer, and the cache has nothing
                endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
                raise DownloadError(f"cannot fetch {entry.repo}/{filename} from {endpoint} and it is not in the "
                                    f"Hugging Face cache: {_first_line(exc)}") from None
            raise DownloadError(f"offline (MOBILENETS_OFFLINE / HF_HUB_OFFLINE) and {entry.repo}/{filename} is not "
                                f"in the Hugging Face cache; fetch it on a machine with a connection: "
                                f"{fetch_hint}") from None
        except RepositoryNotFoundError:
            raise DownloadError(f"the Hugging Face repository {entry.repo} was not found "
                                f"(check HF_ENDPOINT)") from None
        except Exception as exc:  # HfHubHTTPError, connection errors: one line
            if isinstance(exc, EntryNotFoundError):
                raise
            raise DownloadError(f"cannot fetch {entry.repo}/{filename} from the Hugging Face Hub: "
                                f"{_first_line(exc)}") from None

    files: dict[str, Path] = {}
    weights = [f for f in entry.files if f != "config.json"]
    if "config.json" in entry.files:
        files["config.json"] = get("config.json")
    missing: Exception | None = None
    for name in weights:  # the first weights file the repository (or the cache, offline) has
        try:
            files[name] = get(name)
            return files
        except (EntryNotFoundError, DownloadError) as exc:
            missing = exc if missing is None or isinstance(exc, DownloadError) else missing
    if isinstance(missing, DownloadError):
        raise missing
    raise DownloadError(f"the Hugging Face repository {entry.repo} has none of {', '.join(weights)}")


__all__ = ["hub_files"]

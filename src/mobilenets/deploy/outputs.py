"""The one failure policy of every exporter: write under temporary names, check, then move into place.

An exporter (the classifier's :func:`~mobilenets.deploy.export.export_model`, the detector's
:func:`~mobilenets.tasks.detect.export.export_detector`) checks that it can write before any slow
work (:func:`check_writable`), writes every file into a :class:`Staging` folder beside the
destination, loads and checks the staged files, and only when every check passes moves them into
place (:meth:`Staging.commit`). A failed check raises :class:`ExportCheckFailed` with one line;
whatever fails, the staging folder is removed and the destination is left as it was: no file of
a failed export is left behind.

Files the export writes replace files of the same names in the destination (as ``cp`` would);
other files there are left alone. Nothing heavy is imported here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mobilenets.errors import MobileNetsError


class ExportCheckFailed(MobileNetsError):
    """The exported file does not reproduce the eager model within the tolerance."""


def check_writable(folder: str | os.PathLike) -> None:
    """Fail early, with one line, if files cannot be written in ``folder`` (before any slow
    work). A missing ``folder`` is created with its parents, as ``mkdir -p`` would."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mobilenet-export.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else (exc.strerror or str(exc))
        raise MobileNetsError(f"cannot write to {folder}: {reason}") from None


def check_file_target(path: str | os.PathLike, flag: str) -> Path:
    """Fail early, with one line, if a file cannot be written at ``path`` (named by its CLI
    ``flag`` in the message): it names a folder, or a file stands where one of its folders should
    be. Before any slow work; nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise MobileNetsError(f"{flag} {path} is a folder; give a file name")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise MobileNetsError(f"cannot write to {path}: {blocker} is a file, not a folder")
    return path


class Staging:
    """A temporary folder beside ``destination`` (a folder; its parent must exist) where an export
    writes its files (:meth:`path`); :meth:`commit` moves them into ``destination``, creating it,
    and leaving it as it was if a move fails. Used as a context manager, the staging folder is
    removed on exit, committed or not."""

    def __init__(self, destination: str | os.PathLike) -> None:
        self.destination = Path(destination)
        root = self.destination if self.destination.is_dir() else self.destination.parent
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.destination.name or 'export'}.staging-", dir=root))
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        """Where to write the file that ``commit`` puts at ``destination / name``."""
        if name not in self.names:
            self.names.append(name)
        return self.folder / name

    def commit(self) -> list[Path]:
        """Move every staged file into ``destination``; the final paths."""
        created = not self.destination.exists()
        self.destination.mkdir(exist_ok=True)
        moved: list[Path] = []
        try:
            for name in self.names:
                target = self.destination / name
                os.replace(self.folder / name, target)
                moved.append(target)
        except BaseException:
            for target in moved:
                target.unlink(missing_ok=True)
            if created:
                shutil.rmtree(self.destination, ignore_errors=True)
            raise
        return moved

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ExportCheckFailed", "Staging", "check_file_target", "check_writable"]

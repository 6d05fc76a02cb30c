"""The one harness every training command goes through, around :func:`~mobilenets.train.loop.fit`.

``mobilenet train``, ``detect train``, ``geo train``, ``distill``, ``finetune`` and ``reproduce``
differ in their task (model, loss, data); what a user sees of a run folder is the same for all of
them, because it is decided here, once:

- :func:`open_run` checks the run folder **before anything is read or written**: a new run refuses
  a folder that already holds one; ``resume`` needs a checkpoint to continue from and a run of the
  same task, and says in one line what was asked for and is not applied (a resumed run continues
  exactly what was started, with its own recorded settings);
- :func:`record_path` is how a run records the paths it was given: absolute, so that ``eval``,
  ``export`` and ``--resume`` find the data from any working directory;
- the caller's explicit arguments are recorded as the run's ``request`` in ``config.json`` (what
  resume compares with), beside the effective settings (model, recipe, options, task metadata);
- :func:`is_main` is the rank-0 check (under torchrun only rank 0 prints, plots and writes files).

The loop itself (:mod:`mobilenets.train.loop`) owns the folder's contents: ``config.json``,
checkpoints, weights, logs, and the task's hooks (``write_files``, ``finish``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from mobilenets.errors import MobileNetsError, arg, from_cli, resume_hint
from mobilenets.train.options import TrainOptions
from mobilenets.train.state import latest_state


def is_main() -> bool:
    """True in the process that prints, plots and writes (rank 0, or not distributed)."""
    return int(os.environ.get("RANK", "0")) == 0


def record_path(path: str | os.PathLike | None) -> str | None:
    """``path`` as a run records it: absolute where it names something on disk (relative paths
    are resolved against the working directory now, not when the run is resumed or evaluated),
    else as given (None, or a spec such as ``torchvision:ARCH:WEIGHTS``)."""
    if path is None:
        return None
    text = os.fspath(path)
    return os.path.abspath(text) if os.path.exists(text) else text


def check_folder(out: Path, resume: bool) -> bool:
    """Raise one line if ``out`` cannot take a new run (``resume`` False: it already holds one) or
    cannot be resumed (``resume`` True: no run in it). Every refusal says, in the caller's words
    (:func:`mobilenets.errors.resume_hint`), the command that continues the run and how to start
    over. Returns True when ``resume`` finds a run that stopped before its first checkpoint: it
    starts again from scratch with its own recorded settings (there is nothing else to continue)."""
    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"{arg('output')} {out} is a file, not a run folder")
    config = out / "config.json"
    if not resume:
        if config.is_file():
            again, over = resume_hint(out)
            state = "" if latest_state(out) is not None else " (stopped before its first checkpoint)"
            raise MobileNetsError(f"{out} already holds a run{state}: to continue it {again}; to start over "
                                  f"{over}")
        return False
    if latest_state(out) is None:
        if config.is_file():
            return True
        _, over = resume_hint(out)
        raise MobileNetsError(f"nothing to resume in {out}: it holds no run (no config.json, no "
                              f"checkpoints/step-*.pt); to start a run there, leave out {arg('resume')}")
    return False


def _shown(value: Any) -> str:
    return repr(os.fspath(value)) if isinstance(value, os.PathLike) else repr(value)


class _Shown:
    """A value whose repr is :func:`_shown`'s (a path as its string)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return _shown(self.value)


def not_applied(asked: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """What a resume was asked for that differs from what the run recorded, as ``key=value (the
    run has X)`` items (``--key value`` under the ``mobilenet`` command); arguments left at None were not asked for. The run's value is looked up
    in its request, then in its recipe, model and task metadata."""
    places = [saved.get("request") or {}, saved.get("recipe") or {}, saved.get("model") or {}, saved]
    items = []
    for key, value in asked.items():
        place = next((p for p in places if isinstance(p, dict) and key in p), None)
        if value is None or (place is not None and place[key] == value):
            continue
        had = f"the run has {_shown(place[key])}" if place is not None else "the run keeps its own"
        items.append(f"{arg(key, value if from_cli() else _Shown(value))} ({had})")
    return items


def open_run(options: TrainOptions | None, task: str, request: dict[str, Any],
             log: Any = print) -> tuple[TrainOptions, dict[str, Any] | None]:
    """Check the run folder of ``options`` for a ``task`` run before anything is read or written.

    ``request``: the caller's explicit arguments (None: not asked; paths through
    :func:`record_path`); the run records it. Returns the options with the output folder made
    absolute (a new folder under ``runs/`` when none is given) and, when resuming, the run's
    ``config.json``. Raises :class:`MobileNetsError` with one line saying what to do when the
    folder cannot be used."""
    opts = options or TrainOptions()
    if opts.resume and not opts.output:
        raise MobileNetsError(f"{arg('resume')} needs the run's folder: {arg('output')}")
    if opts.output:
        out = Path(os.path.abspath(opts.output))
    else:
        from mobilenets.train.state import new_run_dir

        out = Path(os.path.abspath(new_run_dir()))
    opts = dataclasses.replace(opts, output=str(out))
    fresh = check_folder(out, opts.resume)
    if not opts.resume:
        return opts, None
    config = out / "config.json"
    try:
        saved = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise MobileNetsError(f"cannot read {config}: {exc}") from None
    if saved.get("task") != task:
        raise MobileNetsError(f"{out} is a {saved.get('task')} run, not a {task} run: resume it with the "
                              f"command that started it")
    skipped = not_applied(request, saved)
    if fresh and is_main():
        log(f"{out} stopped before its first checkpoint: starting it again from scratch with its own settings")
    elif is_main():
        log(f"resuming {out} with its own settings" + (f"; not applied: {', '.join(skipped)}" if skipped else ""))
    return opts, saved


# What a Recipe field is set to for a task that does not use it (Task.recipe_fields): the run
# records the recipe it really trained with, so no field reads as applied when it was not.
UNUSED_FIELD_VALUE = {"label_smoothing": 0.0, "randaugment": None}


def task_recipe(recipe, fields: tuple[str, ...] | None):
    """``recipe`` with the fields a task does not use (``fields`` None: it uses all) turned off."""
    if fields is None:
        return recipe
    unused = [f.name for f in dataclasses.fields(recipe) if f.name != "name" and f.name not in fields]
    missing = [f for f in unused if f not in UNUSED_FIELD_VALUE]
    if missing:
        raise MobileNetsError(f"recipe field(s) {', '.join(missing)} cannot be switched off for this task")
    return recipe.replace(**{f: UNUSED_FIELD_VALUE[f] for f in unused})


def request_of(**arguments: Any) -> dict[str, Any]:
    """The explicit arguments of a training call as its run records them: None dropped, paths
    made absolute (:func:`record_path`), dataclasses and tuples as plain JSON values."""
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if value is None:
            continue
        if isinstance(value, dict):
            for k, v in value.items():
                if v is not None:
                    out[k] = v
            continue
        if isinstance(value, os.PathLike):
            value = record_path(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = getattr(value, "name", None) or dataclasses.asdict(value)
        out[key] = value
    return json.loads(json.dumps(out, default=str))


__all__ = ["UNUSED_FIELD_VALUE", "check_folder", "is_main", "task_recipe", "not_applied", "open_run", "record_path", "request_of"]

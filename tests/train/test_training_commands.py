"""The five training commands share one spine (issue 23's acceptance):

- every flag of every training command changes what the run records in ``config.json``, or is
  refused with one line and nothing written: no flag is accepted and ignored;
- the model and running flags are the same flags (names, types, defaults, help) in all five;
- run folders, ``--resume`` (from another working directory) and ``--init`` behave alike.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from mobilenets.cli.args import MODEL_FLAGS, RUNNING_FLAGS
from mobilenets.cli.main import build_parser, main
from mobilenets.tasks.detect.recipes import DETECT_PRESETS
from mobilenets.train import loop
from mobilenets.train.recipes import OPTIMIZERS, PRESETS, SCHEDULES

COMMANDS = {"train": ["train"], "detect": ["detect", "train"], "geo": ["geo", "train"], "distill": ["distill"],
            "finetune": ["finetune"]}
# Flags that choose what the command prints or where, not what the run is: they are exempt from
# "changes config.json" (each is tested where its output is).
OUTPUT_ONLY = {"help": "argparse's", "json": "the summary's format", "output": "the run folder itself",
               "pairs": "a report printed after training (distill CLI tests)",
               "pairs_images": "the pairs report's image folder (distill CLI tests)",
               "celeba": "a report printed after training (distill CLI tests)"}


def subparser(path: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def flag_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def test_the_five_commands_share_model_and_running_flags():
    actions = {name: flag_actions(subparser(path)) for name, path in COMMANDS.items()}
    for dest in (*MODEL_FLAGS, *RUNNING_FLAGS):
        seen = {}
        for name, acts in actions.items():
            a = acts.get(dest)
            assert a is not None, f"{name} lacks the {dest} flag"
            seen[name] = (a.option_strings[0], a.type, a.default, a.help, a.nargs, a.const, a.choices, type(a))
        first = next(iter(seen.values()))
        differ = {n: s for n, s in seen.items() if s != first}
        assert not differ, f"--{dest} differs between commands: {first} vs {differ}"
    # --backbone is detect train's older name for --init, the same flag
    assert flag_actions(subparser(COMMANDS["detect"]))["init"].option_strings == ["--init", "--backbone"]


class Recorded(Exception):
    """Raised in place of training, carrying the config.json the run wrote."""


@pytest.fixture
def record_only(monkeypatch):
    """Runs stop right after writing config.json (which the runner then removes with the folder:
    nothing to resume in it), handing the config to the test."""

    def stop(run, *args, **kwargs):
        raise Recorded(json.loads((run.out / "config.json").read_text()))

    monkeypatch.setattr(loop, "_train_epochs", stop)


def recorded(argv: list[str], capsys) -> dict | None:
    """The config a command line's run records, or None when the command refuses it (one line on
    stderr, exit status 2, no run folder)."""
    out = Path(argv[argv.index("--output") + 1])
    try:
        status = main(argv)
    except Recorded as exc:
        capsys.readouterr()
        assert not out.exists(), "a run stopped before its first checkpoint left its folder"
        return exc.args[0]
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("mobilenet: error:"), (status, err)
    assert not out.exists(), f"refused, but {out} was written"
    return None


def effective(config: dict) -> dict:
    """What the run will do: the config without the echo of the request and the folder name."""
    config = {k: v for k, v in config.items() if k != "request"}
    config["options"] = {k: v for k, v in config["options"].items() if k != "output"}
    return config


def other_choice(choices, default):
    return next(c for c in choices if c != default)


def flag_value(name: str, dest: str, action: argparse.Action, inputs: dict, preset) -> list[str]:
    """A value of ``dest`` that differs from the baseline run's."""
    g = inputs["geo"]
    values = {
        "model": "mobilenet_v1_conv_1.0_224", "alpha": "0.75", "resolution": "40", "variant": "conv",
        "init": str(inputs["weights2"] if name == "finetune" else inputs["weights"]),
        "epochs": "2", "batch_size": "3", "optimizer": other_choice(OPTIMIZERS, preset.optimizer), "lr": "0.0123",
        "base_batch_size": "17", "momentum": "0.55", "rmsprop_decay": "0.55", "eps": "0.0123",
        "weight_decay": "0.00123", "schedule": other_choice(SCHEDULES, preset.schedule), "decay_rate": "0.5",
        "decay_epochs": "1.5", "warmup_epochs": "0.5", "min_lr_ratio": "0.123", "label_smoothing": "0.123",
        "ema_decay": "0.5", "crop_min_area": "0.55", "hflip": str(not preset.hflip), "color_jitter": "0.123",
        "randaugment": "rand-m3-n1",
        "workers": "1", "seed": "3", "device": "cpu", "threads": "1", "keep_last": "2", "checkpoint_every": "3",
        "max_steps": "3", "eval_batch_size": "3",
        "activation": "relu6", "padding": "tf_same", "dropout": "0.2", "convert_to": "keras",
        "detector": "ssdlite", "classification": "sigmoid", "head_kernel": "3", "zoom_out": "false",  # on by default with the modern recipe
        "bn_momentum": "0.1", "body_lr_scale": "0.5",
        "teacher": str(inputs["weights2"]), "task": "multilabel", "val_data": str(inputs["photos"] / "val"),
        "val_every": "3", "temperature": "2", "label_weight": "0.5", "embedding_dim": "8",
    }
    data = {"train": str(inputs["photos"]), "detect": str(inputs["detect2"]), "geo": str(g / "val.csv"),
            "distill": str(inputs["photos2"] / "train"), "finetune": str(inputs["photos2"])}
    values.update(data=data[name], val=str(g / "train.csv"), cells=str(g / "cells2.csv"))
    if dest == "recipe":
        values["recipe"] = other_choice(action.choices, action.default)
    if action.nargs == 0:  # store_true
        return [action.option_strings[0]]
    return [action.option_strings[0], values[dest]]


def with_flag(argv: list[str], flag: list[str]) -> list[str]:
    """``argv`` with ``flag`` set (replacing the baseline's value of the same flag); a switch the
    baseline already sets is taken away instead."""
    out = list(argv)
    if flag[0] in out:
        i = out.index(flag[0])
        del out[i:i + len(flag)]
        if len(flag) == 1:
            return out
    return out + flag


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_changes_the_recorded_run_or_is_refused(name, command_inputs, command_argv, tmp_path,
                                                          record_only, capsys):
    parser = subparser(COMMANDS[name])
    presets = DETECT_PRESETS if name == "detect" else PRESETS
    preset = presets[parser.get_default("recipe")]
    runs = iter(range(1000))
    base_argv = command_argv(name, command_inputs, str(tmp_path / "base"))
    base = recorded(base_argv, capsys)
    assert base is not None, "the baseline run was refused"
    assert base["task"] == {"train": "classification", "detect": "detection", "geo": "geolocation",
                            "distill": "distill", "finetune": "finetune"}[name]
    walked, refused = [], []
    for dest, action in flag_actions(parser).items():
        if dest in OUTPUT_ONLY:
            continue
        argv = with_flag(base_argv, flag_value(name, dest, action, command_inputs, preset))
        argv[argv.index("--output") + 1] = str(tmp_path / f"run{next(runs)}")
        config = recorded(argv, capsys)
        walked.append(dest)
        if config is None:
            refused.append(dest)
            continue
        assert effective(config) != effective(base), f"{name}: {' '.join(argv[-2:])} was accepted and changed nothing"
    assert "resume" in refused  # nothing to resume in a new folder
    # the walk covered the shared flags and the task's own ones
    assert {*MODEL_FLAGS, *RUNNING_FLAGS} - {"output", "json"} <= set(walked)
    assert len(walked) - len(refused) >= 30


def test_a_flag_ignored_by_the_run_is_caught(command_inputs, command_argv, tmp_path, record_only, capsys,
                                             monkeypatch):
    """The negative control: were --dropout accepted and dropped on its way to the model, the walk's
    comparison would see no change."""
    from mobilenets.train import classify

    real = classify.train

    def drop_dropout(*args, model_overrides=None, **kwargs):
        return real(*args, model_overrides={k: v for k, v in (model_overrides or {}).items() if k != "dropout"},
                    **kwargs)

    base = recorded(command_argv("train", command_inputs, str(tmp_path / "a")), capsys)
    monkeypatch.setattr(classify, "train", drop_dropout)
    same = recorded(command_argv("train", command_inputs, str(tmp_path / "b")) + ["--dropout", "0.2"], capsys)
    assert effective(same) == effective(base)


def relative(argv: list[str], cwd: Path) -> list[str]:
    """``argv`` with every existing path written relative to ``cwd``."""
    return [os.path.relpath(a, cwd) if os.path.isabs(a) and os.path.exists(a) else a for a in argv]


def paths_in(config: dict, root: Path) -> list[str]:
    found = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and str(root.name) in value:
            found.append(value)

    walk(config)
    return found


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("name", COMMANDS)
def test_run_folders_resume_and_init_behave_alike(name, command_inputs, command_argv, tmp_path, monkeypatch,
                                                  capsys):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    argv = relative(command_argv(name, command_inputs, "run"), here)
    argv = with_flag(argv, ["--max-steps", "2"])
    import random

    import numpy as np
    import torch

    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy(), torch.get_num_threads())
    assert main(argv) == 0
    capsys.readouterr()
    # the caller's process is left as it was: random states (the run seeds its own) and threads
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1], torch.get_num_threads())
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and (before[2] == after[2]).all()
    assert before[3] == after[3]
    run = here / "run"
    config = json.loads((run / "config.json").read_text())
    recorded_paths = paths_in(config, command_inputs["root"])
    assert all(os.path.isabs(p) for p in recorded_paths), recorded_paths
    assert recorded_paths or name == "train"  # train's baseline is the built-in digits: no path
    assert config["options"]["output"] == str(run)

    # the same command again is refused in one line, and the run folder is left as it was
    before = snapshot(run)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0]
    assert snapshot(run) == before

    # resumed from another working directory: what is asked and not applied is said in one line
    monkeypatch.chdir(elsewhere)
    resume = [*COMMANDS[name], "--resume", "--output", str(run), "--lr", "0.5", "--max-steps", "3", "--no-progress"]
    assert main(resume) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("resuming"))
    assert "not applied: --lr 0.5 (the run has" in line
    assert json.loads((run / "config.json").read_text()) == config
    assert sorted((run / "checkpoints").glob("step-*.pt"))[-1].name == "step-000000003.pt"

    # nothing to resume: one line
    assert main([*COMMANDS[name], "--resume", "--output", str(elsewhere / "empty"), "--no-progress"]) == 2
    assert "nothing to resume" in capsys.readouterr().err

    # --init: the same flag everywhere, recorded as an absolute path
    init = [*command_argv(name, command_inputs, str(elsewhere / "init"))]
    if name != "distill":  # the weights fix the width (distillation narrows them to the student's)
        i = init.index("--alpha") if "--alpha" in init else None
        init = init if i is None else init[:i] + init[i + 2:]
    init = with_flag(init, ["--init", os.path.relpath(command_inputs["weights"], elsewhere)])
    if name == "finetune":
        init = with_flag(init, ["--init", os.path.relpath(command_inputs["weights2"], elsewhere)])
    assert main(with_flag(init, ["--max-steps", "1"])) == 0
    capsys.readouterr()
    started = json.loads((elsewhere / "init" / "config.json").read_text())
    weights = command_inputs["weights2" if name == "finetune" else "weights"]
    assert str(weights) in json.dumps(started)

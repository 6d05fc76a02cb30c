"""Interrupts and re-runs: a real KeyboardInterrupt raised from a task hook, before and after the
first checkpoint, through the ``mobilenet`` command and from Python; every "already holds a run"
message names the command that continues the run and how to start over."""

import shlex

import pytest

from mobilenets.cli.main import main
from mobilenets.errors import MobileNetsError
from mobilenets.train import TrainOptions, train
from mobilenets.train.tasks import ClassificationTask

ARGV = ["train", "--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "64",
        "--checkpoint-every", "2", "--no-progress"]


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(n)``: the task's on_device hook raises KeyboardInterrupt at training step n
    (1-based); the steps before it run for real."""

    def arm(step: int) -> None:
        seen = {"n": 0}
        original = ClassificationTask.on_device

        def hook(self, inputs, targets, ctx):
            if self.training_hook_armed:
                seen["n"] += 1
                if seen["n"] == step:
                    raise KeyboardInterrupt
            return original(self, inputs, targets, ctx)

        monkeypatch.setattr(ClassificationTask, "training_hook_armed", True, raising=False)
        monkeypatch.setattr(ClassificationTask, "on_device", hook)

    return arm


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_interrupt_at_step_1_leaves_nothing(tmp_path, interrupt_at, capsys):
    interrupt_at(1)
    out = tmp_path / "run"
    assert main([*ARGV, "--output", str(out)]) == 130
    line = one_line(capsys)
    assert line.startswith("mobilenet: interrupted: stopped before the first checkpoint; nothing kept")
    assert not out.exists()


def test_interrupt_after_a_checkpoint_says_the_exact_resume_command(tmp_path, interrupt_at, monkeypatch, capsys):
    interrupt_at(4)  # checkpoints after steps 2 (and the run is stopped at step 4, before its second)
    out = tmp_path / "run"
    argv = [*ARGV, "--output", str(out)]
    assert main(argv) == 130
    line = one_line(capsys)
    assert "keeps its checkpoint step-000000002.pt" in line
    command = line.split("to continue it run `", 1)[1].rstrip("`")
    assert shlex.split(command) == ["mobilenet", *argv, "--resume"]
    # that exact command continues the run
    monkeypatch.undo()
    assert main(shlex.split(command)[1:] + ["--max-steps", "5"]) == 0
    said = capsys.readouterr().out
    assert "resumed" in said and "step 2/" in said
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt"))[-1] == "step-000000005.pt"


def test_a_folder_stopped_before_its_first_checkpoint_is_restarted_by_resume(tmp_path, interrupt_at, capsys):
    out = tmp_path / "run"
    out.mkdir()  # the user made the folder: the run does not remove it
    interrupt_at(1)
    argv = [*ARGV, "--output", str(out)]
    assert main(argv) == 130
    line = one_line(capsys)
    assert "stopped before the first checkpoint of" in line and "--resume" in line
    assert (out / "config.json").is_file() and not (out / "checkpoints").exists()
    # the same command again: refused, naming the command that continues it and how to start over
    assert main(argv) == 2
    line = one_line(capsys)
    assert "already holds a run (stopped before its first checkpoint)" in line
    assert f"run `{shlex.join(['mobilenet', *argv, '--resume'])}`" in line
    assert f"choose another --output, or delete {out}" in line
    assert "resume=True" not in line
    # --resume starts it again from scratch, with its own settings
    ClassificationTask.training_hook_armed = False
    assert main([*argv, "--resume", "--max-steps", "2"]) == 0
    said = capsys.readouterr().out
    assert "starting it again from scratch" in said
    assert (out / "checkpoints" / "step-000000002.pt").is_file()


def test_python_callers_read_python_words(tmp_path):
    opts = TrainOptions(output=str(tmp_path / "run"), progress=False, max_steps=1)
    train(None, alpha=0.25, resolution=32, recipe_overrides={"epochs": 1, "batch_size": 64}, options=opts)
    with pytest.raises(MobileNetsError) as caught:
        train(None, alpha=0.25, resolution=32, recipe_overrides={"epochs": 1, "batch_size": 64}, options=opts)
    message = str(caught.value)
    assert "resume=True" in message and f"output={str(tmp_path / 'run')!r}" in message and "--" not in message
    with pytest.raises(MobileNetsError, match="nothing to resume .* leave out resume"):
        train(None, options=TrainOptions(output=str(tmp_path / "empty"), resume=True, progress=False))

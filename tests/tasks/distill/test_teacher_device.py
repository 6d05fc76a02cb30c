"""The distillation teacher runs where the student trains: on the run's device, under its autocast,
in the training process (not in DataLoader workers, not in ``collate``)."""

from __future__ import annotations

import os

import pytest
import torch

from mobilenets.tasks.distill.run import distill
from mobilenets.tasks.distill.teachers import IMAGENET, Teacher
from mobilenets.train.options import TrainOptions
from mobilenets.utils.device import resolve_device


class RecordingTeacher(Teacher):
    """Three fixed logits per crop; records where and how each batch reached it."""

    kind = "logits"
    on_device = True

    def __init__(self) -> None:
        super().__init__("recording", IMAGENET)
        self.calls: list[tuple[torch.device, bool, int, int]] = []

    def run(self, crops, paths):
        self.calls.append((crops.device, torch.is_autocast_enabled(crops.device.type), os.getpid(), len(crops)))
        return crops.float().mean(dim=(2, 3))  # [N, 3]: a function of the pixels, on the crops' device


@pytest.mark.parametrize("amp", [False, True])
def test_teacher_sees_the_students_device_and_autocast(amp, photo_folder, tmp_path):
    data = photo_folder(tmp_path / "photos", size=40, per_class=(4, 1), corrupt=False) / "train"
    teacher = RecordingTeacher()
    summary = distill(teacher, str(data), "classify", alpha=0.25, resolution=32,
                      recipe_overrides={"epochs": 1, "batch_size": 4},
                      options=TrainOptions(output=str(tmp_path / "run"), amp=amp, workers=1, progress=False),
                      log=lambda *_: None)
    assert summary["steps"] > 0
    training = [c for c in teacher.calls if c[3] > 1]  # the probe of one crop runs when the task is built
    assert training, "the teacher was never called on a batch"
    student_device = resolve_device("auto")
    assert {c[0].type for c in training} == {student_device.type}
    assert {c[1] for c in training} == {amp}  # the run's autocast, on and off
    assert {c[2] for c in training} == {os.getpid()}  # in the training process, not a DataLoader worker

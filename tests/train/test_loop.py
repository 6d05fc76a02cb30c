"""The generic loop: reproducible augmentation, reports, and no process-wide state left changed."""

import sys
from pathlib import Path

import pytest
import torch

from mobilenets.models.config import MobileNetConfig
from mobilenets.train import TrainOptions, train
from mobilenets.train.classify import augment_for
from mobilenets.train.loop import train_loader_for
from mobilenets.train.recipes import get_recipe
from mobilenets.train.sampler import ResumableSampler
from mobilenets.train.tasks import ClassificationTask


def _batches(task, seed, epoch, workers, start_step=0):
    train_set, _ = task.datasets()
    sampler = ResumableSampler(len(train_set), 6, seed)
    sampler.set_epoch(epoch, start_step)
    return [x for x, _y, _bad in train_loader_for(train_set, sampler, task, workers, seed)]


def test_modern_recipe_batches_identical_across_workers_and_resume(tmp_path, photo_folder):
    """RandAugment (timm, NumPy-drawn ops), random crops and flips: the same batches with 0 or 2
    DataLoader workers, and a run resumed mid-epoch sees the same remaining batches."""
    root = photo_folder(tmp_path / "data", corrupt=False)
    rec = get_recipe("modern", batch_size=6)
    task = ClassificationTask.load(str(root), MobileNetConfig(alpha=0.25, resolution=48), augment_for(rec))
    a = _batches(task, seed=3, epoch=1, workers=0)
    b = _batches(task, seed=3, epoch=1, workers=2)
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    resumed = _batches(task, seed=3, epoch=1, workers=2, start_step=4)
    assert len(resumed) == 2
    for x, y in zip(a[4:], resumed):
        assert torch.equal(x, y)
    # and the augmentation is really random: another epoch (or seed) gives other pixels
    other = _batches(task, seed=3, epoch=2, workers=0)
    assert not torch.equal(torch.cat(a), torch.cat(other))


def test_numpy_is_seeded_per_sample():
    """What RandAugment needs: a NumPy draw inside a sample's transform is a function of its seed."""
    import numpy as np

    from mobilenets.train.sampler import SeededDataset

    class Draw(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return float(np.random.rand()), float(torch.rand(())), __import__("random").random()

    ds = SeededDataset(Draw())
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    first = ds[(1, 12345)]
    assert ds[(1, 12345)] == first and ds[(1, 12346)] != first
    assert (np.random.get_state()[1] == before).all()  # the caller's NumPy state is put back


def test_train_leaves_no_process_state_behind(tmp_path, capsys):
    stub = "tensorboard.compat.notf"
    assert stub not in sys.modules
    torch.use_deterministic_algorithms(False)
    threads = torch.get_num_threads()
    train(None, alpha=0.25, resolution=32, recipe_overrides={"epochs": 1, "batch_size": 256},
          options=TrainOptions(output=str(tmp_path / "run"), progress=False, deterministic=True))
    assert not torch.are_deterministic_algorithms_enabled()
    assert stub not in sys.modules
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    assert "epoch 1/1  train loss" in out and "val top-1" in out  # the per-epoch line, without progress bars


def test_unreadable_files_reported_once_and_listed(tmp_path, photo_folder, capsys):
    root = photo_folder(tmp_path / "data")
    train(str(root), alpha=0.25, resolution=32, recipe_overrides={"epochs": 3, "batch_size": 8},
          options=TrainOptions(output=str(tmp_path / "run"), progress=False))
    out = capsys.readouterr().out
    assert out.count("skipped unreadable image") == 3  # 3 files, 3 epochs: each reported once
    assert "BytesIO" not in out
    listed = (tmp_path / "run" / "bad_files.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in listed) == ["empty.jpg", "notes.jpg", "truncated.jpg"]


def test_class_with_no_readable_image_is_refused(tmp_path, photo_folder):
    root = photo_folder(tmp_path / "data", corrupt=False)
    for f in (root / "train" / "chelsea").iterdir():
        f.write_bytes(b"junk")
    with pytest.raises(ValueError, match="class 'chelsea'.*none of its 12 image"):
        train(str(root), alpha=0.25, resolution=32, recipe_overrides={"epochs": 1, "batch_size": 8},
              options=TrainOptions(output=str(tmp_path / "run"), progress=False))


def test_resume_says_where_and_what_is_kept(tmp_path, capsys):
    opts = dict(output=str(tmp_path / "run"), progress=False)
    train(None, alpha=0.25, resolution=32, recipe_overrides={"epochs": 2, "batch_size": 256},
          options=TrainOptions(max_steps=7, **opts))
    capsys.readouterr()
    summary = train(None, alpha=0.5, recipe_overrides={"epochs": 5, "lr": 0.1},
                    options=TrainOptions(resume=True, **opts))
    out = capsys.readouterr().out
    assert "resumed" in out and "epoch 2/2, step 2/5 of it (7 steps done)" in out
    line = next(x for x in out.splitlines() if x.startswith("resuming"))
    # one line lists what was asked for and is not applied, with the run's own value
    assert "not applied:" in line and "epochs=5 (the run has 2)" in line and "lr=0.1 (the run has 0.045)" in line
    assert "alpha=0.5 (the run has 0.25)" in line and "batch_size" not in line
    assert summary["epochs"] == 2 and summary["steps"] == 10

"""finetune: Stanford Dogs' layout (.mat lists), the transfer task's freezing and two learning
rates, and a short run end to end (confusion matrix, Table 10 layout)."""

import pytest
import scipy.io
import torch

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.studies.finetune import (
    TRANSFER,
    FinetuneTask,
    finetune,
    finetune_text,
    photo_dogs_layout,
    stanford_dogs_folders,
)
from mobilenets.train.optim import build_optimizer
from mobilenets.train.options import TrainOptions

PHOTOS = ["chelsea", "coffee", "rocket"]


@pytest.fixture(scope="module")
def dogs(tmp_path_factory):
    return photo_dogs_layout(tmp_path_factory.mktemp("dogs"), PHOTOS, train=6, test=3, size=48)


def test_dogs_layout_reads_back_as_imagenet_folders(dogs, tmp_path):
    mat = scipy.io.loadmat(dogs / "lists" / "test_list.mat")
    assert sorted(set(mat["labels"].ravel())) == [1, 2, 3] and mat["file_list"].shape == (9, 1)
    info = stanford_dogs_folders(dogs, tmp_path / "view")
    assert info == {"classes": 3, "train": 18, "val": 9, "missing": 0}
    assert sorted(p.name for p in (tmp_path / "view" / "val").iterdir()) == ["01-chelsea", "02-coffee", "03-rocket"]
    assert len(list((tmp_path / "view" / "train" / "02-coffee").iterdir())) == 6


def test_dogs_lists_with_a_label_on_two_breeds_are_refused(dogs, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(dogs, bad)
    mat = scipy.io.loadmat(bad / "lists" / "train_list.mat")
    mat["labels"][0, 0] = 2  # a chelsea file labelled as the coffee breed
    scipy.io.savemat(bad / "lists" / "train_list.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(MobileNetsError, match="label 2 names two breed folders"):
        stanford_dogs_folders(bad, tmp_path / "view")


def _task(**kwargs):
    cfg = MobileNetConfig(alpha=0.25, resolution=32, num_classes=3)
    return FinetuneTask(cfg, **kwargs)


def test_body_gets_a_lower_learning_rate_than_the_head():
    task = _task(body_lr_scale=0.1)
    model = task.build_model()
    opt = build_optimizer(model, TRANSFER, task.lr_scale)
    head = {id(p) for p in model.classifier.parameters()}
    for group in opt.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # no group mixes head and body
        expected = 0.01 if in_head == {True} else 0.001
        assert group["lr"] == pytest.approx(expected)


def test_freeze_body_and_freeze_bn_keep_the_pretrained_weights_and_statistics():
    torch.manual_seed(0)
    task = _task(freeze_body=True, freeze_bn=True)
    model = task.build_model()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    opt = build_optimizer(model, TRANSFER, task.lr_scale)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task.train_mode(model)  # what the loop calls every epoch
    out = task.forward(model, torch.randn(8, 3, 32, 32) * 3 + 1)
    task.loss(out, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))["loss"].backward()
    opt.step()
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["classifier.bias", "classifier.weight"]  # no BN running stat moved either
    plain = _task()
    m2 = plain.build_model()
    plain.train_mode(m2)
    stats = m2.stem.bn.running_mean.clone()
    plain.forward(m2, torch.randn(8, 3, 32, 32) * 3 + 1)
    assert not torch.equal(stats, m2.stem.bn.running_mean)  # without freeze_bn they do move


def test_finetune_end_to_end_writes_confusion_and_table10(dogs, tmp_path):
    result = finetune(dogs, None, model="mobilenet_v1_0.25_128", resolution=32,
                      recipe_overrides={"epochs": 1, "batch_size": 6},
                      options=TrainOptions(output=str(tmp_path / "run"), threads=1, progress=False),
                      log=lambda *_: None)
    assert (tmp_path / "run" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert result["classes"] == 3 and result["epochs"] == 1
    # the confusion matrix is of the best weights, whose top-1 the run recorded
    assert result["best_top1_confusion"] == pytest.approx(result["best_top1"])
    text = finetune_text(result)
    assert "paper: 1.0 MobileNet-224" in text and "ours: 0.25 MobileNet-32 (3 classes)" in text
    with pytest.raises(MobileNetsError, match="body_lr_scale"):
        finetune(dogs, None, body_lr_scale=2.0)


@pytest.mark.slow
def test_real_imagenet_weights_beat_the_same_run_from_scratch(real_mobilenet, tmp_path):
    """The transfer the paper relies on (Section 4.2): from the real ImageNet MobileNetV1, two
    epochs on four photos' crops beat the same two epochs from random weights."""
    data = photo_dogs_layout(tmp_path / "dogs", ["chelsea", "coffee", "rocket", "astronaut"], train=12, test=6, size=128)
    quiet = dict(resolution=96, recipe_overrides={"epochs": 2, "batch_size": 16}, log=lambda *_: None)

    def options(name):
        return TrainOptions(output=str(tmp_path / name), threads=2, progress=False)

    real = finetune(data, real_mobilenet, options=options("real"), **quiet)
    scratch = finetune(data, None, model="mobilenet_v1_1.0_224", body_lr_scale=1.0, options=options("scratch"),
                       **quiet)
    assert real["best_top1"] > scratch["best_top1"] + 0.2

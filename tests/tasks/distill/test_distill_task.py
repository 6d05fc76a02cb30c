"""Distillation task: losses by hand, teacher/task mismatches, data errors, a tiny run through fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.tasks.distill.data import list_images, split_every
from mobilenets.tasks.distill.run import distill, load_student, outputs_of, student_preprocessing
from mobilenets.tasks.distill.task import distill_loss, teacher_targets
from mobilenets.tasks.distill.teachers import PrecomputedTeacher, load_teacher
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import get_recipe

TINY = MobileNetConfig(alpha=0.25, resolution=32)


def test_distill_recipe_preset():
    r = get_recipe("distill")
    assert r.weight_decay == 0 and r.label_smoothing == 0 and r.ema_decay is None


def test_kd_loss_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t_logits = torch.tensor([[0.0, 2.0, 0.0]])
    T = 2.0
    p = np.exp(np.array([0, 1.0, 0])) / np.exp(np.array([0, 1.0, 0])).sum()  # softmax(t / T)
    log_q = np.array([0.5, 0, -0.5]) - math.log(np.exp([0.5, 0, -0.5]).sum())  # log_softmax(s / T)
    expected = -(p * log_q).sum() * T**2
    targets = teacher_targets(t_logits, "logits", "classify", "t")
    assert float(distill_loss(s, targets, "classify", T)) == pytest.approx(expected, rel=1e-6)
    # probabilities from the teacher give the same loss as its logits
    probs = teacher_targets(F.softmax(t_logits, 1), "probabilities", "classify", "t")
    assert float(distill_loss(s, probs, "classify", T)) == pytest.approx(expected, rel=1e-5)


def test_multilabel_and_embedding_loss_by_hand():
    s, p = torch.tensor([[0.0, 2.0]]), torch.tensor([[0.25, 1.0]])
    sig = 1 / (1 + math.exp(-2.0))
    expected = (-(0.25 * math.log(0.5) + 0.75 * math.log(0.5)) - math.log(sig)) / 2
    assert float(distill_loss(s, p, "multilabel")) == pytest.approx(expected, rel=1e-6)
    a, b = torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 4.0], [0.0, 1.0]])
    assert float(distill_loss(a, b, "embedding")) == pytest.approx((9 + 16 + 0) / 2)
    assert float(distill_loss(a, b, "embedding", normalize=True)) == pytest.approx(2 / 2)  # |e1 - e2|^2 = 2


def test_teacher_output_must_match_task():
    emb = torch.randn(2, 8)
    with pytest.raises(MobileNetsError, match="gives an embedding, not class scores"):
        teacher_targets(emb, "embedding", "classify", "dlib")
    with pytest.raises(MobileNetsError, match="outside \\[0, 1\\]"):
        teacher_targets(emb, "unknown", "multilabel", "x.onnx")
    with pytest.raises(MobileNetsError, match="gives probabilities, not an embedding"):
        teacher_targets(torch.full((2, 4), 0.25), "probabilities", "embedding", "age-gender")
    with pytest.raises(MobileNetsError, match="needs >= 2 classes"):
        teacher_targets(torch.randn(2, 1), "logits", "classify", "t")


def test_data_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(MobileNetsError, match="no images found"):
        list_images(tmp_path / "empty")
    with pytest.raises(MobileNetsError, match="too few"):
        split_every(["a.jpg"], 10)
    with pytest.raises(FileNotFoundError, match="teacher not found"):
        load_teacher(str(tmp_path / "missing"))


@pytest.fixture
def photo_folder(tmp_path):
    """12 real photo crops, nested one level, plus one unreadable file."""
    from mobilenets.data.photos import write_crops

    write_crops(tmp_path / "data" / "a", 6, photos=["astronaut", "coffee", "chelsea"], size=48)
    write_crops(tmp_path / "data" / "b" / "c", 6, photos=["rocket", "camera", "grace_hopper"], size=48, seed=1)
    (tmp_path / "data" / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    return tmp_path / "data"


@pytest.fixture
def teacher_folder(tmp_path, randomized_bn):
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.weights.checkpoint import save_model

    torch.manual_seed(0)
    teacher = randomized_bn(MobileNet(TINY.replace(num_classes=5)), seed=1, classifier_std=1.0)
    return save_model(teacher.eval(), tmp_path / "teacher")


def test_classify_run_through_fit(photo_folder, teacher_folder, tmp_path):
    out = tmp_path / "run"
    lines = []
    summary = distill(str(teacher_folder), str(photo_folder), "classify", TINY, val_every=4,
                      recipe_overrides={"epochs": 2, "batch_size": 4}, log=lines.append,
                      options=TrainOptions(output=str(out), progress=False))
    assert summary["epochs"] == 2 and summary["train_images"] == 10 and summary["val_images"] == 3
    assert "top1_agreement" in summary["metrics"] and summary["metrics"]["images"] >= 2
    assert any("broken.jpg" in path for path, _ in summary["bad_files"])  # reported, not fatal
    student, meta = load_student(out)
    assert student.config.num_classes == 5 and meta["distill"]["mode"] == "classify"
    # resuming a finished run trains nothing more and keeps its settings
    again = distill(None, None, options=TrainOptions(output=str(out), resume=True, progress=False), log=lines.append)
    assert again["epochs"] == 2 and any("nothing left to train" in line for line in lines)


def test_embedding_projection_and_precomputed_teacher(photo_folder, tmp_path):
    paths = list_images(photo_folder)  # the broken file too: its outputs were computed elsewhere
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", paths=np.array(paths), outputs=rng.normal(size=(len(paths), 6)).astype(np.float32))
    t = load_teacher(str(tmp_path / "t.npz"))
    assert isinstance(t, PrecomputedTeacher) and t.missing(["zzz.jpg"]) == ["zzz.jpg"]
    summary = distill(t, str(photo_folder), "embedding", TINY, embedding_dim=3, normalize=True, val_every=4,
                      recipe_overrides={"epochs": 1, "batch_size": 4}, log=lambda *_: None,
                      options=TrainOptions(output=str(tmp_path / "run"), progress=False))
    assert "cosine" in summary["metrics"]
    student, meta = load_student(tmp_path / "run")
    assert student.config.num_classes == 3  # the projection to the teacher's 6 is dropped
    crops = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    assert outputs_of(student, crops, student_preprocessing(meta, student)).shape == (2, 3)
    # the run's student/ model folder (weights without 'student.'/'projection.') loads like any model
    from mobilenets.weights.checkpoint import load_checkpoint

    plain, folder_meta = load_checkpoint(summary["student_folder"])
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(plain(x), student(x)) and folder_meta["source"]["task"] == "embedding"
    # a precomputed file missing images: one error naming the count and the first
    np.savez(tmp_path / "short.npz", paths=np.array(paths[:3]), outputs=np.zeros((3, 6), np.float32))
    with pytest.raises(MobileNetsError, match=r"no outputs for \d+ of the images"):
        distill(str(tmp_path / "short.npz"), str(photo_folder), "embedding", TINY, log=lambda *_: None,
                options=TrainOptions(output=str(tmp_path / "run2"), progress=False))
    assert not (tmp_path / "run2").exists()  # nothing written


def test_reports_beside_the_teacher(photo_folder, teacher_folder, tmp_path):
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.tasks.distill.data import load_crops
    from mobilenets.tasks.distill.metrics import read_pairs
    from mobilenets.tasks.distill.run import attribute_report, top1_agreement, verification_reports

    teacher = load_teacher(str(teacher_folder))
    files = [p for p in list_images(photo_folder) if not p.endswith("broken.jpg")]
    rows = [f"{files[i]},{files[i + 1]},{int(files[i][0] == files[i + 1][0])}" for i in range(len(files) - 1)]
    (photo_folder / "pairs.csv").write_text("a,b,same\n" + "\n".join(rows) + "\n")
    pairs = read_pairs(photo_folder / "pairs.csv")
    # the teacher as its own student: identical decisions, identical reports
    student = teacher.loaded_model
    rep = verification_reports(student, teacher.preprocessing, teacher, pairs, 32, roc_png=tmp_path / "roc.png")
    assert rep["agreement"] == 1.0
    assert rep["reports"]["student"]["accuracy"] == pytest.approx(rep["reports"]["teacher"]["accuracy"])
    assert (tmp_path / "roc.png").stat().st_size > 1000
    crops = load_crops(photo_folder, files, 32)
    agree = top1_agreement(student, teacher.preprocessing, teacher, crops)
    assert agree["top1_agreement"] == 1.0 and 0 < agree["majority_class_share"] <= 1
    other = MobileNet(TINY.replace(num_classes=5)).eval()
    ap = attribute_report(other, teacher.preprocessing, teacher, crops, names=list("abcde"))
    assert set(ap["per_attribute"]) | set(ap["no_positives"]) == set("abcde")

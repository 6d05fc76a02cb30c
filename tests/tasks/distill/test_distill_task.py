"""Distillation task: losses by hand, teacher/task mismatches, data errors, a tiny run through fit."""

from __future__ import annotations

import copy
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
def teacher_folder(tmp_path):
    """A random 5-class MobileNet whose BatchNorm statistics are measured on random-normal images,
    so that different crops get different outputs (with random statistics the 32 px features die
    and every crop gets the same logits, which makes any agreement trivially 1)."""
    from torch import nn

    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.weights.checkpoint import save_model

    torch.manual_seed(0)
    teacher = MobileNet(TINY.replace(num_classes=5))
    for m in teacher.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a plain average over the one batch
    teacher.train()
    with torch.no_grad():
        teacher(torch.randn(64, 3, 32, 32))
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

    # Negative control: a student whose classifier rows are permuted by sigma. Its logit j is the
    # teacher's logit sigma[j], so its top-1 is sigma^-1 of the teacher's: it agrees exactly on
    # the crops whose teacher top-1 is a fixed point of sigma. sigma swaps the teacher's two most
    # frequent classes.
    with torch.no_grad():
        logits = teacher(crops).numpy()  # the teacher's own outputs, not the report's
    top1 = logits.argmax(1)
    counts = np.bincount(top1, minlength=5)
    assert (counts > 0).sum() >= 3, counts  # a teacher that tells crops apart, or no control is possible
    first, second = np.argsort(-counts, kind="stable")[:2]
    sigma = np.arange(5)
    sigma[[first, second]] = sigma[[second, first]]
    permuted = copy.deepcopy(student)
    with torch.no_grad():
        permuted.classifier.weight.copy_(student.classifier.weight[torch.from_numpy(sigma)])
        permuted.classifier.bias.copy_(student.classifier.bias[torch.from_numpy(sigma)])
    expected = float(np.mean(sigma[top1] == top1))
    assert expected == pytest.approx(1 - (counts[first] + counts[second]) / len(top1)) and expected < 1
    agree = top1_agreement(permuted, teacher.preprocessing, teacher, crops)
    assert agree["top1_agreement"] == pytest.approx(expected, abs=1e-12)
    assert agree["majority_class_share"] == pytest.approx(counts.max() / len(top1))
    assert agree["teacher_classes_seen"] == int((counts > 0).sum()) and agree["images"] == len(files)

    # Attribute AP: the teacher's sigmoid >= 0.5 (logit >= 0) is the label, the student's output
    # the score. For a fixed point j of sigma the student's score is the label's own logit (AP 1);
    # for a swapped j it is another class's logit: AP by sklearn on those two columns.
    from sklearn.metrics import average_precision_score

    names = list("abcde")
    ap = attribute_report(permuted, teacher.preprocessing, teacher, crops, names=names)
    assert set(ap["per_attribute"]) | set(ap["no_positives"]) == set(names)
    labels = logits >= 0
    assert ap["positives"] == {n: int(labels[:, j].sum()) for j, n in enumerate(names)}
    checked = 0
    for j, name in enumerate(names):
        if not labels[:, j].any():
            assert name in ap["no_positives"]
            continue
        want = 1.0 if sigma[j] == j else average_precision_score(labels[:, j], logits[:, sigma[j]])
        assert ap["per_attribute"][name] == pytest.approx(want, abs=1e-6), name
        checked += sigma[j] != j and want < 1
    assert checked >= 1, "no swapped attribute with an AP below 1: the control would not see a column mix-up"

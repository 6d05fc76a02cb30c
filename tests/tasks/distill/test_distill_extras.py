"""Distillation extras: Parquet teachers, KD mixed with folder labels, the CelebA layout and its
ground-truth mean AP, the paper's Table 12 / Table 14 layouts with our cost counts."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.tasks.distill.task import distill_loss, folder_classes, split_targets, teacher_targets
from mobilenets.tasks.distill.teachers import load_teacher

TINY = MobileNetConfig(alpha=0.25, resolution=32)


# ---- Parquet precomputed teachers -------------------------------------------------------------

def test_parquet_without_pyarrow_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MobileNetsError, match="needs pyarrow, which is not installed"):
        load_teacher(str(tmp_path / "t.parquet"))
    with pytest.raises(FileNotFoundError, match="precomputed teacher outputs not found"):
        load_teacher(str(tmp_path / "missing.parquet"))


def test_parquet_teacher_both_layouts(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    crops = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    pq.write_table(pa.table({"path": ["a.jpg", "b/c.jpg"], "outputs": [[1.0, 2.0], [3.0, 4.0]]}), tmp_path / "l.parquet")
    pq.write_table(pa.table({"path": ["a.jpg", "b/c.jpg"], "x": [1.0, 3.0], "y": [2, 4]}), tmp_path / "c.parquet")
    for name in ("l.parquet", "c.parquet"):
        t = load_teacher(str(tmp_path / name))
        assert t.uses_paths and t.missing(["a.jpg", "zz.jpg"]) == ["zz.jpg"]
        assert t(crops, ["b/c.jpg", "a.jpg"]).tolist() == [[3.0, 4.0], [1.0, 2.0]]
    pq.write_table(pa.table({"file": ["a.jpg"], "x": [1.0]}), tmp_path / "bad.parquet")
    with pytest.raises(MobileNetsError, match="needs a column 'path'"):
        load_teacher(str(tmp_path / "bad.parquet"))


# ---- KD mixed with folder labels --------------------------------------------------------------

def test_kd_with_labels_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.5, 0.0]])
    t = teacher_targets(torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]), "logits", "classify", "t")
    labels = torch.tensor([0, 1])
    kd = float(distill_loss(s, t, "classify", 2.0))
    ce = float(F.cross_entropy(s, labels))
    mixed = float(distill_loss(s, {"teacher": t, "labels": labels}, "classify", 2.0, label_weight=0.25))
    assert mixed == pytest.approx(0.75 * kd + 0.25 * ce, rel=1e-6)
    assert float(distill_loss(s, {"teacher": t, "labels": labels}, "classify", 2.0)) == pytest.approx(kd)
    assert split_targets(t)[1] is None


def test_folder_classes():
    paths = ["dog/1.jpg", "cat/2.jpg", "cat/x/3.jpg"]
    assert folder_classes(paths, None, 2, "d") == ["cat", "dog"]  # sorted, as ImageFolder
    names = ["bird", "cat", "dog"]
    assert folder_classes(paths, names, 3, "d") == names  # matched to the teacher's own names
    with pytest.raises(MobileNetsError, match="2 class folders, the teacher 5 outputs"):
        folder_classes(paths, None, 5, "d")
    with pytest.raises(MobileNetsError, match="in class folders"):
        folder_classes(["1.jpg", "2.jpg"], None, 2, "d")


@pytest.fixture
def class_folders(tmp_path):
    from mobilenets.data.photos import write_crops

    write_crops(tmp_path / "data" / "cat", 5, photos=["chelsea"], size=40)
    write_crops(tmp_path / "data" / "rocket", 5, photos=["rocket"], size=40, seed=1)
    return tmp_path / "data"


def test_distill_with_labels_through_fit(class_folders, tmp_path, randomized_bn):
    from mobilenets.tasks.distill.run import distill
    from mobilenets.train.options import TrainOptions
    from mobilenets.weights.checkpoint import load_checkpoint
    from mobilenets.weights.folder import save_model

    torch.manual_seed(0)
    teacher = randomized_bn(MobileNet(TINY.replace(num_classes=2)), seed=1, classifier_std=1.0)
    save_model(teacher.eval(), tmp_path / "teacher")
    summary = distill(str(tmp_path / "teacher"), str(class_folders), "classify", TINY, val_every=5, label_weight=0.5,
                      recipe_overrides={"epochs": 1, "batch_size": 4}, log=lambda *_: None,
                      options=TrainOptions(output=str(tmp_path / "run"), progress=False))
    assert 0 <= summary["metrics"]["top1_accuracy"] <= 1 and "top1_agreement" in summary["metrics"]
    student, meta = load_checkpoint(summary["student_folder"])  # a plain model folder
    assert student.config.num_classes == 2 and meta["source"]["distilled_from"] == str(tmp_path / "teacher")
    with pytest.raises(MobileNetsError, match="label_weight is for task='classify'"):
        distill(str(tmp_path / "teacher"), str(class_folders), "multilabel", TINY, label_weight=0.5)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(class_folders.rglob("*.jpg"))[:4]:
        (flat / f.name).write_bytes(f.read_bytes())
    with pytest.raises(MobileNetsError, match="in class folders"):
        distill(str(tmp_path / "teacher"), str(flat), "classify", TINY, val_every=2, label_weight=0.5,
                options=TrainOptions(output=str(tmp_path / "run2"), progress=False), log=lambda *_: None)
    assert not (tmp_path / "run2").exists()


# ---- CelebA -----------------------------------------------------------------------------------

NAMES = ["Male", "Smiling", "Bald"]
# rows of +-1 for images 000001..000006; the test partition (4, 5, 6) has no bald person
ROWS = [[1, 1, 1], [-1, 1, -1], [1, -1, 1], [1, 1, -1], [-1, -1, -1], [1, -1, -1]]


@pytest.fixture
def celeba(tmp_path):
    from mobilenets.data.photos import write_crops

    root = tmp_path / "celeba"
    paths = write_crops(root / "img_align_celeba", 6, photos=["astronaut", "grace_hopper", "coffee"], size=40)
    files = [f"{i + 1:06d}.jpg" for i in range(6)]
    for p, f in zip(paths, files):
        p.rename(root / "img_align_celeba" / f)
    lines = ["6", " ".join(NAMES)] + [f + "".join(f" {v:2d}" for v in row) for f, row in zip(files, ROWS)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {0 if i < 2 else 1 if i < 3 else 2}\n"
                                                          for i, f in enumerate(files)))
    return root


def test_read_celeba(celeba):
    from mobilenets.tasks.distill.celeba import read_celeba

    data = read_celeba(celeba)
    assert data.names == NAMES and data.images == celeba / "img_align_celeba"
    assert data.labels.tolist() == [[int(v > 0) for v in row] for row in ROWS]
    files, labels = data.split("test")
    assert files == ["000004.jpg", "000005.jpg", "000006.jpg"] and labels[:, 2].sum() == 0
    with pytest.raises(MobileNetsError, match="unknown CelebA partition"):
        data.split("dev")


def test_celeba_report_against_ground_truth(celeba):
    from sklearn.metrics import average_precision_score

    from mobilenets.tasks.distill.celeba import celeba_report
    from mobilenets.tasks.distill.data import load_crops
    from mobilenets.tasks.distill.run import outputs_of
    from mobilenets.tasks.distill.teachers import IMAGENET

    torch.manual_seed(0)
    student = MobileNet(TINY.replace(num_classes=3)).eval()
    pre = IMAGENET.at(32)
    order = ["Smiling", "Bald", "Male"]  # the student's outputs, named: matched by name
    rep = celeba_report(student, pre, celeba, "test", output_names=order)
    scores = outputs_of(student, load_crops(celeba / "img_align_celeba", ["000004.jpg", "000005.jpg", "000006.jpg"],
                                            32), pre)
    truth = np.array([[int(v > 0) for v in row] for row in ROWS[3:]])
    assert rep["no_positives"] == ["Bald"] and rep["images"] == 3  # reported apart, not averaged as 0
    assert rep["per_attribute"]["Male"] == pytest.approx(average_precision_score(truth[:, 0], scores[:, 2]))
    assert rep["per_attribute"]["Smiling"] == pytest.approx(average_precision_score(truth[:, 1], scores[:, 0]))
    assert rep["mean_ap"] == pytest.approx((rep["per_attribute"]["Male"] + rep["per_attribute"]["Smiling"]) / 2)
    assert "no positives (no AP, not averaged): Bald" in rep["table"]


def test_celeba_bad_input(celeba):
    from mobilenets.tasks.distill.celeba import celeba_report, read_celeba
    from mobilenets.tasks.distill.teachers import IMAGENET

    pre = IMAGENET.at(32)
    with pytest.raises(MobileNetsError, match="are not CelebA's 3 attributes"):
        celeba_report(MobileNet(TINY.replace(num_classes=7)).eval(), pre, celeba)
    (celeba / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) of the test partition are missing"):
        celeba_report(MobileNet(TINY.replace(num_classes=3)).eval(), pre, celeba)
    text = (celeba / "list_attr_celeba.txt").read_text().replace("000002.jpg -1", "000002.jpg  0")
    (celeba / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(MobileNetsError, match="line 4: expected an image name and 3 values of 1 or -1"):
        read_celeba(celeba)
    with pytest.raises(FileNotFoundError, match="CelebA folder not found"):
        read_celeba(celeba / "nope")


# ---- Table 12 / Table 14 layouts --------------------------------------------------------------

def test_tables_with_our_cost_counts(recwarn):
    from mobilenets.cost.count import analytical_cost
    from mobilenets.tasks.distill.metrics import verification_report
    from mobilenets.tasks.distill.tables import attribute_table, embedding_table, student_cost

    cfg = MobileNetConfig(alpha=0.25, resolution=224)
    model = MobileNet(cfg)
    mult_adds, params = student_cost(model)
    cost = analytical_cost(cfg)
    assert mult_adds == pytest.approx(cost.mult_adds / 1e6) and params == pytest.approx(cost.params / 1e6)
    assert 40 < mult_adds < 42 and 0.45 < params < 0.5  # paper Table 6: 41 M mult-adds, 0.5 M parameters
    table = attribute_table([("0.25 MobileNet-224", 0.8765, model), ("teacher", 0.9, None)]).splitlines()
    assert table[0].split()[:4] == ["Width", "Multiplier", "/", "Resolution"]
    assert table[1].split()[-3:] == ["87.65%", f"{mult_adds:.1f}", f"{params:.2f}"]
    assert table[2].split()[-2:] == ["-", "-"]
    same = np.array([True, True, False, False])
    report = verification_report(None, None, same, distances=np.array([0.1, 0.5, 0.3, 0.9]), fold_ids=[0, 0, 1, 1])
    rows = embedding_table([("student", report, model)]).splitlines()
    assert "0.0001 Accuracy" in rows[0] and rows[1].split()[1] == f"{100 * report.tar_at_far[1e-4]:.2f}%"
    assert rows[-1].startswith("note: TAR at FAR 0.0001 is not measurable")

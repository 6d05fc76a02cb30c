"""The one inference loop: what it does to a batch (device, autocast, no gradients, the task's
on_device hook, skipped items), and that each command converted to it gives the numbers of a plain
reference loop (the code it replaced): classify eval on the digits, the fine-tuning confusion
matrix, ``mobilenet predict``, geo predict on its stand-in, distillation outputs, detect predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets.infer import StepContext, evaluate, predict_outputs, run_batches
from mobilenets.train.tasks import Metrics, Task

CPU = StepContext(torch.device("cpu"))


class _Probe(nn.Module):
    """Records what it was called with: the input's dtype/layout, grad and autocast state."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.calls: list[dict] = []

    def forward(self, x):
        self.calls.append({"grad": torch.is_grad_enabled(), "autocast": torch.is_autocast_enabled("cpu"),
                           "channels_last": x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1,
                           "training": self.training})
        return self.conv(x).mean(dim=(2, 3))


class _Sum(Metrics):
    def __init__(self) -> None:
        self.n, self.dtypes = 0, []

    def update(self, outputs, targets) -> None:
        self.n += len(targets)
        self.dtypes.append(outputs.dtype)

    def compute(self):
        return {"n": self.n}


class _ProbeTask(Task):
    """A task whose on_device hook records the device, autocast and grad state it runs in and
    computes the targets there (as the distillation teacher does)."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def build_model(self):
        return _Probe()

    def datasets(self):
        return [], None

    def collate(self, items):
        return items

    def loss(self, outputs, targets):
        return {"loss": outputs.sum()}

    def new_metrics(self):
        return _Sum()

    def on_device(self, inputs, targets, ctx):
        self.seen.append({"device": inputs.device, "autocast": torch.is_autocast_enabled("cpu"),
                          "grad": torch.is_grad_enabled()})
        return inputs, inputs.flatten(1).sum(1)  # targets computed from the moved inputs


def _batches(sizes, bad_at=()):
    for i, n in enumerate(sizes):
        yield torch.rand(n, 3, 4, 4), torch.arange(n), [(f"bad{i}.jpg", "unreadable")] if i in bad_at else []


def test_run_batches_moves_autocasts_and_calls_the_task_hook():
    model, task = _Probe().train(), _ProbeTask()
    skipped: list = []
    ctx = StepContext(torch.device("cpu"), amp=True, channels_last=True)
    metrics = task.new_metrics()
    n = run_batches(model, _batches([2, 0, 3], bad_at=(1,)), metrics.update, ctx, task=task, skipped=skipped.extend)
    assert n == 5 == metrics.n and skipped == [("bad1.jpg", "unreadable")]
    assert len(model.calls) == len(task.seen) == 2  # the empty batch is passed over, its bad item reported
    assert all(c == {"grad": False, "autocast": True, "channels_last": True, "training": False} for c in model.calls)
    assert all(s == {"device": torch.device("cpu"), "autocast": True, "grad": False} for s in task.seen)
    assert metrics.dtypes == [torch.bfloat16] * 2  # the consumer gets what the model gave under autocast
    # evaluate is the same loop with the task's metrics; without amp the outputs stay float32
    model.calls.clear()
    assert evaluate(model, _batches([4, 1]), task, CPU) == {"n": 5}
    assert not any(c["autocast"] or c["channels_last"] or c["grad"] for c in model.calls)
    # predict_outputs stacks outputs (upcast from bf16) and targets on the CPU; a plain callable works too
    out, tgt = predict_outputs(lambda x: x.flatten(1)[:, :2].to(torch.bfloat16), _batches([2, 3]), ctx)
    assert out.dtype == torch.float32 and out.shape == (5, 2) and tgt.tolist() == [0, 1, 0, 1, 2]


# ------------------------------------------------------------------ classification on the digits


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A run folder holding an untrained digits classifier (random weights and BatchNorm
    statistics, so that its predictions spread over the classes; training it would take minutes
    on a shared CPU) saved as the training loop saves one, its val images with the preprocessing
    it records, and a plain reference loop's logits."""
    from mobilenets.data.datasets import load_data
    from mobilenets.train.classify import DEFAULT_MODEL, augment_for
    from mobilenets.train.recipes import get_recipe
    from mobilenets.train.tasks import ClassificationTask
    from mobilenets.weights.checkpoint import load_checkpoint
    from mobilenets.weights.files import save_weights

    out = tmp_path_factory.mktemp("infer") / "digits"
    augment = augment_for(get_recipe("paper"))
    task = ClassificationTask(DEFAULT_MODEL, load_data(None, DEFAULT_MODEL.resolution, augment), augment=augment)
    torch.manual_seed(0)
    model = task.build_model().eval()
    # the classifier becomes nearest-class-mean over the random body's pooled features of 300
    # training digits: a model that is right and wrong often enough for the counts to tell
    feats: list[torch.Tensor] = []
    hook = model.classifier.register_forward_hook(lambda m, inp, out: feats.append(inp[0]))
    train = [task.bundle.train[i] for i in range(300)]
    with torch.no_grad():
        model(torch.stack([item[0] for item in train]))
        hook.remove()
        f, y = feats[0], torch.tensor([int(item[1]) for item in train])
        means = torch.stack([f[y == c].mean(0) for c in range(10)])
        bias = -0.5 * (means ** 2).sum(1)
        scale = 3 / float((f @ means.T + bias).std(dim=1).mean())  # logits a few units apart
        model.classifier.weight.copy_(scale * means)
        model.classifier.bias.copy_(scale * bias)
    meta = {"task": task.name, "model": task.config.to_dict(), **task.run_meta()}
    save_weights(model, out / "best.safetensors", task.config, {"run": json.dumps(meta)})
    model, meta = load_checkpoint(out)
    val = task.bundle.val
    x = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.tensor([int(val[i][1]) for i in range(len(val))])
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 64]) for i in range(0, len(x), 64)])
    return out, x, labels, logits


def test_classify_eval_and_confusion_equal_a_plain_loop(digits):
    from mobilenets.studies.finetune import confusion
    from mobilenets.train.classify import eval_checkpoint

    run, _x, labels, logits = digits
    top1 = int((logits.argmax(1) == labels).sum())
    top5 = int((logits.topk(5, dim=1).indices == labels[:, None]).any(1).sum())
    assert len(set(logits.argmax(1).tolist())) >= 3 and 0 < top1 < len(labels)  # counts that can differ
    got = eval_checkpoint(str(run), batch_size=100, device="cpu")
    assert got["images"] == len(labels) and round(got["top1"] * len(labels)) == top1
    assert round(got["top5"] * len(labels)) == top5
    assert got["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    # bf16 autocast (with channels_last) runs: a different loss, near the float32 one
    amp = eval_checkpoint(str(run), batch_size=150, device="cpu", amp=True, channels_last=True)
    assert amp["loss"] != got["loss"] and amp["loss"] == pytest.approx(got["loss"], rel=0.05)
    assert abs(amp["top1"] - got["top1"]) < 0.03
    # the fine-tuning confusion matrix: rows are the true classes, its diagonal the top-1 count
    conf = confusion(run, None, batch_size=50)
    matrix = np.array(conf["matrix"])
    assert int(matrix.trace()) == top1 and int(matrix.sum()) == len(labels)
    expected = np.zeros_like(matrix)
    np.add.at(expected, (labels.numpy(), logits.argmax(1).numpy()), 1)
    assert (matrix == expected).all() and json.loads((run / "confusion.json").read_text())["top1"] == conf["top1"]


def test_predict_files_equal_one_image_at_a_time(digits, tmp_path):
    from PIL import Image

    from mobilenets.data.datasets import Augment, eval_transform
    from mobilenets.deploy.predict import predict
    from mobilenets.errors import DataNotFoundError, MobileNetsError
    from mobilenets.weights.checkpoint import load_checkpoint

    run = digits[0]
    rng = np.random.default_rng(0)
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (40 + 3 * i, 36, 3), dtype=np.uint8)).save(files[-1])
    got = predict(str(run), [str(f) for f in files], top_k=3, batch_size=2)
    model, meta = load_checkpoint(run)
    transform = eval_transform(model.config.resolution, Augment.for_eval(meta))
    model.eval()
    for f, item in zip(files, got):
        with torch.no_grad():  # what mobilenet predict did before: one image at a time
            probs = model(transform(Image.open(f).convert("RGB"))[None]).softmax(1)[0]
        p, idx = probs.topk(3)
        assert item["image"] == str(f) and [t["label"] for t in item["top"]] == [meta["classes"][i] for i in idx]
        assert [t["probability"] for t in item["top"]] == pytest.approx(p.tolist(), abs=1e-5)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataNotFoundError, match="image not found"):
        predict(str(run), [str(files[0]), str(tmp_path / "missing.png")])
    with pytest.raises(MobileNetsError, match="cannot read image"):
        predict(str(run), [str(files[0]), str(tmp_path / "bad.png")])


# ------------------------------------------------------------------ geolocation on its stand-in


def test_geo_predict_and_table_equal_a_plain_loop(tmp_path):
    from PIL import Image

    from mobilenets.cli.main import main
    from mobilenets.data.datasets import Augment, eval_transform
    from mobilenets.tasks.geo.data import read_photos
    from mobilenets.tasks.geo.predict import load_geo_checkpoint, predict, predict_table
    from mobilenets.tasks.geo.standin import write_standin
    from mobilenets.utils.scoped import torch_threads

    standin = tmp_path / "standin"
    write_standin(standin, photos=60, places=6, size=32, seed=1)
    with torch_threads(1):
        assert main(["geo", "cells", "--photos", str(standin / "train.csv"), "--max-per-cell", "15",
                     "--min-per-cell", "2", "--max-level", "14", "--output", str(tmp_path / "cells.csv")]) == 0
        assert main(["geo", "train", "--data", str(standin / "train.csv"), "--val", str(standin / "val.csv"),
                     "--cells", str(tmp_path / "cells.csv"), "--alpha", "0.25", "--resolution", "32", "--epochs", "1",
                     "--batch-size", "16", "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    model, cells, meta = load_geo_checkpoint(str(tmp_path / "run"))
    model.eval()
    transform = eval_transform(model.config.resolution, Augment.for_eval(meta))
    table = read_photos(str(standin / "val.csv"))
    paths = [str(p) for p in np.asarray(table.paths)]
    lat_c, lon_c = cells.locations("mean")
    with torch.no_grad():  # what geo predict did before: one image at a time
        probs = torch.cat([model(transform(Image.open(p).convert("RGB"))[None]).softmax(1) for p in paths])
    got = predict(str(tmp_path / "run"), paths, top_k=2, batch_size=5)
    for row, item in zip(probs, got):
        p, idx = row.topk(2)
        assert [t["cell"] for t in item["top"]] == [meta["classes"][i] for i in idx]
        assert [t["probability"] for t in item["top"]] == pytest.approx(p.tolist(), abs=1e-5)
        assert (item["latitude"], item["longitude"]) == pytest.approx((lat_c[idx[0]], lon_c[idx[0]]))
    lat, lon, used, bad = predict_table(model, cells, meta, table, batch_size=7, device="cpu")
    top = probs.argmax(1).numpy()
    assert used.all() and not bad and len(set(top.tolist())) >= 1
    assert np.allclose(lat, lat_c[top]) and np.allclose(lon, lon_c[top])


# ------------------------------------------------------------------ distillation outputs


def test_distillation_outputs_equal_a_plain_loop(tmp_path, digits):
    from mobilenets.tasks.distill.run import outputs_of
    from mobilenets.tasks.distill.teachers import load_teacher, normalize_crops
    from mobilenets.weights.checkpoint import load_checkpoint

    teacher = load_teacher(str(digits[0]))
    student, _ = load_checkpoint(digits[0])
    student.eval()
    crops = torch.randint(0, 256, (7, 3, 40, 40), dtype=torch.uint8)
    pre = teacher.preprocessing
    with torch.no_grad():
        want = student(normalize_crops(crops, pre)).numpy()
    assert np.allclose(outputs_of(student, crops, pre, batch_size=3), want, atol=1e-5)
    assert np.allclose(outputs_of(teacher, crops, batch_size=4), teacher(crops).numpy(), atol=1e-6)
    amp = outputs_of(student, crops, pre, batch_size=3, amp=True)
    assert amp.dtype == np.float32 and not np.array_equal(amp, want) and np.allclose(amp, want, atol=0.1 * np.abs(want).max())
    assert outputs_of(student, crops[:0], pre).shape == (0, 0)


# ------------------------------------------------------------------ detection predict


def test_detect_images_equal_one_image_at_a_time():
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from mobilenets.models.config import MobileNetConfig
    from mobilenets.tasks.detect.build import build_detector
    from mobilenets.tasks.detect.config import make_config
    from mobilenets.tasks.detect.predict import detect_images

    torch.manual_seed(0)
    cfg = make_config("ssd", backbone=MobileNetConfig(alpha=0.25), resolution=64, num_classes=3)
    model = build_detector(cfg).eval()
    meta = {"model": cfg.to_dict(), "classes": ["a", "b", "c"], "category_ids": [3, 5, 9]}
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (50 + 10 * i, 70, 3), dtype=np.uint8)) for i in range(3)]
    got = detect_images(model, meta, images, score=0.0, batch_size=2)
    for image, dets in zip(images, got):
        x = F.resize(F.to_dtype(F.to_image(image), torch.float32, scale=True), [64, 64], antialias=True)
        with torch.no_grad():  # what detect predict did before: one image at a time
            det = model([x.as_subclass(torch.Tensor)])[0]
        assert len(dets) == len(det["scores"]) > 0
        sx, sy = image.width / 64, image.height / 64
        assert [d["category_id"] for d in dets] == [meta["category_ids"][i - 1] for i in det["labels"].tolist()]
        assert np.allclose([d["box"] for d in dets], (det["boxes"] * torch.tensor([sx, sy, sx, sy])).numpy(),
                           atol=0.011)
        assert np.allclose([d["score"] for d in dets], det["scores"].numpy(), atol=1e-4)

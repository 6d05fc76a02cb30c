"""The SSD machinery learns: one batch of stand-in images is fitted to ~exact boxes and labels.

These catch what trains to nothing while every shape looks right: a box coder that does not
round-trip against the anchors, a head reshaped in another anchor order than the generator's
(map -> row -> column -> box; fitting one batch cannot see that, a mismatch is memorised as
well), pixel vs normalised or xyxy vs cy/cx/h/w coordinates, labels without the background
offset.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from mobilenets.tasks.detect.config import make_config
from mobilenets.tasks.detect.data import load_splits
from mobilenets.tasks.detect.standin import write_standin
from mobilenets.tasks.detect.task import DetectionTask
from mobilenets.tasks.detect.transforms import DetectAugment
from mobilenets.utils.scoped import torch_threads


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    data = write_standin(tmp_path_factory.mktemp("overfit") / "data", seed=3, train=4, val=1, size=192)
    cfg = make_config("ssd", alpha=0.25, resolution=128, num_classes=4)
    task = DetectionTask(cfg, load_splits(data), augment=DetectAugment(crop=False, hflip=False))
    train, _ = task.datasets()
    (images, targets), _, _ = task.collate([train[i] for i in range(4)])
    return task, images, targets


def test_box_coder_round_trips_through_the_matched_anchors(batch):
    task, images, targets = batch
    torch.manual_seed(0)
    model = task.build_model().eval()
    image_list, _ = model.transform(images, None)
    maps = list(model.backbone(image_list.tensors).values())
    anchors = model.anchor_generator(ImageList(image_list.tensors, image_list.image_sizes), maps)[0]
    head = model.head(maps)
    assert head["bbox_regression"].shape[1] == anchors.shape[0] == head["cls_logits"].shape[1]
    for target in targets:
        gt = target["boxes"]
        assert gt.numel() and (gt[:, 2:] > gt[:, :2]).all() and gt.max() <= 128  # pixel xyxy at the input size
        assert target["labels"].min() >= 1  # 0 is background
        best = box_iou(gt, anchors).argmax(1)
        codes = model.box_coder.encode_single(gt, anchors[best])
        assert torch.allclose(model.box_coder.decode_single(codes, anchors[best]), gt, atol=1e-4)


@pytest.mark.parametrize("cell", [(0, 0), (1, 6), (7, 2)])
def test_head_outputs_are_in_the_anchor_generators_order(batch, cell):
    """Nudging one cell of one feature map moves exactly the 1x1 head's outputs of that cell: the
    anchors at those indices must be the ones centred on that cell (map -> row -> column -> box)."""
    task, images, _ = batch
    torch.manual_seed(0)
    model = task.build_model().eval()
    image_list, _ = model.transform(images[:1], None)
    with torch.no_grad():
        maps = list(model.backbone(image_list.tensors).values())
        anchors = model.anchor_generator(ImageList(image_list.tensors, image_list.image_sizes), maps)[0]
        before = model.head(maps)["bbox_regression"][0]
        for k in (0, 1):  # block 11 (8 x 8 at 128 px) and block 13 (4 x 4)
            i, j = (c if k == 0 else c // 2 for c in cell)
            nudged = [m.clone() for m in maps]
            nudged[k][:, :, i, j] += 1.0
            moved = (model.head(nudged)["bbox_regression"][0] - before).abs().sum(1) > 0
            rows, cols = maps[k].shape[-2:]
            per_cell = len(model.anchor_generator.specs[k])
            offset = sum(m.shape[-2] * m.shape[-1] * len(s) for m, s in zip(maps[:k], model.anchor_generator.specs))
            assert moved.sum() == per_cell
            assert moved.nonzero().flatten().tolist() == list(range(offset + (i * cols + j) * per_cell,
                                                                     offset + (i * cols + j + 1) * per_cell))
            centres = (anchors[moved, :2] + anchors[moved, 2:]) / 2
            assert torch.allclose(centres, torch.tensor([(j + 0.5) * 128 / cols, (i + 0.5) * 128 / rows]).expand_as(centres),
                                  atol=1e-4)


@pytest.mark.slow
def test_ssd_fits_one_batch(batch):
    task, images, targets = batch
    torch.manual_seed(0)
    with torch_threads(1):
        model = task.build_model().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(150):
            losses = model(images, targets)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        assert float(sum(losses.values()).detach()) < 1.0
        with torch.no_grad():
            detections = model.eval()(images)
    for det, target in zip(detections, targets):
        top = det["scores"] > 0.5
        iou = box_iou(target["boxes"], det["boxes"][top])
        assert iou.shape[1] >= len(target["boxes"])
        # every object found at IoU > 0.7 with its own label
        for k in range(len(target["boxes"])):
            j = int(iou[k].argmax())
            assert iou[k, j] > 0.7 and det["labels"][top][j] == target["labels"][k]

"""Tests of mobilenets.data: the digits split, image folders, and skipping unreadable files."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from mobilenets.data.datasets import (
    Augment,
    BadSample,
    DataBundle,
    DigitsDataset,
    collate_skip_bad,
    load_data,
)
from mobilenets.data.digits import DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE

# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits32() -> DataBundle:
    return load_data(None, 32)


@pytest.fixture(scope="module")
def raw_digits():
    from sklearn.datasets import load_digits

    return load_digits()


def test_digits_split_sizes_and_labels(digits32):
    assert DIGITS_TEST_SIZE == 0.25 and DIGITS_SPLIT_SEED == 0
    assert digits32.source == "digits"
    assert digits32.classes == [str(d) for d in range(10)]
    assert len(digits32.train) == 1347
    assert len(digits32.val) == 450
    for part in (digits32.train, digits32.val):
        assert set(part.targets) == set(range(10))
        assert all(0 <= t <= 9 for t in part.targets)


def test_digits_split_is_stratified(digits32, raw_digits):
    total = Counter(raw_digits.target.tolist())
    val = Counter(digits32.val.targets)
    train = Counter(digits32.train.targets)
    for c in range(10):
        assert train[c] + val[c] == total[c]
        # Stratified: each class has its 25% share of the test set, to within one image.
        assert abs(val[c] - 0.25 * total[c]) <= 1, (c, val[c], total[c])


def test_digits_split_is_deterministic_and_disjoint(digits32, raw_digits):
    again = load_data(None, 48)
    assert again.train.indices == digits32.train.indices
    assert again.val.indices == digits32.val.indices
    train, val = set(digits32.train.indices), set(digits32.val.indices)
    assert not train & val
    assert train | val == set(range(len(raw_digits.target)))
    # The documented recipe, reproduced independently.
    from sklearn.model_selection import train_test_split

    idx = list(range(len(raw_digits.target)))
    ref_train, ref_val = train_test_split(idx, test_size=0.25, stratify=raw_digits.target, random_state=0)
    assert digits32.train.indices == list(ref_train)
    assert digits32.val.indices == list(ref_val)
    # Labels belong to the indexed images.
    assert digits32.val.targets == raw_digits.target[digits32.val.indices].tolist()


@pytest.mark.parametrize("resolution", [32, 48])
def test_digits_item_shape(resolution):
    bundle = load_data(None, resolution)
    for part in (bundle.train, bundle.val):
        image, label = part[5]
        assert image.shape == (3, resolution, resolution)
        assert image.dtype == torch.float32
        assert isinstance(label, int)
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_digits_val_values_match_reference(digits32, raw_digits):
    """Val items are exactly: /16, bilinear up-sampling, (x - 0.5) / 0.5; no randomness."""
    stack = torch.stack([digits32.val[i][0] for i in range(len(digits32.val))])
    assert stack.min().item() == -1.0  # background pixels are 0 -> -1
    assert stack.max().item() <= 1.0
    assert stack.max().item() > 0.9  # ink reaches 16/16 in many digits
    i = 17
    src = torch.from_numpy(raw_digits.images[digits32.val.indices[i]]).float() / 16
    ref = F.interpolate(src[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(stack[i, 0], ref * 2 - 1, atol=1e-6)
    assert torch.equal(digits32.val[i][0], digits32.val[i][0])


def test_digits_custom_normalisation(raw_digits):
    aug = Augment(mean=(0.0, 0.25, 0.5), std=(1.0, 0.5, 0.25))
    bundle = load_data(None, 32, aug)
    image, _ = bundle.val[0]
    base = image[0]  # mean 0, std 1: the [0, 1] image itself
    assert base.min() >= 0 and base.max() <= 1
    assert torch.allclose(image[1], (base - 0.25) / 0.5, atol=1e-6)
    assert torch.allclose(image[2], (base - 0.5) / 0.25, atol=1e-6)


def test_digits_lazy_upsampling_matches_precomputed(digits32, raw_digits):
    images = torch.from_numpy(raw_digits.images[digits32.val.indices]).float() / 16
    lazy = DigitsDataset(images, digits32.val.targets, digits32.val.indices, 32, Augment(),
                         train=False, precompute=False)
    assert not lazy.precomputed and digits32.val.precomputed
    for i in (0, 100, 449):
        assert torch.allclose(lazy[i][0], digits32.val[i][0], atol=1e-6)
    # Large resolutions are not precomputed (memory), but give the right shape.
    big = load_data(None, 96)
    assert not big.train.precomputed
    assert big.train[0][0].shape == (3, 96, 96)


def test_digits_train_augmentation_is_small_and_never_flips():
    """A bar in the left column stays within ~1 source pixel of it: moved a little, never mirrored."""
    image = torch.zeros(1, 8, 8)
    image[0, 2:6, 1] = 1.0  # source column 1 -> centre x = (1 + 0.5) * 4 - 0.5 = 5.5 at 32 px
    xs = torch.arange(32.0).view(1, 32)

    def centre_x(ds):
        x = (ds[0][0][0] + 1) / 2
        return (x * xs).sum().item() / x.sum().item()

    assert centre_x(DigitsDataset(image, [3], [0], 32, Augment(), train=False)) == pytest.approx(5.5)
    train = DigitsDataset(image, [3], [0], 32, Augment(hflip=True), train=True)
    torch.manual_seed(0)
    centres = [centre_x(train) for _ in range(120)]
    # Scale 0.9-1.1 about the centre (15.5) and a shift of <= 4 px (one source pixel):
    # 5.5 lands in [15.5 - 11 - 4, 15.5 - 9 + 4] = [0.5, 10.5]; a flip would put it near 25.5.
    assert min(centres) >= 0.5 - 0.1 and max(centres) <= 10.5 + 0.1
    assert max(centres) - min(centres) > 4  # it does move
    assert train[0][1] == 3


def test_digits_train_items_stay_close_to_the_originals(digits32):
    train = digits32.train
    torch.manual_seed(0)
    same, mirror = [], []
    for i in range(120):
        clean = train.images[i, 0] * 2 - 1
        aug, label = train[i]
        assert label == train.targets[i]
        assert aug.shape == (3, 32, 32)
        assert aug.min() >= -1 - 1e-6 and aug.max() <= 1 + 1e-6
        same.append(torch.corrcoef(torch.stack([aug[0].flatten(), clean.flatten()]))[0, 1].item())
        mirror.append(torch.corrcoef(torch.stack([aug[0].flatten(), clean.flip(-1).flatten()]))[0, 1].item())
    assert np.mean(same) > 0.6
    assert np.mean(same) > np.mean(mirror) + 0.1
    assert np.mean(same) < 0.99  # not the identity


def test_digits_with_dataloader_workers(digits32):
    loader = DataLoader(digits32.val, batch_size=128, num_workers=2, collate_fn=collate_skip_bad)
    labels = []
    for images, y, bad in loader:
        assert images.shape[1:] == (3, 32, 32)
        assert y.dtype == torch.long
        assert bad == []
        labels += y.tolist()
    assert labels == digits32.val.targets


# --------------------------------------------------------------------------- image folders

CORRUPT = ("truncated.jpg", "empty.jpg", "notes.jpg")


def _photos() -> dict[str, list[np.ndarray]]:
    """Real photos from scikit-image, a few crops/variants each, grouped into three classes."""
    from skimage import data

    cat = data.chelsea()
    astro = data.astronaut()
    camera = data.camera()  # grayscale
    return {
        "astronaut": [astro, astro[:300, 100:400], astro[::2, ::2], astro[200:, :300]],
        "cat": [cat, cat[50:250, 100:350], cat[:, ::-1]],
        "scene": [data.coffee(), data.rocket()[:, 100:500], camera, camera[100:400, 50:450]],
    }


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("imagenet")
    expected = {"train": Counter(), "val": Counter()}
    good_train = []
    for cls, arrays in _photos().items():
        for split in ("train", "val"):
            (root / split / cls).mkdir(parents=True)
        for k, arr in enumerate(arrays):
            img = Image.fromarray(np.ascontiguousarray(arr))
            # Mixed formats and an upper-case extension: all must be found.
            name = [f"{cls}_{k}.jpg", f"{cls}_{k}.PNG", f"{cls}_{k}.jpeg", f"{cls}_{k}.bmp"][k % 4]
            path = root / "train" / cls / name
            img.save(path)
            good_train.append(str(path))
            expected["train"][cls] += 1
        # One val image per class, a different crop from the train ones.
        Image.fromarray(np.ascontiguousarray(arrays[0][10:-10, 20:-20])).save(root / "val" / cls / "v.jpg")
        expected["val"][cls] += 1
        # Not images: ignored, not reported.
        (root / "train" / cls / "readme.txt").write_text("not an image\n")
    # Corrupt files, one per class, all with an image extension.
    import io

    buf = io.BytesIO()
    Image.fromarray(_photos()["cat"][0]).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    (root / "train" / "astronaut" / CORRUPT[0]).write_bytes(jpeg[: int(len(jpeg) * 0.4)])
    (root / "train" / "cat" / CORRUPT[1]).write_bytes(b"")
    (root / "train" / "scene" / CORRUPT[2]).write_text("this is a text file, not a JPEG\n")
    return root, {"counts": expected, "good_train": good_train}


def test_folder_classes_and_sizes(image_folder):
    root, info = image_folder
    bundle = load_data(root, 40)
    assert bundle.classes == ["astronaut", "cat", "scene"]
    assert bundle.source == str(root)
    # The corrupt files are listed (they are only found bad when decoded); .txt is not.
    assert len(bundle.train) == sum(info["counts"]["train"].values()) + len(CORRUPT) == 14
    assert len(bundle.val) == 3
    assert Counter(bundle.val.targets) == {0: 1, 1: 1, 2: 1}


def test_folder_loader_skips_corrupt_files(image_folder):
    root, info = image_folder
    bundle = load_data(root, 40)
    torch.manual_seed(0)
    loader = DataLoader(bundle.train, batch_size=4, shuffle=True, num_workers=2,
                        collate_fn=collate_skip_bad)
    labels, bad, n_images = [], [], 0
    for images, y, batch_bad in loader:
        assert images.dtype == torch.float32 and y.dtype == torch.long
        assert images.shape == (len(y), 3, 40, 40)
        if len(y):
            assert images.min() >= -1 - 1e-5 and images.max() <= 1 + 1e-5
        labels += y.tolist()
        bad += batch_bad
        n_images += len(images)
    counts = info["counts"]["train"]
    assert n_images == len(info["good_train"]) == 11
    assert Counter(labels) == {bundle.classes.index(c): n for c, n in counts.items()}
    assert sorted(Path(p).name for p, _ in bad) == sorted(CORRUPT)
    assert all(isinstance(reason, str) and reason for _, reason in bad)
    reasons = {Path(p).name: r for p, r in bad}
    assert "truncated" in reasons["truncated.jpg"].lower()


def test_folder_bad_sample_direct(image_folder):
    root, _ = image_folder
    bundle = load_data(root, 40)
    index = [i for i, (p, _) in enumerate(bundle.train.samples) if p.endswith("empty.jpg")][0]
    item = bundle.train[index]
    assert isinstance(item, BadSample)
    assert item.path.endswith("empty.jpg") and item.shape == (3, 40, 40)
    images, labels, bad = collate_skip_bad([item, item])
    assert images.shape == (0, 3, 40, 40) and labels.shape == (0,)
    assert labels.dtype == torch.long
    assert [p for p, _ in bad] == [item.path, item.path]


def test_folder_eval_transform_is_deterministic_centre_crop(image_folder):
    root, _ = image_folder
    bundle = load_data(root, 64)
    a, label = bundle.val[1]
    b, _ = bundle.val[1]
    assert a.shape == (3, 64, 64) and label == 1
    assert torch.equal(a, b)
    # Reference: shorter side -> int(64 / 0.875) = 73, centre 64x64 crop, to [-1, 1].
    img = Image.open(bundle.val.samples[1][0]).convert("RGB")
    w, h = img.size
    size = (73, int(73 * h / w)) if w <= h else (int(73 * w / h), 73)
    ref = img.resize(size, Image.BILINEAR)
    rw, rh = ref.size
    left, top = int(round((rw - 64) / 2.0)), int(round((rh - 64) / 2.0))
    ref = np.asarray(ref.crop((left, top, left + 64, top + 64)), dtype=np.float32) / 255 * 2 - 1
    got = a.permute(1, 2, 0).numpy()
    assert np.abs(got - ref).mean() < 0.02


def test_folder_grayscale_becomes_rgb(image_folder):
    root, _ = image_folder
    bundle = load_data(root, 32)
    index = [i for i, (p, _) in enumerate(bundle.train.samples) if "scene_2" in p][0]
    image, label = bundle.train[index]
    assert image.shape == (3, 32, 32) and label == 2
    assert torch.allclose(image[0], image[1]) and torch.allclose(image[1], image[2])


def test_folder_randaugment_and_pickling(image_folder):
    root, _ = image_folder
    aug = Augment(randaugment="rand-m9-mstd0.5", color_jitter=0.0, hflip=False)
    bundle = load_data(root, 32, aug)
    clone = pickle.loads(pickle.dumps(bundle.train))
    torch.manual_seed(1)
    image, label = clone[0]
    assert image.shape == (3, 32, 32) and label == 0
    with pytest.raises(ValueError, match="RandAugment"):
        load_data(root, 32, Augment(randaugment="rand-q9"))
    with pytest.raises(ValueError, match="randaugment"):
        Augment(randaugment="autoaug")


def test_train_augmentation_varies(image_folder):
    root, _ = image_folder
    bundle = load_data(root, 32)
    torch.manual_seed(0)
    draws = [bundle.train[0][0] for _ in range(4)]
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


# --------------------------------------------------------------------------- errors


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="data folder not found") as info:
        load_data(missing, 32)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ValueError)  # callers catching ValueError see it too


def test_missing_val_folder(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "x.png")
    with pytest.raises(ValueError, match="val/") as info:
        load_data(tmp_path, 32)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "val").mkdir()
    (tmp_path / "train" / "a" / "x.png").unlink()
    (tmp_path / "train" / "a").rmdir()
    (tmp_path / "train").rmdir()
    with pytest.raises(ValueError, match="train/"):
        load_data(tmp_path, 32)


def test_empty_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match="no images found in") as info:
        load_data(tmp_path, 32)
    assert str(tmp_path / "train") in str(info.value)
    (tmp_path / "train" / "a").mkdir()
    (tmp_path / "train" / "a" / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="no images found in"):
        load_data(tmp_path, 32)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "x.png")
    with pytest.raises(ValueError, match="no images found in") as info:
        load_data(tmp_path, 32)
    assert str(tmp_path / "val") in str(info.value)
    (tmp_path / "val" / "zebra").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "zebra" / "x.png")
    with pytest.raises(ValueError, match="zebra"):
        load_data(tmp_path, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        load_data(None, 0)
    with pytest.raises(ValueError, match="crop_min_area"):
        Augment(crop_min_area=0.0)
    with pytest.raises(ValueError, match="eval_crop"):
        Augment(eval_crop=1.5)
    with pytest.raises(ValueError, match="mean"):
        Augment(mean=(0.5, 0.5))


def test_augment_json_round_trip():
    aug = Augment(crop_min_area=0.2, randaugment="rand-m9-mstd0.5", mean=(0.485, 0.456, 0.406))
    text = json.dumps(dataclasses.asdict(aug))
    back = Augment(**json.loads(text))
    assert back == aug and hash(back) == hash(aug)
    assert Augment().crop_min_area == 0.35 and Augment().eval_crop == 0.875


def test_collate_mixed_batch():
    good = (torch.ones(3, 4, 4), 2)
    bad = BadSample("/x/y.jpg", "OSError: broken", (3, 4, 4))
    images, labels, reported = collate_skip_bad([good, bad, good])
    assert images.shape == (2, 3, 4, 4)
    assert labels.tolist() == [2, 2] and labels.dtype == torch.long
    assert reported == [("/x/y.jpg", "OSError: broken")]


@pytest.mark.parametrize("decoder", ["simplejpeg", "pil"])
def test_draft_crop_matches_full_decode(tmp_path, monkeypatch, decoder):
    """DraftRandomResizedCrop draws the same box as torchvision's RandomResizedCrop and, while
    decoding the JPEG at reduced size, gives nearly the pixels of a full decode of that box
    resized by PIL; with simplejpeg and with PIL's draft (its fallback) alike."""
    import numpy as np
    import torchvision.transforms as TV
    from PIL import Image
    from skimage import data as skd

    from mobilenets.data import jpeg as D

    if decoder == "pil":
        monkeypatch.setattr(D, "simplejpeg", None)
    else:
        assert D.simplejpeg is not None  # a dependency: the fast path must be the one tested
    path = tmp_path / "big.jpg"
    Image.fromarray(skd.astronaut()).resize((1024, 768)).save(path, quality=92)
    crop = D.DraftRandomResizedCrop(128, (0.35, 1.0))

    def full_decode_resized(box):
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((128, 128), Image.BILINEAR, box=box), dtype=np.float32)

    diffs, steps = [], set()
    for seed in range(12):
        torch.manual_seed(seed)
        fast = crop(str(path))
        assert fast.dtype == torch.uint8 and fast.shape == (3, 128, 128)
        fast = fast.permute(1, 2, 0).numpy().astype(np.float32)
        torch.manual_seed(seed)
        box, step = crop.sample(1024, 768)
        torch.manual_seed(seed)
        top, left, h, w = TV.RandomResizedCrop.get_params(torch.empty(3, 768, 1024), [0.35, 1.0], [3 / 4, 4 / 3])
        # the box is torchvision's, its edges moved at most half a decoded pixel onto that grid
        assert max(abs(a - b) for a, b in zip(box, (left, top, left + w, top + h))) <= step / 2
        assert min(box[2] - box[0], box[3] - box[1]) >= 128 * step  # no up-sampling from a reduced decode
        steps.add(step)
        diffs.append(np.abs(fast - full_decode_resized(box)).mean())
        # a wrong box (the crop mirrored) is far off: the comparison can fail
        assert np.abs(fast[:, ::-1] - full_decode_resized(box)).mean() > 3 * diffs[-1]
    assert max(diffs) < 2.0, diffs  # mean abs difference in 0..255 levels (DCT-domain downscale); ~1 here
    assert steps & {2, 4, 8}  # the reduced decode was really used for some crops


def test_draft_crop_reads_cmyk_grey_and_png(tmp_path):
    """Files simplejpeg cannot take (CMYK JPEG) or that are not JPEGs go through PIL; grey
    images come out RGB; a file no decoder can read raises (and the dataset reports it)."""
    from PIL import Image
    from skimage import data as skd

    from mobilenets.data.datasets import DraftRandomResizedCrop

    rgb = Image.fromarray(skd.chelsea())
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    rgb.convert("L").save(tmp_path / "grey.jpg", quality=90)
    rgb.save(tmp_path / "photo.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8" + b"not a jpeg" * 10)
    crop = DraftRandomResizedCrop(64, (0.35, 1.0))
    for name in ("cmyk.jpg", "grey.jpg", "photo.png"):
        out = crop(str(tmp_path / name))
        assert out.shape == (3, 64, 64) and out.dtype == torch.uint8, name
        assert 20 < float(out.float().mean()) < 235, name
    with pytest.raises((OSError, ValueError)):  # PIL's UnidentifiedImageError is an OSError
        crop(str(tmp_path / "bad.jpg"))


def test_to_normalized_tensor_equals_torchvision():
    from skimage import data as skd
    from torchvision import transforms as T

    from mobilenets.data.datasets import ToNormalizedTensor

    image = Image.fromarray(skd.chelsea()[:97, :131])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ours = ToNormalizedTensor(mean, std)(image)
    ref = T.Compose([T.ToTensor(), T.Normalize(mean, std)])(image)
    assert ours.shape == ref.shape == (3, 97, 131) and ours.dtype == torch.float32
    assert float((ours - ref).abs().max()) < 1e-5
    grey = ToNormalizedTensor(mean, std)(image.convert("L"))  # converted to RGB, as ToTensor+Normalize cannot
    # the uint8 tensors the image-folder loader makes give the same numbers
    as_tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert float((ToNormalizedTensor(mean, std)(as_tensor) - ref).abs().max()) < 1e-5
    with pytest.raises(TypeError):
        ToNormalizedTensor(mean, std)(as_tensor.float())
    assert grey.shape == (3, 97, 131)


def test_every_catalogued_photo_loads_as_rgb():
    """The photo groups the benchmarks and tests draw on (installed by the dev extras) all load, and
    the split by photo holds every second / third one out, the same way each time."""
    from mobilenets.data.photos import (
        FACE_PHOTOS,
        IMAGENET_SAMPLES,
        MORE_PHOTOS,
        OBJECT_PHOTOS,
        PHOTOS,
        load_photo,
        split_photos,
    )

    for group in (PHOTOS, IMAGENET_SAMPLES, FACE_PHOTOS, OBJECT_PHOTOS, MORE_PHOTOS):
        for name in group:
            image = load_photo(name)
            assert image.mode == "RGB" and min(image.size) >= 100, name
    train, held = split_photos(2, list(OBJECT_PHOTOS))
    assert held == list(OBJECT_PHOTOS)[1::2] and sorted(train + held) == sorted(OBJECT_PHOTOS)
    assert split_photos()[1] == list(PHOTOS)[1::3]

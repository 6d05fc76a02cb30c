"""The CPU matrix: an int8 ONNX file must give the same outputs on every x86-64 CPU it runs on.

ONNX Runtime picks its int8 kernels by the CPU: on x86-64 without VNNI (AVX2 laptops, Skylake-SP)
its uint8 x int8 kernels add pairs of products in 16 bits (VPMADDUBSW) and saturate. QEMU's
user-mode emulator (Debian ``qemu-user``; ``make test`` installs it) runs this venv with another
CPU model, and ORT then picks that CPU's kernels. QEMU 7.2's TCG emulates AVX2 but not AVX-512, so
``-cpu Skylake-Server`` runs ORT's AVX2 kernels here (as on Haswell), not its AVX-512BW ones.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mobilenets.deploy.ort import (
    DEFAULT_FORM,
    FORMS,
    conv_weight_bits,
    depthwise_weights,
    quantize_qdq,
    session,
    weight_qmax,
    weight_range,
)

QEMU = shutil.which("qemu-x86_64")
needs_qemu = pytest.mark.skipif(
    QEMU is None or platform.machine().lower() not in ("x86_64", "amd64"),
    reason="qemu-x86_64 (Debian package qemu-user, installed by `make test`) is absent, or this is not an x86-64 "
           "machine: the emulated CPUs cannot be run")
EMULATED = ("Haswell", "Skylake-Server")

# Runs under the emulator: only numpy and onnxruntime, through the package's one session factory.
RUNNER = """
import sys
import numpy as np
from mobilenets.deploy.ort import session
x = np.load(sys.argv[1])
for path in sys.argv[3:]:
    np.save(path + "." + sys.argv[2] + ".npy", session(path, 1).run(None, {"input": x})[0])
"""


def saturating_conv(path, channels: int = 64) -> None:
    """A pointwise conv whose int8 form saturates uint8 x int8 pair sums: all its weights are
    equal (each output channel's maximum, int8 127 or 64 at 7 bits), its calibrated inputs reach
    the top of the uint8 range (255), so each pair of products is 2 * 255 * 127 > 32767."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((8, channels, 1, 1), np.float32)
    node = helper.make_node("Conv", ["input", "w"], ["y"], name="pointwise")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def outputs_per_cpu(tmp_path, files: list, x: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Each file's outputs on ``x``: natively, then under each emulated CPU."""
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "runner.py").write_text(RUNNER)
    out = {"native": [session(f, 1).run(None, {"input": x})[0] for f in files]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = {cpu: subprocess.Popen([QEMU, "-cpu", cpu, sys.executable, str(tmp_path / "runner.py"),
                                    str(tmp_path / "x.npy"), cpu, *map(str, files)],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cpu in EMULATED}  # both at once: start-up under the emulator is most of the time
    for cpu, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        out[cpu] = [np.load(f"{f}.{cpu}.npy") for f in files]
    return out


@needs_qemu
def test_default_int8_file_gives_the_same_outputs_on_every_cpu_and_the_old_form_does_not(tmp_path):
    saturating_conv(tmp_path / "f.onnx")
    ones = np.ones((1, 64, 4, 4), np.float32)
    calib = [ones[0], np.zeros_like(ones[0])]  # inputs 0..1: 1.0 is uint8 255
    default, old = tmp_path / "default.onnx", tmp_path / "u8s8.onnx"
    quantize_qdq(tmp_path / "f.onnx", default, calib, batch_size=1)
    quantize_qdq(tmp_path / "f.onnx", old, calib, batch_size=1, form="u8s8")  # the negative control
    out = outputs_per_cpu(tmp_path, [default, old], ones)
    # the float answer is 64 everywhere; the default file gives it (to its int8 output step) natively
    np.testing.assert_allclose(out["native"][0], 64.0, rtol=0.01)
    for cpu in EMULATED:
        np.testing.assert_array_equal(out[cpu][0], out["native"][0], err_msg=f"default int8 form under -cpu {cpu}")
    # the control proves the check can fail: today's 8-bit uint8 x int8 form is right natively only on
    # a CPU with VNNI (or without x86 SIMD), and under the emulated AVX2 CPUs its pair sums clip at
    # 32767 (the answer falls to about half)
    for cpu in EMULATED:
        assert out[cpu][1].max() < 0.6 * 64, f"u8s8 under -cpu {cpu} did not saturate: {out[cpu][1].max()}"


def test_default_form_keeps_8_bits_in_depthwise_weights_and_7_elsewhere(tmp_path):
    """The grid each conv's weights use, as written in the file, is the one conv_weight_bits names
    (what bias correction and learned rounding must round to), and no setting of this machine
    enters: the form is a constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dw, pw = rng.standard_normal((8, 1, 3, 3)).astype(np.float32), rng.standard_normal((16, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "dw"], ["a"], group=8, pads=[1, 1, 1, 1], name="depthwise"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Conv", ["b", "pw"], ["y"], name="pointwise")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 6, 6])],
                              [numpy_helper.from_array(dw, "dw"), numpy_helper.from_array(pw, "pw")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "g.onnx"))
    assert depthwise_weights(tmp_path / "g.onnx") == ["dw"]
    settings = quantize_qdq(tmp_path / "g.onnx", tmp_path / "q.onnx", list(rng.uniform(0, 1, (4, 8, 6, 6))), batch_size=1)
    assert settings["form"] == DEFAULT_FORM and "7 bits" in settings["weights"]
    ints = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer
            if i.data_type == TensorProto.INT8 and len(i.dims) == 4}
    peak = {name.split("_")[0]: int(np.abs(a.astype(int)).max()) for name, a in ints.items()}
    assert peak == {"dw": weight_range(conv_weight_bits(dw.shape, 8))[1], "pw": weight_range(conv_weight_bits(pw.shape))[1]}
    assert peak == {"dw": 127, "pw": 64}
    assert conv_weight_bits((32, 1, 3, 3), 32) == 8 and conv_weight_bits((32, 3, 3, 3), 1) == 7
    assert conv_weight_bits((64, 2, 3, 3), 32) == 7  # a grouped conv runs as matrix products
    assert weight_qmax((32, 1, 3, 3), 32) == 127 and weight_qmax((32, 3, 3, 3)) == 64


def test_weight_grid_names_the_files_grid():
    assert weight_range(8) == (-127, 127) and weight_range(7) == (-64, 64)
    assert set(FORMS) >= {"u8s8", "u8s8-7bit", "u8u8", "s8s8", DEFAULT_FORM}
    with pytest.raises(Exception, match="weight bits must be 7 or 8"):
        weight_range(6)


@needs_qemu
@pytest.mark.slow
def test_real_mobilenet_int8_onnx_is_the_same_under_haswell(real_mobilenet, tmp_path):
    """The real ImageNet MobileNetV1's default int8 ONNX (exported once, here, on whatever CPU runs
    the suite), run natively and under ``qemu-x86_64 -cpu Haswell`` on 48 crops of photos its
    calibration never saw: the same top-1 on every crop, and >= 90 % top-1 agreement with the float
    model under Haswell (where the old 8-bit form agreed on 33 %: docs/results/2026-12-05-int8-cpus.md).
    The agreement needs the default label-free remedy computed on the file's own weight grid
    (:func:`mobilenets.deploy.ort.conv_weight_bits`); on the 8-bit grid it was 70.8 %."""
    import torch
    from PIL import Image

    from mobilenets.data.augment import Augment
    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.data.transforms import eval_transform
    from mobilenets.deploy.export import export_model
    from mobilenets.weights.checkpoint import load_model

    train, held = split_photos()
    write_crops(tmp_path / "photos", 320, photos=train, seed=1)
    out = tmp_path / "real-int8.onnx"
    export_model(str(real_mobilenet), out, int8=True, calibration=tmp_path / "photos")  # the default method
    model = load_model(real_mobilenet).eval()
    pre = Preprocessing.from_dict(model.pretrained_cfg).at(model.config.resolution)
    tf = eval_transform(pre.resolution, Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct,
                                                interpolation=pre.interpolation))
    paths = write_crops(tmp_path / "check", 96, photos=held, seed=3)[::2]
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths]).numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([QEMU, "-cpu", "Haswell", sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "x.npy"),
                           "haswell", str(out)], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    haswell = np.load(f"{out}.haswell.npy")
    native = session(out, 1).run(None, {"input": x})[0]
    assert (haswell.argmax(1) == native.argmax(1)).all(), np.abs(haswell - native).max()
    agreement = float((haswell.argmax(1) == ref.argmax(1)).mean())
    assert agreement >= 0.90, agreement

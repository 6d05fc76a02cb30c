"""Pretrained weights end to end, from real weights served by a real HTTP server on 127.0.0.1
through the mirror override: the TF-slim archive in its official layout (checkpoint + frozen graph)
built from the real ImageNet MobileNetV1 of the ``nudity`` package, and the timm / Hugging Face
files in a pre-filled Hub cache (huggingface_hub's own layout, offline). Logits are compared with
the framework that published them, on real photos."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  (before TensorFlow: see mobilenets.utils.tf.import_tf)

sys.path.insert(0, os.path.dirname(__file__))
from pretrained_server import Site, serve  # noqa: E402
from slim_reference import slim_logits  # noqa: E402

from mobilenets import create_model  # noqa: E402
from mobilenets.cli.main import main  # noqa: E402
from mobilenets.data.photos import load_photo  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "china", "flower", "grace_hopper", "camera")
EGYPTIAN_CAT = 285
SLIM_PATH = "/models/mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224.tgz"
TOL = 1e-4  # relative, as every converter test


def slim_archive(pb: str, folder) -> bytes:
    """``mobilenet_v1_1.0_224.tgz`` as Google packs it: ``mobilenet_v1_1.0_224.ckpt.{index,data-...}``
    and ``mobilenet_v1_1.0_224_frozen.pb``; the checkpoint is written by TensorFlow's Saver from the
    frozen graph's MobilenetV1 constants (the variables they were frozen from, by name)."""
    from mobilenets.utils.tf import import_tf

    tf = import_tf()
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(open(pb, "rb").read())
    kept = ("weights", "depthwise_weights", "biases", "gamma", "beta", "moving_mean", "moving_variance")
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in graph.node
              if n.op == "Const" and n.name.startswith("MobilenetV1/") and n.name.rsplit("/", 1)[-1] in kept}
    prefix = str(folder / "mobilenet_v1_1.0_224.ckpt")
    with tf.Graph().as_default():
        variables = {name: tf.compat.v1.Variable(value, name=name) for name, value in consts.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(folder.glob("mobilenet_v1_1.0_224.ckpt.*")):
            tar.add(f, arcname=f"./{f.name}")
        tar.add(pb, arcname="./mobilenet_v1_1.0_224_frozen.pb")
    return buf.getvalue()


@pytest.fixture(scope="module")
def slim(real_mobilenet_pb, tmp_path_factory):
    """(server site, photos as NHWC inputs, TensorFlow's logits on them): built once."""
    from PIL import Image

    site = Site(files={SLIM_PATH: slim_archive(real_mobilenet_pb, tmp_path_factory.mktemp("ckpt"))})
    server, _ = serve(site)
    x = np.stack([(np.asarray(load_photo(n).resize((224, 224), Image.BILINEAR), dtype=np.float32) - 128) / 128
                  for n in PHOTOS])
    logits = slim_logits(real_mobilenet_pb, x)
    yield site, x, logits
    server.shutdown()


@pytest.fixture()
def cache(slim, monkeypatch, tmp_path):
    site = slim[0]
    monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MOBILENETS_MIRROR", site.url)
    for var in ("MOBILENETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    site.requests.clear()
    return tmp_path / "cache"


def logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()


def test_tf_slim_through_the_mirror_equals_tensorflow(slim, cache, monkeypatch):
    site, x, theirs = slim
    start = time.perf_counter()
    model = create_model("mobilenet_v1_1.0_224", pretrained="tf-slim")
    first = time.perf_counter() - start
    cfg = model.config
    assert (cfg.alpha, cfg.resolution, cfg.num_classes, cfg.padding, cfg.activation) == (1.0, 224, 1000, "tf_same",
                                                                                          "relu6")
    assert model.pretrained_cfg["source"]["registry"] == "tf-slim:mobilenet_v1_1.0_224"
    ours = logits(model, x)
    theirs = theirs[:, 1:]  # TF-slim's background class (index 0) is dropped
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < TOL
    assert ours[PHOTOS.index("chelsea")].argmax() == EGYPTIAN_CAT
    assert site.requests == [(SLIM_PATH, None)]
    # the second call reads only the cache: no request, no TensorFlow, the converted folder
    start = time.perf_counter()
    again = create_model("mobilenet_v1_1.0_224", pretrained="tf-slim")
    second = time.perf_counter() - start
    assert site.requests == [(SLIM_PATH, None)] and second < first
    assert np.array_equal(logits(again, x), ours)
    names = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    assert names == ["mobilenet_v1_1.0_224.tgz", "mobilenet_v1_1.0_224.tgz.sha256",
                     "mobilenets/tf-slim--mobilenet_v1_1.0_224/config.json",
                     "mobilenets/tf-slim--mobilenet_v1_1.0_224/model.safetensors"]
    # offline now works from the cache; num_classes gives a new classifier on the pretrained features
    monkeypatch.setenv("MOBILENETS_OFFLINE", "1")
    ten = create_model("mobilenet_v1_1.0_224", pretrained="tf-slim", num_classes=10)
    assert ten.config.num_classes == 10
    assert torch.equal(ten.state_dict()["stem.conv.weight"], model.state_dict()["stem.conv.weight"])


def test_cli_predict_pretrained_names_the_cat(slim, cache, tmp_path, capsys):
    site = slim[0]
    photo = tmp_path / "chelsea.jpg"
    load_photo("chelsea").save(photo, quality=95)
    assert main(["predict", "--model", "mobilenet_v1_1.0_224", "--pretrained", "tf-slim", str(photo), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    assert top["label"].lower().startswith("egyptian cat"), top
    assert len(site.requests) == 1
    # a tampered cached archive (its hash recorded) is refused when it is next converted, and removed
    folder = cache / "mobilenets" / "tf-slim--mobilenet_v1_1.0_224"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    archive = cache / "mobilenet_v1_1.0_224.tgz"
    archive.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    assert main(["predict", "--pretrained", "tf-slim", str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenet: error: sha256 mismatch for cached mobilenet_v1_1.0_224.tgz: expected ")
    assert "\n" not in err and not archive.exists() and not (cache / "mobilenets" / folder.name).exists()


def test_init_pretrained_spec_loads_the_cached_folder(slim, cache, tmp_path, capsys):
    from mobilenets.train.init import load_init

    model, pre, classes = load_init("pretrained:tf-slim:mobilenet_v1_1.0_224")
    assert model.config.num_classes == 1000 and classes[EGYPTIAN_CAT].lower().startswith("egyptian cat")
    assert pre.resolution == 224 and len(slim[0].requests) == 1
    # the CLI form: the model flags choose the weights (at 32 px, the 224-px ones: any size runs them)
    run = tmp_path / "run"
    assert main(["train", "--init", "pretrained:tf-slim", "--model", "mobilenet_v1_1.0_224", "--resolution", "32",
                 "--max-steps", "1", "--epochs", "1", "--output", str(run), "--no-progress", "--json"]) == 0
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["init"]["path"] == str(cache / "mobilenets" / "tf-slim--mobilenet_v1_1.0_224")
    assert len(slim[0].requests) == 1  # the folder load_init converted: no second download


def _hub_snapshot(root, repo: str):
    """huggingface_hub's cache layout: models--ORG--NAME/refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    return snap


def test_timm_and_hf_from_the_hub_cache_offline(monkeypatch, tmp_path, randomized_bn):
    import timm
    from safetensors.torch import save_file
    from transformers import MobileNetV1Config, MobileNetV1ForImageClassification

    hub = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub is never asked: only its cache
    monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "cache"))
    x = torch.from_numpy(np.stack([np.asarray(load_photo(n).resize((224, 224)), dtype=np.float32) / 127.5 - 1
                                   for n in PHOTOS[:4]])).permute(0, 3, 1, 2).contiguous()
    theirs = randomized_bn(timm.create_model("mobilenetv1_100", pretrained=False), 7)
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()},
              _hub_snapshot(hub, "timm/mobilenetv1_100.ra4_e3600_r224_in1k") / "model.safetensors")
    ours = create_model("mobilenet_v1_1.0_224", pretrained="timm")
    with torch.no_grad():
        ref, got = theirs(x).numpy(), ours(x).numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() < TOL
    assert ours.config.padding == "symmetric" and ours.config.bn_eps == 1e-5

    cfg = MobileNetV1Config(depth_multiplier=0.75, image_size=192, num_labels=1001)
    hf = randomized_bn(MobileNetV1ForImageClassification(cfg), 8)
    hf.save_pretrained(_hub_snapshot(hub, "google/mobilenet_v1_0.75_192"))
    ours = create_model("mobilenet_v1_0.75_192", pretrained="hf")
    x192 = torch.nn.functional.interpolate(x, size=192, mode="bilinear")
    with torch.no_grad():
        ref, got = hf(pixel_values=x192).logits.numpy(), ours(x192).numpy()
    # Hugging Face publishes the 1001-way head with its background class, and from_hf keeps it
    assert ours.config.num_classes == 1001 and np.abs(got - ref).max() / np.abs(ref).max() < TOL
    # the Keras entry has no file in any cache: offline names the command that fetches it
    with pytest.raises(Exception, match="mobilenet weights download keras:mobilenet_1_0_224_tf"):
        create_model("mobilenet_v1_1.0_224", pretrained="keras")


@pytest.mark.slow  # ~30 s: Keras builds, writes and reloads the model
def test_keras_h5_through_the_mirror_equals_keras(real_mobilenet, monkeypatch, tmp_path):
    """The official Keras file is a legacy-format weights-only .h5 that keras.applications.MobileNet
    loads with ``weights=``: written here by Keras's own legacy writer from the real ImageNet weights."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from mobilenets.utils.tf import import_tf
    from mobilenets.weights.checkpoint import load_model
    from mobilenets.weights.convert.keras import to_keras

    keras = import_tf("keras")
    to_keras(load_model(real_mobilenet), tmp_path / "m.keras")
    source = keras.models.load_model(tmp_path / "m.keras", compile=False)
    h5 = tmp_path / "mobilenet_1_0_224_tf.h5"
    with h5py.File(h5, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    site = Site(files={"/tensorflow/keras-applications/mobilenet/mobilenet_1_0_224_tf.h5": h5.read_bytes()})
    server, _ = serve(site)
    try:
        monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("MOBILENETS_MIRROR", site.url)
        monkeypatch.delenv("MOBILENETS_OFFLINE", raising=False)
        ours = create_model("mobilenet_v1_1.0_224", pretrained="keras")
    finally:
        server.shutdown()
    assert site.requests == [("/tensorflow/keras-applications/mobilenet/mobilenet_1_0_224_tf.h5", None)]
    # what Keras users get: keras.applications.MobileNet(weights=<the file>), logits before its softmax
    theirs_model = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=1.0, weights=str(h5))
    logit_model = keras.Model(theirs_model.input, theirs_model.layers[-2].output)
    x = np.stack([np.asarray(load_photo(n).resize((224, 224)), dtype=np.float32) / 127.5 - 1 for n in PHOTOS])
    theirs = logit_model.predict(x, verbose=0)
    got = logits(ours, x)
    assert ours.config.num_classes == 1000 and np.abs(got - theirs).max() / np.abs(theirs).max() < TOL
    assert got[PHOTOS.index("chelsea")].argmax() == EGYPTIAN_CAT


def test_timm_through_hf_endpoint_on_the_loopback_server(monkeypatch, tmp_path, randomized_bn):
    """huggingface_hub itself fetches from the server (HF_ENDPOINT: HEAD, then GET of
    /timm/<repo>/resolve/main/model.safetensors) into its own cache."""
    import timm
    from safetensors.torch import save

    from mobilenets.errors import MobileNetsError

    theirs = randomized_bn(timm.create_model("mobilenetv1_100", pretrained=False), 9)
    path = "/timm/mobilenetv1_100.ra4_e3600_r224_in1k/resolve/main/model.safetensors"
    site = Site(files={path: save({k: v.contiguous() for k, v in theirs.state_dict().items()})})
    server, _ = serve(site)
    try:
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
        monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "cache"))
        for var in ("MOBILENETS_OFFLINE", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        ours = create_model("mobilenet_v1_1.0_224", pretrained="timm")
        assert [p for p, _ in site.requests] == [f"HEAD {path}", path]
        x = torch.from_numpy(np.asarray(load_photo("coffee").resize((224, 224)), dtype=np.float32)[None] / 127.5 - 1)
        x = x.permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            ref, got = theirs(x).numpy(), ours(x).numpy()
        assert np.abs(got - ref).max() / np.abs(ref).max() < TOL
        # a repository the server does not have: one line
        with pytest.raises(MobileNetsError) as info:
            create_model("mobilenet_v1_0.75_192", pretrained="hf")
        assert str(info.value).startswith(f"cannot fetch google/mobilenet_v1_0.75_192/config.json from {site.url} "
                                          f"and it is not in the Hugging Face cache")
        assert "\n" not in str(info.value)
        assert not (tmp_path / "cache" / "mobilenets" / "hf--google--mobilenet_v1_0.75_192").exists()
    finally:
        server.shutdown()


def uint8_tflite(pb: str, x: np.ndarray) -> bytes:
    """A fully-integer TFLite file with uint8 input and softmax output, as TF-slim's ``_quant`` files
    are (input scale 1/128, zero point 128; output 1/256, 0), written by TensorFlow's converter from
    the real graph, calibrated on ``x``."""
    from mobilenets.utils.tf import import_tf

    tf = import_tf()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(open(pb, "rb").read())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.import_graph_def(graph_def, name=""), [])
    logits_fn = wrapped.prune(wrapped.graph.get_tensor_by_name("input:0"),
                              wrapped.graph.get_tensor_by_name("MobilenetV1/Predictions/Reshape:0"))

    @tf.function(input_signature=[tf.TensorSpec([1, 224, 224, 3], tf.float32)])
    def probabilities(image):
        return tf.nn.softmax(logits_fn(image))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([probabilities.get_concrete_function()],
                                                                probabilities)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    return converter.convert()


@pytest.mark.slow  # ~40 s: TensorFlow's int8 converter
def test_quant_entry_runs_in_predict_as_published(slim, cache, real_mobilenet_pb, tmp_path, capsys):
    """A ``_quant`` entry is cached as its uint8 TFLite file with a sidecar, and predict runs it (the
    runner quantizes the input and takes the log of the uint8 softmax)."""
    from mobilenets.deploy.runtime import load_runner

    site, x, theirs = slim
    data = uint8_tflite(real_mobilenet_pb, x)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("./mobilenet_v1_1.0_224_quant.tflite")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    quant_path = SLIM_PATH.replace(".tgz", "_quant.tgz")
    site.files[quant_path] = buf.getvalue()
    assert main(["weights", "download", "tf-slim:mobilenet_v1_1.0_224_quant", "--no-progress"]) == 0
    path = capsys.readouterr().out.split(": ", 1)[1].strip()
    runner = load_runner(path)
    ours = runner(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # float (pixel - 128) / 128, batch of 8
    assert ours.shape == (len(PHOTOS), 1001)
    # the publisher's way: uint8 pixels straight into TFLite, one image per call; the runner's
    # quantized input is those pixels, and exp of its output the file's probabilities
    from mobilenets.utils.tf import import_tf

    interp = import_tf().lite.Interpreter(model_path=path)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    probs = []
    for image in np.round(x * 128 + 128).astype(np.uint8):
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        probs.append(interp.get_tensor(out["index"])[0].astype(np.float32) / 256)
    probs = np.stack(probs)
    seen = probs > 0
    assert np.allclose(np.exp(ours)[seen], probs[seen], rtol=1e-6) and (ours.argmax(1) == probs.argmax(1)).all()
    assert (ours[~seen] < np.log(1 / 256)).all()
    photo = tmp_path / "chelsea.jpg"
    load_photo("chelsea").save(photo, quality=95)
    assert main(["predict", "--checkpoint", path, str(photo), "--json"]) == 0
    assert ours[PHOTOS.index("chelsea")].argmax() == EGYPTIAN_CAT + 1  # 1001 classes, background first
    # predict's centre crop differs from the test's resize: this int8 file (calibrated on 8 photos)
    # ranks "tiger cat" first there; its top-5 holds the Egyptian cat
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert any(t["label"].lower().startswith("egyptian cat") for t in top) and 0 < top[0]["probability"] <= 1, top
    assert site.requests[-1] == (quant_path, None)

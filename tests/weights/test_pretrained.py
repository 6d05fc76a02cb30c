"""The pretrained-weights registry and downloader, against a real HTTP server on 127.0.0.1
(``pretrained_server``): every failure is one line and leaves the cache clean. No TensorFlow here:
the end-to-end conversions from real weights are in test_pretrained_convert.py."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from pretrained_server import Site, serve  # noqa: E402

from mobilenets.cli.main import main  # noqa: E402
from mobilenets.errors import MobileNetsError  # noqa: E402
from mobilenets.weights.pretrained import download as dl  # noqa: E402
from mobilenets.weights.pretrained.registry import ENTRIES, choose, entry_cost, get_entry, list_entries  # noqa: E402

PATH = "/models/mobilenet_v1_2018_08_02/blob.tgz"
URL = "http://download.tensorflow.org" + PATH
BODY = bytes(range(256)) * 4096  # 1 MiB, not HTML


@pytest.fixture()
def site(monkeypatch, tmp_path):
    """A fresh server and cache for one test, the mirror pointing at the server."""
    s = Site(files={PATH: BODY})
    server, _ = serve(s)
    monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MOBILENETS_MIRROR", s.url)
    for var in ("MOBILENETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    yield s
    server.shutdown()


def cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_registry_has_every_official_file():
    assert len(list_entries("tf-slim", "classifier")) == 16 and len(list_entries("tf-slim", "tflite-int8")) == 16
    assert len(list_entries("keras")) == 32 and len(list_entries("hf")) == 2 and len(list_entries("timm")) == 3
    assert len(list_entries("tf-od")) == 6
    e = get_entry("tf-slim:mobilenet_v1_0.5_160")
    assert e.url == "http://download.tensorflow.org/models/mobilenet_v1_2018_08_02/mobilenet_v1_0.5_160.tgz"
    assert (e.top1, e.top5, e.classes) == (59.1, 81.9, 1001)
    k = get_entry("keras:mobilenet_7_5_128_tf_no_top")
    assert k.url == "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/mobilenet_7_5_128_tf_no_top.h5"
    assert (k.alpha, k.resolution, k.classes, k.include_top) == (0.75, 128, 0, False)
    assert get_entry("timm:mobilenetv1_100h.ra4_e3600_r224_in1k").refusal  # listed, refused
    assert all(e.sha256 is None for e in ENTRIES.values())  # no publisher publishes one
    with pytest.raises(MobileNetsError, match="did you mean"):
        get_entry("tf-slim:mobilenet_v1_0.5_16")


def test_our_cost_matches_the_published_mult_adds():
    # tensorflow/models mobilenet_v1.md prints Million MACs per model: at alpha 1 our analytical count
    # agrees; below it TF's table is a few percent under the paper's Table 6/7 (0.75-224: 317 there,
    # 325 in the paper), and ours follows the paper.
    published = {224: 569, 192: 418, 160: 291, 128: 186}
    for res, macs in published.items():
        ours, params = entry_cost(choose(f"mobilenet_v1_1.0_{res}", "tf-slim"))
        assert abs(ours / 1e6 - macs) <= 1, (res, ours)
        assert abs(params / 1e6 - 4.24) < 0.05  # conv + FC weights (TF's 4.24M counts BN and biases too)
    ours, _ = entry_cost(choose("mobilenet_v1_0.75_224", "tf-slim"))
    assert abs(ours / 1e6 - 325) < 1  # the paper's figure, not TF's 317


def test_best_available_rule():
    assert choose("mobilenet_v1_1.0_224").source == "timm"  # 75.4 > 70.9 (TF-slim, HF) > 70.4 (Keras)
    assert choose("mobilenet_v1_0.75_192").source == "tf-slim"  # tie with hf's copy: tf-slim first
    assert choose("mobilenet_v1_0.5_160", "keras").name == "keras:mobilenet_5_0_160_tf"  # with the classifier
    with pytest.raises(MobileNetsError, match="published by keras, tf-slim"):
        choose("mobilenet_v1_0.5_160", "hf")
    with pytest.raises(MobileNetsError, match="no pretrained weights for mobilenet_v1_0.5_300"):
        choose("mobilenet_v1_0.5_300")


def test_cache_root_and_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("MOBILENETS_HOME", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert dl.cache_root() == tmp_path / "th" / "hub" / "checkpoints"  # torch.hub's folder
    monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "own"))
    assert dl.cache_root() == tmp_path / "own"
    monkeypatch.setenv("MOBILENETS_MIRROR", "http://10.0.0.5:8080")
    assert dl.mirrored(URL) == "http://10.0.0.5:8080" + PATH  # scheme and host replaced, path kept
    monkeypatch.setenv("MOBILENETS_MIRROR", "https://mirror.corp/tf/")
    assert dl.mirrored(URL) == "https://mirror.corp/tf" + PATH


def test_download_records_the_hash_and_the_second_call_reads_the_cache(site, tmp_path):
    dest = dl.cache_root() / "blob.tgz"
    assert dl.download(URL, dest, progress=False).read_bytes() == BODY
    assert dl.hash_record(dest).read_text().split()[0] == hashlib.sha256(BODY).hexdigest()
    assert dl.download(URL, dest, progress=False) == dest
    assert len(site.requests) == 1  # the second call never asked the server
    assert cache_files(dl.cache_root()) == ["blob.tgz", "blob.tgz.sha256"]


def test_a_dropped_transfer_resumes_with_a_range_request(site):
    site.faults[PATH] = "drop-once"
    dest = dl.download(URL, dl.cache_root() / "blob.tgz", progress=False)
    assert dest.read_bytes() == BODY
    assert site.requests == [(PATH, None), (PATH, f"bytes={len(BODY) // 2}-")]


@pytest.mark.parametrize("fault, message", [
    ("drop", r"^the transfer of blob\.tgz from http://127\.0\.0\.1:\d+/models/.* broke off .*nothing was kept"),
    ("404", r"^not found on the server \(HTTP 404\): http://127\.0\.0\.1"),
    ("html", r"^the server sent an HTML page instead of blob\.tgz"),
])
def test_failures_are_one_line_and_leave_the_cache_clean(site, fault, message):
    site.faults[PATH] = fault
    with pytest.raises(dl.DownloadError, match=message) as info:
        dl.download(URL, dl.cache_root() / "blob.tgz", progress=False)
    assert "\n" not in str(info.value)
    assert cache_files(dl.cache_root()) == []


def test_a_tampered_file_is_refused_after_its_hash_was_recorded(site):
    dest = dl.cache_root() / "blob.tgz"
    dl.download(URL, dest, progress=False)
    good = hashlib.sha256(BODY).hexdigest()
    # the cached copy changed on disk: refused and removed before anything reads it
    dest.write_bytes(BODY[:-1] + b"x")
    bad = hashlib.sha256(dest.read_bytes()).hexdigest()
    with pytest.raises(dl.DownloadError, match=f"expected {good}, got {bad}"):
        dl.download(URL, dest, progress=False)
    assert not dest.exists()
    # the server's copy changed: the new download is refused against the recorded hash
    site.files[PATH] = BODY[:-1] + b"x"
    with pytest.raises(dl.DownloadError, match=f"^sha256 mismatch for blob.tgz from .*: expected {good}, got {bad}"):
        dl.download(URL, dest, progress=False)
    assert cache_files(dl.cache_root()) == ["blob.tgz.sha256"]  # the record stays; no file, no .part
    site.files[PATH] = BODY
    assert dl.download(URL, dest, progress=False).read_bytes() == BODY


@pytest.mark.parametrize("var", ["MOBILENETS_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_uses_only_the_cache(site, monkeypatch, var):
    dest = dl.cache_root() / "blob.tgz"
    monkeypatch.setenv(var, "1")
    with pytest.raises(dl.DownloadError, match="offline .* blob.tgz is not in the cache .*: mobilenet weights download X"):
        dl.download(URL, dest, progress=False, fetch_hint="mobilenet weights download X")
    assert site.requests == [] and cache_files(dl.cache_root()) == []
    monkeypatch.delenv(var)
    dl.download(URL, dest, progress=False)
    monkeypatch.setenv(var, "1")
    assert dl.download(URL, dest, progress=False) == dest and len(site.requests) == 1


def test_cli_weights_list_and_download_failures(site, capsys):
    assert main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(ENTRIES)
    row = next(r for r in rows if r["name"] == "tf-slim:mobilenet_v1_1.0_224")
    assert (row["top1"], row["top5"], row["cached"], row["licence"]) == (70.9, 89.9, False, "Apache-2.0")
    assert abs(row["mult_adds"] / 1e6 - 569) < 1 and row["doc"].endswith("mobilenet_v1.md")
    # not on the (mirror) server: one line, exit 2, nothing in the cache
    assert main(["weights", "download", "tf-slim:mobilenet_v1_0.25_128", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenet: error: not found on the server (HTTP 404): http://127.0.0.1:") and "\n" not in err
    assert err.endswith("/models/mobilenet_v1_2018_08_02/mobilenet_v1_0.25_128.tgz")
    assert cache_files(dl.cache_root()) == []
    assert main(["weights", "download", "timm:mobilenetv1_100h.ra4_e3600_r224_in1k"]) == 2
    assert "extra 1x1 head conv" in capsys.readouterr().err


def test_cli_pretrained_flags(site, capsys, tmp_path):
    from mobilenets.cli.common import init_spec_entry
    from mobilenets.cli.main import build_parser

    assert main(["predict", "--pretrained", "tf-slim", "--checkpoint", "x", "a.jpg"]) == 2
    assert "--pretrained and --checkpoint" in capsys.readouterr().err
    assert main(["predict", "a.jpg"]) == 2
    assert "give --checkpoint PATH, or --pretrained" in capsys.readouterr().err
    args = build_parser().parse_args(["finetune", "--init", "pretrained:keras", "--model", "mobilenet_v1_0.5_160",
                                      "--data", "d"])
    assert init_spec_entry(args, args.init).name == "keras:mobilenet_5_0_160_tf"
    assert init_spec_entry(args, "pretrained").name == "tf-slim:mobilenet_v1_0.5_160"  # best for 0.5/160
    assert init_spec_entry(args, "pretrained:hf:mobilenet_v1_0.75_192").name == "hf:google/mobilenet_v1_0.75_192"
    assert init_spec_entry(args, "pretrained:keras:mobilenet_2_5_128_tf").alpha == 0.25
    # offline, nothing cached: one line naming the command that fetches it
    os.environ["MOBILENETS_OFFLINE"] = "1"
    try:
        assert main(["export", "--pretrained", "keras", "--model", "mobilenet_v1_0.5_160",
                     "--output", str(tmp_path / "m.onnx")]) == 2
    finally:
        del os.environ["MOBILENETS_OFFLINE"]
    err = capsys.readouterr().err.strip()
    assert "offline" in err and err.endswith("mobilenet weights download keras:mobilenet_5_0_160_tf") and "\n" not in err
    assert site.requests == [] and not (tmp_path / "m.onnx").exists()


def test_detector_entries(site, capsys):
    assert main(["weights", "download", "tf-od:ssd_mobilenet_v1_fpn_shared_box_predictor_640x640_coco14_sync_2018_07_03"]) == 2
    assert "weight-shared box predictor" in capsys.readouterr().err
    assert main(["weights", "download", "tf-od:ssd_mobilenet_v1_coco_2018_01_28", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "HTTP 404" in err and err.endswith("/models/object_detection/ssd_mobilenet_v1_coco_2018_01_28.tar.gz")
    assert cache_files(dl.cache_root()) == []


def test_every_entry_url_is_cited_in_the_docs():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "weights.md").read_text()
    missing = [e.name for e in ENTRIES.values() if f"<{e.url}>" not in doc or f"`{e.name}`" not in doc]
    assert missing == []
    assert all(e.doc in doc for e in ENTRIES.values())  # where each URL and figure is published


def test_quant_entry_is_cached_as_its_tflite_file(site, capsys):
    import io
    import tarfile

    from mobilenets.weights.pretrained.fetch import pretrained_path

    payload = b"\x1c\x00\x00\x00TFL3" + bytes(100)  # stands for the int8 flatbuffer: only extraction is tested here
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("mobilenet_v1_0.25_128_quant.tflite", payload), ("mobilenet_v1_0.25_128_quant_info.txt",
                                                                              b"info")):
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    site.files["/models/mobilenet_v1_2018_08_02/mobilenet_v1_0.25_128_quant.tgz"] = buf.getvalue()
    assert main(["weights", "download", "tf-slim:mobilenet_v1_0.25_128_quant", "--no-progress"]) == 0
    path = pretrained_path("tf-slim:mobilenet_v1_0.25_128_quant", progress=False)
    assert capsys.readouterr().out == f"tf-slim:mobilenet_v1_0.25_128_quant: {path}\n"
    assert path.name == "mobilenet_v1_0.25_128_quant.tflite" and path.read_bytes() == payload
    assert pretrained_path("tf-slim:mobilenet_v1_0.25_128_quant", progress=False) == path
    assert len(site.requests) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]  # no staging left
    sidecar = json.loads((path.parent / (path.name + ".json")).read_text())
    assert sidecar["classes"][:2] == ["background", "tench"] and sidecar["preprocessing"]["input_size"] == [3, 128, 128]

"""Pretrained weights through a loopback mirror: the acceptance figures of ``--pretrained``.

A real HTTP server on 127.0.0.1 serves ``mobilenet_v1_1.0_224.tgz`` in the official TF-slim layout,
built from the real ImageNet MobileNetV1 of the ``nudity`` package (checkpoint + frozen graph; the
same builder and server as tests/weights/test_pretrained_convert.py). With
``MOBILENETS_MIRROR`` pointing at it and an empty cache (``MOBILENETS_HOME``), it measures:

1. ``mobilenet predict --model mobilenet_v1_1.0_224 --pretrained tf-slim chelsea.jpg``, run twice as
   a fresh process: the top label, the wall time of each call, and the server requests of each (the
   second must make none); then ``create_model(..., pretrained="tf-slim")`` in this process, offline
   (the cached folder only), timed;
2. the converted model's logits against TensorFlow running the real frozen graph on ``--crops``
   random crops of the real photos (:func:`mobilenets.data.photos.write_crops`): the max relative
   difference (max |ours - TF| / max |TF| per crop, the worst crop) and top-1 agreement.

    python benchmarks/pretrained_loopback.py --crops 128 --json out.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (before TensorFlow: see mobilenets.utils.tf.import_tf)
from PIL import Image

from _cli import ScriptParser, positive_int
from _models import real_mobilenet_graph
from mobilenets.bench.run import machine_info
from mobilenets.data.photos import load_photo, write_crops

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "weights"))
from pretrained_server import Site, serve  # noqa: E402
from slim_reference import slim_logits  # noqa: E402
from test_pretrained_convert import SLIM_PATH, slim_archive  # noqa: E402


def measure(args, pb: bytes, work: Path) -> dict:
    """The figures, with the mirror's files, the cache and the crops under ``work``."""
    site = Site(files={SLIM_PATH: slim_archive(pb, work)})
    server, _ = serve(site)
    env = {**os.environ, "MOBILENETS_HOME": str(work / "cache"), "MOBILENETS_MIRROR": site.url}
    env.pop("MOBILENETS_OFFLINE", None)
    photo = work / "chelsea.jpg"
    load_photo("chelsea").save(photo, quality=95)
    command = [sys.executable, "-m", "mobilenets", "predict", "--model", "mobilenet_v1_1.0_224", "--pretrained",
               "tf-slim", str(photo), "--json"]
    calls = []
    for _ in range(2):
        before = len(site.requests)
        start = time.perf_counter()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        calls.append({"seconds": round(time.perf_counter() - start, 2), "requests": len(site.requests) - before,
                      "top": json.loads(out)[0]["top"][0]})
    server.shutdown()

    os.environ.update(MOBILENETS_HOME=env["MOBILENETS_HOME"], MOBILENETS_OFFLINE="1")  # the cache only
    from mobilenets import create_model

    start = time.perf_counter()
    model = create_model("mobilenet_v1_1.0_224", pretrained="tf-slim")
    cached_seconds = time.perf_counter() - start  # in one process: the cached folder read, nothing else
    paths = write_crops(work / "crops", args.crops, seed=0)
    # TF-slim's preprocessing for the graph: RGB, 224 x 224 bilinear, (x - 128) / 128
    x = np.stack([(np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
                   - 128) / 128 for f in paths])
    theirs = slim_logits(pb, x)[:, 1:]  # background dropped, as the converted model does
    with torch.no_grad():
        ours = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    per_crop = np.abs(ours - theirs).max(1) / np.abs(theirs).max(1)
    figures = {"machine": machine_info(torch.get_num_threads()), "command": " ".join(["mobilenet", *command[3:-2], "chelsea.jpg"]),
               "calls": calls, "create_model_cached_seconds": round(cached_seconds, 3), "crops": len(paths), "max_relative_diff": float(per_crop.max()),
               "median_relative_diff": float(np.median(per_crop)),
               "top1_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean())}
    return figures


def main() -> None:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crops", type=positive_int, default=128, help="real-photo crops compared with TF (default 128)")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = p.parse_args()
    pb = real_mobilenet_graph()
    with tempfile.TemporaryDirectory(prefix="pretrained-loopback-") as work:  # nothing left behind
        figures = measure(args, pb, Path(work))
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

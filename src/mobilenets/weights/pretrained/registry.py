"""The registry of official pretrained MobileNetV1 files: every entry with its URL, the publisher's
published accuracy, its preprocessing, classes and licence (torch-free: ``mobilenet weights list``
and ``--help`` read it without loading torch).

Sources, each cited in ``docs/weights.md``:

* ``tf-slim``: tensorflow/models ``research/slim/nets/mobilenet_v1.md`` (the 2018_08_02 release):
  16 float archives and 16 ``_quant`` archives (int8 TFLite + fake-quant graph), top-1/top-5 as
  published there (the ``_quant`` figures are the TFLite model's).
* ``keras``: keras ``keras/src/applications/mobilenet.py`` (``BASE_WEIGHT_PATH`` and its file
  names): 16 with the classifier, 16 without (``_no_top``). Keras publishes one accuracy, for
  α 1.0 at 224 px (keras.io/api/applications: 70.4 / 89.5).
* ``timm``: ``timm/mobilenetv1_100.ra4_e3600_r224_in1k`` and ``..._125...`` on the Hugging Face
  Hub (pytorch-image-models README, "MobileNet-V1 and EfficientNet-B0 baseline challenges":
  75.382 / 92.312 at 224 px for ``_100``; none published for ``_125``). ``mobilenetv1_100h`` is
  listed and refused (its extra head conv has no MobileNet counterpart).
* ``hf``: ``google/mobilenet_v1_1.0_224`` and ``google/mobilenet_v1_0.75_192`` (converted by
  Hugging Face from the TF-slim checkpoints: the accuracy is TF-slim's).
* ``tf-od``: the TF1 detection zoo (``research/object_detection/g3doc/tf1_detection_zoo.md``):
  SSD-MobileNetV1 detectors with their COCO mAP, converted by
  ``mobilenets.tasks.detect.convert.convert_detector``; those our SSD cannot express carry a
  ``refusal``.
* ``face-api``: the SSD-MobileNetV1 face detector of the npm package ``@vladmandic/face-api``
  (MIT; 512 px, one class, "face"), fetched as the package's npm tarball (``registry.npmjs.org``)
  and converted from its TF.js weights (``package/model/ssd_mobilenetv1_model-weights_manifest.json``
  and its ``.bin``); no accuracy is published for it. ``mobilenet faces crop --detector
  mobilenet-ssd`` uses it.

No publisher lists a sha256 for these files, so none is pinned: the hash is recorded in the cache
on the first download and checked ever after (:mod:`.download`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.models.registry import model_name, width_text

SOURCES = ("tf-slim", "keras", "timm", "hf")  # what --pretrained SOURCE names (classifiers)
KINDS = ("classifier", "tflite-int8", "detector")

TF_SLIM_BASE = "http://download.tensorflow.org/models/mobilenet_v1_2018_08_02/"
TF_SLIM_DOC = "https://github.com/tensorflow/models/blob/master/research/slim/nets/mobilenet_v1.md"
KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
KERAS_DOC = "https://github.com/keras-team/keras/blob/master/keras/src/applications/mobilenet.py"
KERAS_ACCURACY_DOC = "https://keras.io/api/applications/"
TIMM_DOC = "https://github.com/huggingface/pytorch-image-models/blob/main/README.md"
HF_BASE = "https://huggingface.co/"
TF_OD_BASE = "http://download.tensorflow.org/models/object_detection/"
FACE_API_URL = "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz"
FACE_API_DOC = "https://www.npmjs.com/package/@vladmandic/face-api"
FACE_API_MANIFEST = "package/model/ssd_mobilenetv1_model-weights_manifest.json"  # in the npm tarball
FACE_API_ENTRY = "face-api:ssd_mobilenetv1_model"
TF_OD_DOC = ("https://github.com/tensorflow/models/blob/master/research/object_detection/g3doc/"
             "tf1_detection_zoo.md")

# Preprocessing, in words (what the converters record in the model folder, in timm's keys).
INCEPTION = "RGB in [-1, 1] ((x - 127.5) / 127.5), bilinear resize, centre crop 0.875"
TIMM_PRE = "RGB, ImageNet mean/std, bicubic resize, centre crop 0.95"
TF_OD_PRE = "RGB in [-1, 1], resized to 300 x 300 (the pipeline.config's fixed_shape_resizer)"

# tensorflow/models mobilenet_v1.md, 2018_08_02: (alpha, resolution) -> (float top-1, top-5, quant top-1, top-5)
TF_SLIM_ACCURACY = {
    (1.0, 224): (70.9, 89.9, 70.1, 88.9), (1.0, 192): (70.0, 89.2, 69.2, 88.3),
    (1.0, 160): (68.0, 87.7, 67.2, 86.7), (1.0, 128): (65.2, 85.8, 63.4, 84.2),
    (0.75, 224): (68.4, 88.2, 66.8, 87.0), (0.75, 192): (67.2, 87.3, 66.1, 86.4),
    (0.75, 160): (65.3, 86.0, 62.3, 83.8), (0.75, 128): (62.1, 83.9, 55.8, 78.8),
    (0.5, 224): (63.3, 84.9, 60.7, 83.2), (0.5, 192): (61.7, 83.6, 60.0, 82.2),
    (0.5, 160): (59.1, 81.9, 57.7, 80.4), (0.5, 128): (56.3, 79.4, 54.5, 77.7),
    (0.25, 224): (49.8, 74.2, 48.0, 72.8), (0.25, 192): (47.7, 72.3, 46.0, 71.2),
    (0.25, 160): (45.5, 70.3, 43.4, 68.5), (0.25, 128): (41.5, 66.3, 39.5, 64.4),
}
KERAS_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}  # keras mobilenet.py's alpha_text
ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)


@dataclass(frozen=True)
class Entry:
    """One official file (or Hub repository) and what its publisher says about it."""

    name: str  # "SOURCE:FILE-NAME", unique; what `mobilenet weights download` and `--init pretrained:` take
    source: str  # tf-slim, keras, timm, hf or tf-od
    kind: str  # classifier (a model folder), tflite-int8 (a runnable int8 .tflite) or detector
    url: str  # the publisher's URL (a Hub repository's page for timm/hf)
    doc: str  # where the URL and the accuracy are published
    licence: str
    alpha: float
    resolution: int
    classes: int  # outputs of the published head (1001: TF's background + ImageNet; 0: no classifier)
    preprocessing: str
    top1: float | None = None  # published accuracy, % (COCO mAP for a detector, in top1)
    top5: float | None = None
    metric: str = "ImageNet top-1/top-5"
    repo: str | None = None  # Hugging Face Hub repository (timm, hf)
    files: tuple[str, ...] = ()  # the Hub files to fetch, first found wins (timm, hf); in an archive: what to convert
    include_top: bool = True  # keras: the classifier is in the file
    sha256: str | None = None  # pinned only where the publisher publishes it (none do today)
    refusal: str | None = None  # why this entry cannot be converted (listed, refused in one line)

    @property
    def model(self) -> str:
        """Our name for its architecture's size: ``mobilenet_v1_<alpha>_<resolution>``."""
        return model_name(self.alpha, self.resolution)

    @property
    def filename(self) -> str:
        """The downloaded file's name (the URL's last part)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"model": self.model}


def _tf_slim() -> list[Entry]:
    out = []
    for alpha in ALPHAS:
        for res in RESOLUTIONS:
            stem = f"mobilenet_v1_{width_text(alpha)}_{res}"
            t1, t5, q1, q5 = TF_SLIM_ACCURACY[(alpha, res)]
            out.append(Entry(f"tf-slim:{stem}", "tf-slim", "classifier", f"{TF_SLIM_BASE}{stem}.tgz", TF_SLIM_DOC,
                             "Apache-2.0", alpha, res, 1001, INCEPTION, t1, t5))
            out.append(Entry(f"tf-slim:{stem}_quant", "tf-slim", "tflite-int8", f"{TF_SLIM_BASE}{stem}_quant.tgz",
                             TF_SLIM_DOC, "Apache-2.0", alpha, res, 1001, INCEPTION + " (uint8 input 0..255)", q1, q5))
    return out


def _keras() -> list[Entry]:
    out = []
    for alpha in ALPHAS:
        for res in RESOLUTIONS:
            text = KERAS_ALPHA_TEXT[alpha]
            published = (70.4, 89.5) if (alpha, res) == (1.0, 224) else (None, None)
            for top in (True, False):
                file = f"mobilenet_{text}_{res}_tf{'' if top else '_no_top'}.h5"
                doc = KERAS_ACCURACY_DOC if published[0] is not None else KERAS_DOC
                out.append(Entry(f"keras:{file[:-3]}", "keras", "classifier", KERAS_BASE + file, doc, "Apache-2.0",
                                 alpha, res, 1000 if top else 0, INCEPTION, *published, include_top=top))
    return out


def _timm() -> list[Entry]:
    tag = "ra4_e3600_r224_in1k"
    head = ("timm's mobilenetv1_100h has an extra 1x1 head conv before the classifier, which MobileNet "
            "does not have; use timm:mobilenetv1_100.ra4_e3600_r224_in1k")
    rows = (("mobilenetv1_100", 1.0, 75.382, 92.312, None), ("mobilenetv1_125", 1.25, None, None, None),
            ("mobilenetv1_100h", 1.0, 75.662, 92.504, head))
    return [Entry(f"timm:{arch}.{tag}", "timm", "classifier", f"{HF_BASE}timm/{arch}.{tag}", TIMM_DOC, "Apache-2.0",
                  alpha, 224, 1000, TIMM_PRE, t1, t5, repo=f"timm/{arch}.{tag}", files=("model.safetensors",),
                  refusal=refusal)
            for arch, alpha, t1, t5, refusal in rows]


def _hf() -> list[Entry]:
    out = []
    for alpha, res in ((1.0, 224), (0.75, 192)):
        repo = f"google/mobilenet_v1_{width_text(alpha)}_{res}"
        t1, t5, _, _ = TF_SLIM_ACCURACY[(alpha, res)]
        out.append(Entry(f"hf:{repo}", "hf", "classifier", HF_BASE + repo, TF_SLIM_DOC, "other (see the model card)",
                         alpha, res, 1001, INCEPTION, t1, t5, repo=repo,
                         files=("config.json", "model.safetensors", "pytorch_model.bin")))
    return out


def _tf_od() -> list[Entry]:
    shared = ("a weight-shared box predictor across feature maps ({what}), which our SSD's per-map heads "
              "cannot express")
    rows = (("ssd_mobilenet_v1_coco_2018_01_28", 1.0, 300, 21, None),
            ("ssd_mobilenet_v1_0.75_depth_300x300_coco14_sync_2018_07_03", 0.75, 300, 18, None),
            ("ssd_mobilenet_v1_quantized_300x300_coco14_sync_2018_07_18", 1.0, 300, 18, None),
            ("ssd_mobilenet_v1_0.75_depth_quantized_300x300_coco14_sync_2018_07_18", 0.75, 300, 16, None),
            ("ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync_2018_07_03", 1.0, 300, 20,
             shared.format(what="pooling pyramid network")),
            ("ssd_mobilenet_v1_fpn_shared_box_predictor_640x640_coco14_sync_2018_07_03", 1.0, 640, 32,
             shared.format(what="FPN top-down layers, 640 px")))
    return [Entry(f"tf-od:{stem}", "tf-od", "detector", f"{TF_OD_BASE}{stem}.tar.gz", TF_OD_DOC, "Apache-2.0",
                  alpha, res, 91, TF_OD_PRE.replace("300 x 300", f"{res} x {res}"), float(mapv), None,
                  metric="COCO mAP", refusal=refusal)
            for stem, alpha, res, mapv, refusal in rows]


def _face_api() -> list[Entry]:
    pre = ("RGB 0..255 zero-padded at the bottom/right to a square, TF's legacy bilinear resize to 512 x 512, "
           "then [-1, 1]")
    return [Entry(FACE_API_ENTRY, "face-api", "detector", FACE_API_URL, FACE_API_DOC, "MIT", 1.0, 512, 1, pre,
                  metric="none published", files=(FACE_API_MANIFEST,))]


ENTRIES: dict[str, Entry] = {e.name: e for e in (*_tf_slim(), *_keras(), *_timm(), *_hf(), *_tf_od(), *_face_api())}


def list_entries(source: str | None = None, kind: str | None = None) -> list[Entry]:
    """Every registry entry (optionally of one ``source`` / ``kind``), in registry order."""
    return [e for e in ENTRIES.values() if (source is None or e.source == source) and (kind is None or e.kind == kind)]


def get_entry(name: str) -> Entry:
    """The entry named ``name`` (``SOURCE:FILE-NAME``, as ``mobilenet weights list`` prints it)."""
    if name in ENTRIES:
        return ENTRIES[name]
    close = difflib.get_close_matches(name, list(ENTRIES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see `mobilenet weights list`"
    raise MobileNetsError(f"unknown pretrained weights {name!r}{hint}")


_MODEL = re.compile(r"^mobilenet_v1_(\d+(?:\.\d+)?)_(\d+)$")


def parse_model(name: str) -> tuple[float, int]:
    """(alpha, resolution) of ``mobilenet_v1_<alpha>_<resolution>`` (any alpha, e.g. 1.25)."""
    m = _MODEL.match(name)
    if m is None:
        raise MobileNetsError(f"pretrained weights are named by mobilenet_v1_<alpha>_<resolution>, e.g. "
                              f"mobilenet_v1_0.5_160, or by an entry of `mobilenet weights list`; got {name!r}")
    return float(m.group(1)), int(m.group(2))


def choose(model: str, source: str | bool | None = True) -> Entry:
    """The classifier entry for the architecture ``model`` names (``mobilenet_v1_0.5_160``) from
    ``source`` (one of :data:`SOURCES`), or, for ``True``, the best available: the highest
    published top-1 among the float classifiers with a classifier for that α and resolution that
    we can convert, ties (and entries without a published figure) going to the first source in
    :data:`SOURCES` order (tf-slim, the original release). A name of :data:`ENTRIES` is taken as is."""
    if ":" in model:
        return get_entry(model)
    alpha, res = parse_model(model)
    if source is not True and source not in SOURCES:
        raise MobileNetsError(f"unknown pretrained source {source!r}; choose one of {', '.join(SOURCES)} "
                              f"(or True: the best available)")
    found = [e for e in ENTRIES.values() if e.kind == "classifier" and e.classes and e.refusal is None
             and e.alpha == alpha and e.resolution == res and (source is True or e.source == source)]
    if not found:
        have = sorted({e.source for e in ENTRIES.values() if e.kind == "classifier" and e.alpha == alpha
                       and e.resolution == res})
        where = f"; {model} is published by {', '.join(have)}" if have else \
            "; see `mobilenet weights list` for the published sizes"
        raise MobileNetsError(f"no {'' if source is True else source + ' '}pretrained weights for {model}{where}")
    return max(found, key=lambda e: (e.top1 or 0.0, -SOURCES.index(e.source)))


def entry_cost(entry: Entry) -> tuple[int, int]:
    """(mult-adds, params) of the entry's network, from our own analytical count (torch-free), with
    the publisher's channel rule and classifier width."""
    from mobilenets.cost.count import analytical_cost
    from mobilenets.models.config import MobileNetConfig

    divisor, minimum = (8, 8) if entry.source == "timm" else (1, 1 if entry.source == "keras" else 8)
    classes = entry.classes if entry.kind != "detector" else 0  # a detector's backbone only
    cfg = MobileNetConfig(alpha=entry.alpha, resolution=entry.resolution, num_classes=classes,
                          min_channels=minimum, channel_divisor=divisor)
    report = analytical_cost(cfg)
    return report.mult_adds, report.params


__all__ = ["ENTRIES", "FACE_API_ENTRY", "Entry", "KINDS", "SOURCES", "choose", "entry_cost", "get_entry", "list_entries", "parse_model"]

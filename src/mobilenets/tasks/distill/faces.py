"""Face crops for face distillation: a folder of photos becomes a folder of aligned face chips.

A face detector finds the faces: dlib's HOG detector (``detector="dlib"``), or our own MobileNet
SSD (``"mobilenet-ssd"``: face-api's SSD-MobileNetV1 face detector converted by ``mobilenet detect
convert``, or any detector folder whose classes include ``face``). dlib's 5-point landmark model
(the file shipped in ``face_recognition_models``) then aligns each face the way dlib's face
embedding expects (``dlib.get_face_chip``: eyes level, fixed scale, 150 px with 25 % padding by default).

Where ``mobilenet-ssd`` comes from: the folder :data:`FACE_SSD_ENV` names, else the weights
registry's face-api entry (``face-api:ssd_mobilenetv1_model``: face-api's npm tarball, fetched,
converted and cached on first use like every registry entry, see ``docs/weights.md``; offline without
it, one line naming ``mobilenet weights download face-api:ssd_mobilenetv1_model``); ``--detector DIR``
names a converted folder directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mobilenets.errors import MobileNetsError, arg
from mobilenets.tasks.distill.data import list_images, read_rgb
from mobilenets.tasks.distill.teachers import package_file

DETECTORS = ("dlib", "mobilenet-ssd")
FACE_SSD_ENV = "MOBILENETS_FACE_SSD"  # a converted face SSD folder for --detector mobilenet-ssd
FACE_SCORE = 0.5  # face-api's SsdMobilenetv1Options minConfidence default


def face_ssd_folder(detector: str) -> Path:
    """The converted face SSD ``detector`` names ("mobilenet-ssd" or a folder), or one line saying how to get it."""
    from mobilenets.errors import DataNotFoundError

    if detector != "mobilenet-ssd":
        folder = Path(detector)
        if not folder.is_dir():
            raise DataNotFoundError(f"--detector {detector}: not dlib, mobilenet-ssd or a detector folder")
        return folder
    env = os.environ.get(FACE_SSD_ENV)
    if not env:  # the registry's entry: fetched, converted and cached on first use
        from mobilenets.weights.pretrained.detectors import detector_path
        from mobilenets.weights.pretrained.registry import FACE_API_ENTRY

        return detector_path(FACE_API_ENTRY)
    folder = Path(env)
    if not (folder / "model.safetensors").is_file():
        raise DataNotFoundError(
            f"--detector mobilenet-ssd: no converted face SSD in {folder} ({FACE_SSD_ENV}); convert face-api's with "
            f"`mobilenet detect convert .../@vladmandic/face-api/model/ssd_mobilenetv1_model-weights_manifest.json "
            f"--output {folder}`, or unset {FACE_SSD_ENV} to fetch it from the weights registry")
    return folder


class FaceAligner:
    """A face detector (dlib's, or a MobileNet SSD folder) + dlib's 5-point alignment; ``chips(image)``
    gives one aligned crop per face, largest face first."""

    def __init__(self, size: int = 150, padding: float = 0.25, upsample: int = 1, detector: str = "dlib",
                 score: float = FACE_SCORE) -> None:
        import dlib

        self.size, self.padding, self.upsample, self.score = int(size), float(padding), int(upsample), float(score)
        self.ssd = None
        if detector == "dlib":
            self.detector = dlib.get_frontal_face_detector()
        else:
            from mobilenets.errors import MobileNetsError
            from mobilenets.tasks.detect.run import load_detector

            self.ssd = load_detector(face_ssd_folder(detector))
            if "face" not in self.ssd[1]["classes"]:
                raise MobileNetsError(f"--detector {detector}: its classes ({', '.join(self.ssd[1]['classes'])}) "
                                      "have no 'face'")
        self.landmarks = dlib.shape_predictor(str(package_file("face_recognition_models", "models",
                                                                "shape_predictor_5_face_landmarks.dat")))

    def boxes(self, image: Image.Image, pixels: np.ndarray) -> list:
        """The faces as dlib rectangles."""
        import dlib

        if self.ssd is None:
            return list(self.detector(pixels, self.upsample))
        from mobilenets.tasks.detect.predict import detect_images

        model, meta = self.ssd
        found = detect_images(model, meta, [image], self.score)[0]
        return [dlib.rectangle(*(int(round(v)) for v in d["box"])) for d in found if d["label"] == "face"]

    def chips(self, image: Image.Image) -> list[Image.Image]:
        import dlib

        image = image.convert("RGB")
        pixels = np.ascontiguousarray(np.asarray(image))
        faces = sorted(self.boxes(image, pixels), key=lambda r: -r.area())
        return [Image.fromarray(dlib.get_face_chip(pixels, self.landmarks(pixels, f), size=self.size,
                                                   padding=self.padding)) for f in faces]


def crop_faces(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *, size: int = 150, padding: float = 0.25,
               upsample: int = 1, quality: int = 95, progress: bool = True, detector: str = "dlib",
               score: float = FACE_SCORE) -> dict[str, Any]:
    """Write every face found in the photos of ``input_dir`` (flat or nested) to ``output_dir`` as
    ``<relative path without extension>_<k>.jpg`` (same sub-folders); unreadable photos are listed,
    not fatal. Returns counts and the unreadable files with their reasons. ``detector``: "dlib",
    "mobilenet-ssd" or a detector folder (see the module docstring); ``score``: the SSD's lowest face
    score kept (``upsample`` is dlib's)."""
    if detector not in DETECTORS and not Path(detector).is_dir():
        raise MobileNetsError(f"--detector {detector}: choose dlib, mobilenet-ssd or a detector folder")
    if not 0 < score < 1:
        raise MobileNetsError(f"--score must be in (0, 1), got {score!r}")
    paths = list_images(input_dir)
    out = Path(output_dir)
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # before the detector loads: nothing is written
        raise MobileNetsError(f"cannot write the crops to {out}: {blocker} is a file, not a folder")
    if out.resolve() == Path(input_dir).resolve():
        raise MobileNetsError(f"{arg('output_dir', flag='--output')} {out} is the photo folder itself: give another "
                              f"folder for the crops")
    aligner = FaceAligner(size, padding, upsample, detector, score)
    written, without, unreadable = 0, 0, []
    items: Any = paths
    if progress:
        from tqdm import tqdm

        items = tqdm(paths, desc="faces", dynamic_ncols=True, leave=False)
    for rel in items:
        try:
            image = read_rgb(os.path.join(input_dir, rel))
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
            unreadable.append((rel, f"{type(exc).__name__}: {exc}"))
            continue
        chips = aligner.chips(image)
        without += not chips
        for k, chip in enumerate(chips):
            target = out / f"{os.path.splitext(rel)[0]}_{k}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            chip.save(target, quality=quality)
            written += 1
    return {"photos": len(paths), "faces": written, "photos_without_faces": without,
            "unreadable": unreadable, "output": str(out), "detector": detector}


__all__ = ["DETECTORS", "FACE_SCORE", "FACE_SSD_ENV", "FaceAligner", "crop_faces", "face_ssd_folder"]

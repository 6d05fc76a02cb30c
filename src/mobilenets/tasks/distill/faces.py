"""Face crops for face distillation: a folder of photos becomes a folder of aligned face chips.

dlib's HOG face detector finds the faces and its 5-point landmark model (the file shipped in
``face_recognition_models``) aligns them the way dlib's face embedding expects
(``dlib.get_face_chip``: eyes level, fixed scale, 150 px with 25 % padding by default).
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


class FaceAligner:
    """dlib's detector + 5-point alignment; ``chips(image)`` gives one aligned crop per face,
    largest face first."""

    def __init__(self, size: int = 150, padding: float = 0.25, upsample: int = 1) -> None:
        import dlib

        self.size, self.padding, self.upsample = int(size), float(padding), int(upsample)
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(package_file("face_recognition_models", "models",
                                                                "shape_predictor_5_face_landmarks.dat")))

    def chips(self, image: Image.Image) -> list[Image.Image]:
        import dlib

        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        faces = sorted(self.detector(pixels, self.upsample), key=lambda r: -r.area())
        return [Image.fromarray(dlib.get_face_chip(pixels, self.landmarks(pixels, f), size=self.size,
                                                   padding=self.padding)) for f in faces]


def crop_faces(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *, size: int = 150, padding: float = 0.25,
               upsample: int = 1, quality: int = 95, progress: bool = True) -> dict[str, Any]:
    """Write every face found in the photos of ``input_dir`` (flat or nested) to ``output_dir`` as
    ``<relative path without extension>_<k>.jpg`` (same sub-folders); unreadable photos are listed,
    not fatal. Returns counts and the unreadable files with their reasons."""
    paths = list_images(input_dir)
    out = Path(output_dir)
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # before dlib loads: nothing is written
        raise MobileNetsError(f"cannot write the crops to {out}: {blocker} is a file, not a folder")
    if out.resolve() == Path(input_dir).resolve():
        raise MobileNetsError(f"{arg('output_dir', flag='--output')} {out} is the photo folder itself: give another "
                              f"folder for the crops")
    aligner = FaceAligner(size, padding, upsample)
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
            "unreadable": unreadable, "output": str(out)}


__all__ = ["FaceAligner", "crop_faces"]

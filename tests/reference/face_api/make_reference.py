"""Regenerate face_api_reference.json: face-api's own outputs for the five photos with faces.

    cd tests/reference/face_api && npm ci && python make_reference.py

Pillow decodes each photo (as ``mobilenet detect predict`` does) and writes its RGB pixels as a
binary PPM for the Node script (reference.mjs), so both sides start from the same pixels.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from mobilenets.data.photos import load_photo

PHOTOS = ("astronaut", "grace_hopper", "insightface_t1", "ultralytics_zidane", "ultralytics_bus")
HERE = Path(__file__).resolve().parent


def main(out: str = str(HERE / "face_api_reference.json")) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = []
        for name in PHOTOS:
            path = Path(tmp) / f"{name}.ppm"
            load_photo(name).save(path)
            args.append(f"{name}={path}")
        subprocess.run(["node", str(HERE / "reference.mjs"), out, *args], check=True, cwd=HERE)


if __name__ == "__main__":
    main(*sys.argv[1:])

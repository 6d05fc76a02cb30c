"""Great-circle distances against geopy, the threshold metrics against hand computation, photo
CSVs with bad rows, and `mobilenet geo eval --json` on fixed files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from geopy.distance import great_circle

from mobilenets.cli.main import main
from mobilenets.errors import MobileNetsError
from mobilenets.tasks.geo.data import read_photos
from mobilenets.tasks.geo.evaluate import TABLE11, distance_metrics, eval_files, haversine_km, table11_text

KM_PER_DEGREE = 6371.0 * math.pi / 180  # along a meridian: 111.19492664455873 km


def test_haversine_equals_geopy_great_circle():
    rng = np.random.default_rng(0)
    n = 3000
    lat1, lat2 = (np.degrees(np.arcsin(rng.uniform(-1, 1, n))) for _ in range(2))
    lon1, lon2 = rng.uniform(-180, 180, n), rng.uniform(-180, 180, n)
    special = [
        ((0, 0), (0, 180)), ((10, 20), (-10, -160)), ((45, 179.9), (-45, -0.1)),  # antipodes
        ((37.5, -122.25), (-37.5, 57.75)), ((90, 0), (-90, 0)),
        ((90, 0), (89, 123)), ((-90, 45), (-89.5, -45)), ((90, 0), (0, 77)), ((90, 10), (90, -170)),  # poles
        ((0, 179.9), (0, -179.9)), ((51, 180), (51, -180)), ((-17, 179.5), (-18, -179.5)),  # date line
        ((10, 10), (10.000001, 10)), ((0, 0), (0, 1e-6)),  # tiny
    ]
    lat1 = np.concatenate([lat1, [s[0][0] for s in special]])
    lon1 = np.concatenate([lon1, [s[0][1] for s in special]])
    lat2 = np.concatenate([lat2, [s[1][0] for s in special]])
    lon2 = np.concatenate([lon2, [s[1][1] for s in special]])
    ours = haversine_km(lat1, lon1, lat2, lon2)
    ref = np.array([great_circle((a, b), (c, d), radius=6371.0).km for a, b, c, d in zip(lat1, lon1, lat2, lon2)])
    assert ours.dtype == np.float64
    zero = ref == 0  # the same point written twice (poles, +-180)
    assert np.all(np.abs(ours[zero]) < 1e-9)
    assert np.max(np.abs(ours[~zero] - ref[~zero]) / ref[~zero]) < 1e-6
    assert abs(haversine_km(0, 0, 0, 180) - 6371.0 * math.pi) < 1e-9
    assert abs(haversine_km(90, 0, -90, 33) - 6371.0 * math.pi) < 1e-9
    assert abs(haversine_km(0, 179.5, 0, -179.5) - KM_PER_DEGREE) < 1e-9


def test_distance_metrics_by_hand():
    d = [0.0, 1.0, 1.0000001, 25.0, 199.0, 750.0, 2500.0, 2500.5, 9000.0, 20000.0]  # thresholds are inclusive
    m = distance_metrics(d)
    assert m == {"1": 0.2, "25": 0.4, "200": 0.5, "750": 0.6, "2500": 0.7, "median_km": (199.0 + 750.0) / 2,
                 "n": 10}
    with pytest.raises(MobileNetsError):
        distance_metrics([])


# A truth file and a prediction file: each photo is off along its meridian by a chosen number of
# degrees, so its error is that many times 6371 pi / 180 km.
OFFSETS = {"a.jpg": 0.0, "b.jpg": 0.005, "c.jpg": 0.1, "d.jpg": 1.0, "e.jpg": 5.0, "f.jpg": 20.0, "g.jpg": 90.0}


def write_pair(tmp_path, bad_truth: bool = False, bad_pred: bool = False):
    truth = ["path,latitude,longitude"] + [f"photos/{k},{-40.0 + 0.0 * i},{-170 + 50 * i}"
                                           for i, k in enumerate(OFFSETS)]
    pred = ["image,lat,lon,score"]  # another header spelling, an extra column, another order
    pred += [f"photos/{k},{-40.0 + v},{-170 + 50 * i},0.5" for i, (k, v) in reversed(list(enumerate(OFFSETS.items())))]
    pred.append("photos/not-in-truth.jpg,1,2,0.5")
    if bad_truth:
        truth += ["photos/h.jpg,95,0", "photos/i.jpg,,", "photos/j.jpg,12", ",1,1", "photos/k.jpg,nan,3",
                  "photos/nopred.jpg,10,10"]
    if bad_pred:
        pred += ["photos/a.jpg,10,10,0.1", "photos/b.jpg,0,200,0.2"]  # a second prediction; longitude out of range
    (tmp_path / "truth.csv").write_text("\n".join(truth) + "\n")
    (tmp_path / "pred.csv").write_text("\n".join(pred) + "\n")
    return tmp_path / "truth.csv", tmp_path / "pred.csv"


# by hand: errors 0, 0.556, 11.1, 111.2, 556, 2224 and 10008 km
EXPECTED = {"1": 2 / 7, "25": 3 / 7, "200": 4 / 7, "750": 5 / 7, "2500": 6 / 7, "median_km": KM_PER_DEGREE, "n": 7}


def assert_expected(m):
    assert set(m) == set(EXPECTED)
    for k, v in EXPECTED.items():
        assert m[k] == pytest.approx(v, rel=1e-9), k


def test_geo_eval_json_equals_hand_computation(tmp_path, capsys):
    truth, pred = write_pair(tmp_path)
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(pred), "--json"]) == 0
    out, err = capsys.readouterr()
    assert_expected(json.loads(out))
    assert err == ""
    png = (tmp_path / "pred.cdf.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(pred),
                 "--plot", str(tmp_path / "cdf.png")]) == 0
    text = capsys.readouterr().out
    assert "Continent (2500 km)" in text and "85.7%" in text and "28.6%" in text and "111 km" in text
    assert (tmp_path / "cdf.png").is_file()
    said = []  # the library function says the same
    result = eval_files(truth, pred, plot=tmp_path / "lib.png", log=said.append)
    assert_expected(result["metrics"])
    assert said == [] and result["plot"] == str(tmp_path / "lib.png") and "PlaNet MobileNet" in result["table"]


def test_bad_rows_are_skipped_counted_listed_and_said_once(tmp_path, capsys):
    truth, pred = write_pair(tmp_path, bad_truth=True, bad_pred=True)
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(pred), "--json"]) == 0
    out, err = capsys.readouterr()
    assert_expected(json.loads(out))  # the good rows score exactly as before
    lines = err.strip().splitlines()
    assert len(lines) == 2  # one per file
    assert "truth.csv: skipped 6 of 13 rows" in lines[0] and "line 9" in lines[0] and "latitude 95.0" in lines[0]
    assert "pred.csv: skipped 2 of 10 rows" in lines[1]
    listed = (tmp_path / "pred.skipped.csv").read_text().splitlines()
    assert len(listed) == 1 + 8
    reasons = "\n".join(listed)
    for why in ("latitude 95.0 out of range", "2 fields", "empty path", "not numbers", "no prediction for this photo",
                "a second prediction for this photo (first on line 8)", "longitude 200.0 out of range"):
        assert why in reasons, why


def test_no_usable_rows_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("path,latitude,longitude\nx.jpg,100,0\ny.jpg,a,b\n")
    truth, _ = write_pair(tmp_path)
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(tmp_path / "bad.csv"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("mobilenet: error: ") and "no usable rows: 2 of 2 rows skipped" in err
    (tmp_path / "other.csv").write_text("path,latitude,longitude\nzzz.jpg,1,1\n")
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(tmp_path / "other.csv")]) == 2
    assert "has a prediction" in capsys.readouterr().err
    assert main(["geo", "eval", "--truth", str(truth)]) == 2
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("mobilenet: error:") == 2 and "photo list not found" in err


def test_read_photos_layouts_and_image_checks(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "img" / "ok.jpg")
    (tmp_path / "img" / "text.jpg").write_text("not an image")
    (tmp_path / "mp16.csv").write_text("IMG_ID,AUTHOR,LAT,LON\nimg/ok.jpg,someone,1.5,2.5\n"
                                       "img/text.jpg,x,3,4\nimg/gone.jpg,y,5,6\n")
    t = read_photos(tmp_path / "mp16.csv")
    assert t.keys == ["img/ok.jpg"] and t.paths == [str(tmp_path / "img" / "ok.jpg")]
    assert t.lat.tolist() == [1.5] and t.lon.tolist() == [2.5] and t.rows == 3
    assert [b[2] for b in t.bad] == ["unreadable image (UnidentifiedImageError)", "image not found"]
    assert len(read_photos(tmp_path / "mp16.csv", check_images=False)) == 3
    Image.new("RGB", (8, 8), (10, 200, 10)).save(tmp_path / "img" / "ok2.jpg")
    (tmp_path / "plain.csv").write_text("img/ok.jpg,-90,180\nimg/ok2.jpg,90,-180\n")  # no header; range ends
    assert read_photos(tmp_path / "plain.csv").lat.tolist() == [-90.0, 90.0]
    # one photo listed twice: the same coordinates are reported (the repeat skipped and listed), others refused
    (tmp_path / "twice.csv").write_text("img/ok.jpg,1,2\nimg/ok2.jpg,3,4\n./img/ok.jpg,1,2\n")
    t = read_photos(tmp_path / "twice.csv")
    assert t.keys == ["img/ok.jpg", "img/ok2.jpg"] and t.bad == [(3, "./img/ok.jpg", "duplicate of line 1 (same image "
                                                                  "and coordinates)")]
    (tmp_path / "clash.csv").write_text("img/ok.jpg,1,2\nimg/ok2.jpg,3,4\nimg/ok.jpg,1,2.5\n")
    with pytest.raises(MobileNetsError, match=r"img/ok.jpg is listed twice with different coordinates: line 1 "
                                              r"\(1.0, 2.0\) and line 3 \(1.0, 2.5\)"):
        read_photos(tmp_path / "clash.csv")
    (tmp_path / "root.csv").write_text("ok.jpg,0,0\n")
    assert len(read_photos(tmp_path / "root.csv", image_root=tmp_path / "img")) == 1
    with pytest.raises(MobileNetsError, match="no usable rows"):
        read_photos(tmp_path / "root.csv")


def test_table11_layout():
    m = distance_metrics([0.5, 30, 300, 1000, 3000])
    text = table11_text({"ours": m})
    lines = text.splitlines()
    assert lines[0].split() == ["Scale", "Im2GPS", "PlaNet", "PlaNet", "MobileNet", "ours"]
    assert [line.split("(")[0].strip() for line in lines[2:7]] == ["Continent", "Country", "Region", "City", "Street"]
    assert lines[2].split()[-4:] == ["51.9%", "77.6%", "79.3%", "80.0%"]
    assert lines[6].split()[-4:] == ["2.5%", "11.0%", "11.4%", "20.0%"]
    assert TABLE11["PlaNet MobileNet"][25] == 31.7 and "300 km" in lines[7]


def test_geo_eval_plot_none_writes_no_file(tmp_path, capsys, monkeypatch):
    truth, pred = write_pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(pred), "--plot", "none"]) == 0
    out = capsys.readouterr().out
    assert "Continent (2500 km)" in out and "CDF plot" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no none.png, no pred.cdf.png

"""Console silencing: ``quiet_prints`` (contextlib, what training and evaluation use) leaves the
file descriptors alone; ``quiet_native_output`` (descriptors 1 and 2, for exporters) does not,
and COCO evaluation never uses it."""

import os
import sys

import pytest

from mobilenets.utils.scoped import quiet_prints


def test_quiet_prints_drops_python_prints_only(capfd):
    before = (sys.stdout, sys.stderr)
    with quiet_prints():
        print("python stdout")
        print("python stderr", file=sys.stderr)
        os.write(1, b"fd one\n")  # what C code or a child process writes
        os.write(2, b"fd two\n")
    assert (sys.stdout, sys.stderr) == before
    out, err = capfd.readouterr()
    assert "python" not in out + err and out == "fd one\n" and err == "fd two\n"
    with quiet_prints(False):
        print("shown")
    assert capfd.readouterr().out == "shown\n"


SILENCE = """
import os, sys
from mobilenets.utils.scoped import {name}
with {name}():
    os.write(1, b"fd one\\n")
    print("python stdout")
os.write(1, b"after\\n")
"""


@pytest.mark.parametrize("name, shown", [("quiet_prints", "fd one\nafter\n"), ("quiet_native_output", "after\n")])
def test_only_the_native_variant_silences_the_descriptors(name, shown):
    """In a process of its own (pytest's capture replaces the descriptors): what is written to fd 1
    inside the block is dropped by the fd variant only, and both restore everything after."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", SILENCE.format(name=name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown


COCO = """
import json, os, sys
import mobilenets.tasks.detect.evaluate as E
from mobilenets.utils.scoped import quiet_native_output
gt = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                       "iscrowd": 0}]}
real, out = os.dup2, {}
for mode in ("as is", "control"):
    if mode == "control":  # what the evaluation did before: fds 1 and 2 to /dev/null
        E.quiet_prints = quiet_native_output
    calls = []
    os.dup2 = lambda *a: (calls.append(a), real(*a))[1]
    found = E.coco_metrics(gt, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9}],
                           sys.argv[1])
    os.dup2 = real
    out[mode] = {"dup2": len(calls), "AP": found["stats"]["AP"]}
sys.stderr.write(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_coco_evaluation_leaves_the_descriptors_alone(backend):
    """A detection validation epoch runs COCO evaluation: it must not redirect fds 1 and 2 (that
    hid tqdm bars, worker tracebacks and warnings), yet its own progress lines stay quiet. Run in
    a process with real descriptors; the control swaps the fd variant back in and is seen."""
    import json
    import subprocess

    pytest.importorskip(backend)
    done = subprocess.run([sys.executable, "-c", COCO, backend], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert done.stdout == ""  # the libraries' progress lines were dropped
    assert result["as is"] == {"dup2": 0, "AP": pytest.approx(1.0)}  # one exact detection, no fd touched
    assert result["control"]["dup2"] > 0 and result["control"]["AP"] == pytest.approx(1.0)

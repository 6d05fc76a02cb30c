"""Training-step and data-pipeline throughput of ``mobilenets``, against timm / torchvision, on CPU.

What it measures
----------------
Part 1, training step (images/s; data loading excluded: a fixed random batch is reused).

* **ours**: the library's own training step, ``mobilenets.train.loop.train_step`` (what
  ``mobilenet train`` runs each iteration; no copy here): the classification task's model
  (``prepare_model``: channels_last when asked; under bf16 autocast the stride-2 depthwise convs
  in float32), optimizer and scheduler from the ``paper`` recipe (``build_optimizer``: timm
  ``RMSpropTF`` with weight-decay parameter groups; ``build_scheduler``: ``LambdaLR``); per step:
  input prepared by ``StepContext.prepare`` (channels_last copy), ``torch.autocast("cpu",
  bfloat16)`` when bf16, forward, cross-entropy in float32, finiteness check,
  ``zero_grad(set_to_none=True)``, backward, ``optimizer.step()``, ``scheduler.step()``.
* **timm** (the baseline): a plain loop over ``timm.create_model("mobilenetv1_100")`` with
  ``torch.optim.SGD(lr=0.01, momentum=0.9)``, same batch, input size and per-step operations.
* Models ``mobilenet_v1_1.0_224`` and ``mobilenet_v1_0.5_128``, each in fp32 and bf16 (autocast)
  x NCHW and channels_last (model and input). timm has no 0.5-width MobileNetV1, so the 128 px
  group compares against timm's 1.0-width model at 128 px: a reference point, not like-for-like.

Part 2, data pipeline (images/s; JPEG decode + RandomResizedCrop + flip + ToTensor + Normalize,
no model, one process, ``torch.set_num_threads(1)`` as in a DataLoader worker), over a temporary
ImageNet-style folder of ~200 JPEGs (quality 90, ~500x375 and ~800x600) made from the real photos
in ``skimage.data``:

* **ours**: ``mobilenets.data.datasets.load_data(folder, R, Augment(color_jitter=0.0)).train[i]``.
* **torchvision** (the baseline): ``ImageFolder(folder/"train", RandomResizedCrop(R),
  RandomHorizontalFlip(), ToTensor(), Normalize(ImageNet mean/std))``, item by item.

How it measures
---------------
Contenders of one group are run in rounds, interleaved (A, B, C, ..., then again, with the
starting contender rotated each round) so that drift in machine load hits all of them alike,
after a few warm-up steps (or one warm-up pass) each. Part 1: every timed step is one sample
(batch / step time); the number of steps per round is chosen from the warm-up timings so that the
run fits its time budget (printed). Part 2: every full pass over the files is one sample.

How to read it
--------------
``median`` is the median of the samples; ``p10-p90`` the 10th-90th percentile range of the
samples (the spread; a wide one means a noisy machine). Ratios are of medians measured in the
same run: ``/timm same`` divides by timm at the same precision and layout, ``/timm best`` by the
fastest of timm's four settings at that input size; > 1 means ours is faster. The 1-minute load
average is printed at start and end: a load well above 0 means other processes shared the CPU.

Usage::

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--batch 32] [--json]

``--quick`` is a ~1-minute smoke run (fewer rounds, smaller budget); the default takes ~5-8 min
on a 2-core machine. ``--json`` prints one JSON object (machine, settings, rows) instead of the
tables. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _cli import ScriptParser, positive_int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRECISIONS = ("fp32", "bf16")
LAYOUTS = ("NCHW", "channels_last")

# (our registry name, input size, timm model used as baseline, like-for-like?)
TRAIN_GROUPS = (
    ("mobilenet_v1_1.0_224", 224, "mobilenetv1_100", True),
    ("mobilenet_v1_0.5_128", 128, "mobilenetv1_100", False),
)


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ScriptParser(prog="train_throughput.py", description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="~1-minute smoke run")
    p.add_argument("--batch", type=positive_int, default=32, help="training batch size (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads for the training part (default: torch's default)")
    p.add_argument("--part", choices=("all", "train", "data"), default="all",
                   help="which part to run (default all)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def spread(samples: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90) of the samples."""
    med = statistics.median(samples)
    if len(samples) < 2:
        return med, samples[0], samples[0]
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return med, deciles[0], deciles[-1]


@dataclass
class Row:
    part: str  # "train" or "data"
    group: str  # e.g. "mobilenet_v1_1.0_224" or "R=224"
    impl: str  # "ours", "timm", "torchvision"
    resolution: int
    precision: str = "-"
    layout: str = "-"
    batch: int | None = None
    samples: list[float] = field(default_factory=list)  # images/s, one per timed step / pass
    median: float = 0.0
    p10: float = 0.0
    p90: float = 0.0
    ratio_same: float | None = None  # ours / baseline at the same settings
    ratio_best: float | None = None  # ours / best baseline setting
    like_for_like: bool = True
    note: str = ""

    def finish(self) -> None:
        self.median, self.p10, self.p90 = spread(self.samples)


# --------------------------------------------------------------------------- part 1: training


class Contender:
    """One model + optimizer + fixed batch, with a ``step()`` that does one training step."""

    def __init__(self, row: Row, step: Callable[[], None]):
        self.row, self.step = row, step

    def timed_step(self) -> float:
        t0 = time.perf_counter()
        self.step()
        return time.perf_counter() - t0


def make_ours(name: str, res: int, batch: int, precision: str, layout: str) -> Contender:
    """Our model trained by the library's own step (mobilenets.train.loop.train_step: the one the
    training loop runs), with the paper recipe's optimizer and schedule."""
    import torch

    import mobilenets
    from mobilenets.train.loop import StepContext, prepare_model, train_step
    from mobilenets.train.optim import build_optimizer, build_scheduler
    from mobilenets.train.recipes import get_recipe
    from mobilenets.train.tasks import ClassificationTask

    cfg = mobilenets.get_config(name, num_classes=1000)
    recipe = get_recipe("paper", batch_size=batch)
    task = ClassificationTask(cfg, label_smoothing=recipe.label_smoothing)
    ctx = StepContext(torch.device("cpu"), amp=precision == "bf16", channels_last=layout == "channels_last")
    model = prepare_model(task.build_model(), ctx).train()
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch=1000)
    images = torch.randn(batch, 3, res, res)
    labels = torch.randint(0, 1000, (batch,))

    def step() -> None:
        losses = train_step(model, task, ctx.prepare(images), ctx.prepare(labels), optimizer, ctx,
                            scheduler=scheduler)
        float(losses["loss"].detach())  # the loop accumulates the epoch loss this way

    row = Row("train", name, "ours", res, precision, layout, batch)
    return Contender(row, step)


def make_timm(group: str, timm_name: str, res: int, batch: int, precision: str, layout: str,
              like_for_like: bool) -> Contender:
    import timm
    import torch
    import torch.nn.functional as F

    model = timm.create_model(timm_name, pretrained=False, num_classes=1000)
    channels_last = layout == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    amp = precision == "bf16"
    images = torch.randn(batch, 3, res, res)
    labels = torch.randint(0, 1000, (batch,))

    def step() -> None:
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())

    note = "" if like_for_like else f"timm {timm_name} (width 1.0) at {res}px: no 0.5 width in timm"
    row = Row("train", group, "timm", res, precision, layout, batch, like_for_like=like_for_like,
              note=note)
    return Contender(row, step)


def run_train_group(name: str, res: int, timm_name: str, like: bool, batch: int, budget_s: float,
                    rounds: int, min_rounds: int, warmup: int, settings: dict[str, Any]) -> list[Row]:
    t_start = time.perf_counter()
    contenders: list[Contender] = []
    for prec in PRECISIONS:
        for layout in LAYOUTS:
            contenders.append(make_ours(name, res, batch, prec, layout))
            contenders.append(make_timm(name, timm_name, res, batch, prec, layout, like))
    # Warm-up, interleaved as well; the last warm-up step of each calibrates the step count.
    last = [0.0] * len(contenders)
    for _ in range(warmup):
        for i, c in enumerate(contenders):
            last[i] = c.timed_step()
    per_round_one_step = sum(last)
    left = budget_s - (time.perf_counter() - t_start)
    steps = max(1, min(50, int(left / (rounds * per_round_one_step))))
    if steps == 1:  # a slow (or busy) machine: fewer rounds rather than blowing the budget
        rounds = max(min_rounds, min(rounds, int(left / per_round_one_step)))
    log(f"  {name}: warm-up ({warmup} step(s) per contender) took {time.perf_counter() - t_start:.0f} s; "
        f"one step of every contender ~{per_round_one_step:.1f} s -> {rounds} rounds x {steps} "
        f"step(s) per contender")
    done = 0
    for r in range(rounds):
        t_round = time.perf_counter()
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            for _ in range(steps):
                c.row.samples.append(batch / c.timed_step())
        done += 1
        elapsed = time.perf_counter() - t_start
        log(f"    round {r + 1}/{rounds} done ({elapsed:.0f} s)")
        # Hard stop (whole rounds only, so every contender gets the same treatment) when the
        # machine slowed down after calibration.
        round_s = time.perf_counter() - t_round
        if min_rounds <= done < rounds and elapsed + round_s > 1.25 * budget_s:
            log(f"    over budget: stopping after {done} rounds")
            break
    settings.setdefault("train_steps", {})[name] = {"warmup": warmup, "rounds": done,
                                                   "steps_per_round": steps}
    rows = [c.row for c in contenders]
    for row in rows:
        row.finish()
    timm_rows = {(r.precision, r.layout): r for r in rows if r.impl == "timm"}
    best = max(timm_rows.values(), key=lambda r: r.median)
    for row in rows:
        row.ratio_same = row.median / timm_rows[(row.precision, row.layout)].median
        row.ratio_best = row.median / best.median
    # Ours first, then timm, each in (precision, layout) order.
    return [r for r in rows if r.impl == "ours"] + [r for r in rows if r.impl == "timm"]


# --------------------------------------------------------------------------- part 2: data


def build_image_folder(root: Path, n_train: int, seed: int = 0) -> dict[str, Any]:
    """``root/train/<class>/*.jpg`` (and a few in ``val/``) from skimage.data's real photos."""
    import numpy as np
    from PIL import Image
    from skimage import data as skd

    sources = {
        "astronaut": skd.astronaut, "coffee": skd.coffee, "chelsea": skd.chelsea,
        "rocket": skd.rocket, "camera": skd.camera, "immunohistochemistry": skd.immunohistochemistry,
        "hubble_deep_field": skd.hubble_deep_field, "retina": skd.retina,
    }
    photos = {}
    for key, fn in sources.items():
        a = np.asarray(fn())
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)  # grey -> RGB
        photos[key] = Image.fromarray(a[..., :3].astype(np.uint8))
    keys = list(photos)
    classes = {"class_a": keys[0:2], "class_b": keys[2:4], "class_c": keys[4:6], "class_d": keys[6:8]}
    sizes = [(500, 375), (375, 500), (500, 333), (800, 600), (600, 800), (640, 480)]
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    total_bytes = 0

    def write(split: str, cls: str, index: int) -> None:
        nonlocal total_bytes
        src = photos[rng.choice(classes[cls])]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = src.crop((x0, y0, x0 + cw, y0 + ch)).resize(rng.choice(sizes), Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        path = root / split / cls / f"{split}_{index:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, "JPEG", quality=90)
        total_bytes += path.stat().st_size
        counts[split] = counts.get(split, 0) + 1

    names = list(classes)
    for i in range(n_train):
        write("train", names[i % len(names)], i)
    for i, cls in enumerate(names):
        write("val", cls, i)
    return {"train_files": counts["train"], "val_files": counts["val"], "classes": len(names),
            "mean_kb": round(total_bytes / sum(counts.values()) / 1024, 1),
            "sizes": ["x".join(map(str, s)) for s in sizes], "jpeg_quality": 90}


def run_data_part(root: Path, resolutions: list[int], rounds: int, items: int,
                  settings: dict[str, Any]) -> list[Row]:
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    from mobilenets.data.datasets import Augment, BadSample, load_data

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[Row] = []
    try:
        for res in resolutions:
            t_start = time.perf_counter()
            ours_ds = load_data(str(root), res, Augment(color_jitter=0.0)).train
            tv_ds = datasets.ImageFolder(str(root / "train"), transform=T.Compose([
                T.RandomResizedCrop(res), T.RandomHorizontalFlip(), T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]))
            n = min(items, len(ours_ds), len(tv_ds))
            order = list(range(len(ours_ds)))
            random.Random(res).shuffle(order)
            order = order[:n]

            def pass_ours(seed: int, order=order, ours_ds=ours_ds, n=n) -> float:  # bound now: called in this iteration
                torch.manual_seed(seed)
                random.seed(seed)
                t0 = time.perf_counter()
                for i in order:
                    item = ours_ds[i]
                    if isinstance(item, BadSample):
                        raise RuntimeError(f"ours could not decode {item.path}: {item.reason}")
                return n / (time.perf_counter() - t0)

            def pass_tv(seed: int, order=order, tv_ds=tv_ds, n=n) -> float:
                torch.manual_seed(seed)
                random.seed(seed)
                t0 = time.perf_counter()
                for i in order:
                    tv_ds[i]
                return n / (time.perf_counter() - t0)

            # Same files, same shapes out?
            a, b = ours_ds[order[0]], tv_ds[order[0]]
            assert tuple(a[0].shape) == tuple(b[0].shape) == (3, res, res), (a[0].shape, b[0].shape)
            contenders = [(Row("data", f"R={res}", "ours", res), pass_ours),
                          (Row("data", f"R={res}", "torchvision", res), pass_tv)]
            for _, fn in contenders:  # warm-up pass: page cache, lazy imports, allocator
                fn(10_000)
            for r in range(rounds):
                k = r % len(contenders)
                for row, fn in contenders[k:] + contenders[:k]:
                    row.samples.append(fn(r))
            for row, _ in contenders:
                row.finish()
            base = contenders[1][0].median
            for row, _ in contenders:
                row.ratio_same = row.median / base
            rows += [row for row, _ in contenders]
            log(f"  data R={res}: {rounds} rounds x {n} items each took "
                f"{time.perf_counter() - t_start:.0f} s")
        settings["data"] = {"rounds": rounds, "items_per_pass": n, "warmup_passes": 1,
                            "torch_threads": 1}
    finally:
        torch.set_num_threads(saved_threads)
    return rows


# --------------------------------------------------------------------------- output


def fmt_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def ratio(x: float | None, star: bool = False) -> str:
    return "" if x is None else f"{x:.2f}" + ("*" if star else "")


def print_report(machine: dict[str, Any], settings: dict[str, Any], rows: list[Row]) -> None:
    print("== machine ==")
    print(f"cpu: {machine['cpu']} | cores: {machine['cores']} (usable {machine['usable_cores']}) | "
          f"torch {machine['torch']} | torchvision {machine['torchvision']} | timm {machine['timm']} | "
          f"python {machine['python']}")
    print(f"threads: training {settings['train_threads']}, data 1 | 1-min load avg: start "
          f"{machine['load1_start']}, end {machine['load1_end']} | wall time {machine['wall_s']:.0f} s")
    print(f"settings: {'--quick' if settings['quick'] else 'default'}, batch {settings['batch']}, "
          f"random inputs (no data loading) for training")
    train = [r for r in rows if r.part == "train"]
    if train:
        print()
        print("== part 1: training step, images/s (higher is better) ==")
        for name, st in settings.get("train_steps", {}).items():
            print(f"{name}: warm-up {st['warmup']} step(s), then {st['rounds']} interleaved rounds x "
                  f"{st['steps_per_round']} step(s) = {st['rounds'] * st['steps_per_round']} timed "
                  f"steps per contender")
        header = ["model", "input", "impl", "prec", "layout", "n", "median img/s", "p10-p90 img/s",
                  "ms/step", "/timm same", "/timm best"]
        cells = []
        for r in train:
            star = not r.like_for_like
            impl = r.impl if r.impl == "ours" else ("timm 1.0*" if star else "timm")
            cells.append([
                r.group if r.impl == "ours" else "mobilenetv1_100", f"{r.resolution}", impl,
                r.precision, r.layout, str(len(r.samples)), f"{r.median:.1f}",
                f"{r.p10:.1f}-{r.p90:.1f}", f"{1000 * r.batch / r.median:.0f}",
                ratio(r.ratio_same, star), ratio(r.ratio_best, star)])
        print(fmt_table(header, cells, right={1, 5, 6, 7, 8, 9, 10}))
        print("ours = mobilenets model + 'paper' recipe (RMSpropTF, param groups, LambdaLR), stepped by "
              "mobilenets.train.loop.train_step; timm = mobilenetv1_100 + plain SGD(0.01, momentum 0.9).")
        print("/timm same: divided by timm at the same precision/layout; /timm best: by the fastest "
              "of timm's 4 settings at that input size (>1: ours faster).")
        if any(not r.like_for_like for r in train):
            print("* not like-for-like: timm has no 0.5-width MobileNetV1, so the 128 px rows compare "
                  "ours 0.5-width against timm's 1.0-width model at 128 px (about 4x the multiply-adds); "
                  "a reference only.")
    data = [r for r in rows if r.part == "data"]
    if data:
        d = settings["data"]
        f = settings["folder"]
        print()
        print("== part 2: data pipeline (decode + random resized crop + flip + to tensor + normalize), "
              "images/s, 1 process, 1 thread ==")
        print(f"{f['train_files']} train JPEGs (q{f['jpeg_quality']}, {f['classes']} classes, "
              f"{', '.join(f['sizes'])}, mean {f['mean_kb']} KB) from skimage.data photos; warm-up 1 "
              f"pass, then {d['rounds']} interleaved rounds x 1 pass of {d['items_per_pass']} items")
        header = ["input", "impl", "n", "median img/s", "p10-p90 img/s", "ms/img", "/torchvision"]
        cells = [[r.group, r.impl, str(len(r.samples)), f"{r.median:.1f}", f"{r.p10:.1f}-{r.p90:.1f}",
                  f"{1000 / r.median:.2f}", ratio(r.ratio_same)] for r in data]
        print(fmt_table(header, cells, right={2, 3, 4, 5, 6}))
        print("ours = load_data(folder, R, Augment(color_jitter=0)).train[i] (crop scale 0.35-1, mean/std "
              "0.5); torchvision = ImageFolder + RandomResizedCrop(R) (scale 0.08-1) + flip + ToTensor + "
              "Normalize(ImageNet).")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    machine: dict[str, Any] = {"load1_start": load1()}
    import timm
    import torch
    import torchvision

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    machine.update({
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
        "python": platform.python_version(),
    })
    settings: dict[str, Any] = {"quick": args.quick, "batch": args.batch,
                                "train_threads": torch.get_num_threads()}
    log(f"load avg (1 min) at start: {machine['load1_start']}; cpu: {machine['cpu']}, "
        f"{machine['cores']} cores, torch threads {torch.get_num_threads()}")
    rows: list[Row] = []
    if args.part in ("all", "train"):
        # Time budget per group (s), including warm-up; steps per round follow from it.
        budgets = {224: 22.0, 128: 10.0} if args.quick else {224: 230.0, 128: 90.0}
        rounds = 2 if args.quick else 5
        log("part 1: training step")
        for name, res, timm_name, like in TRAIN_GROUPS:
            warmup = (1 if args.quick else 3) if res >= 224 else (2 if args.quick else 4)
            rows += run_train_group(name, res, timm_name, like, args.batch, budgets[res], rounds,
                                    2 if args.quick else 3, warmup, settings)
    if args.part in ("all", "data"):
        log("part 2: data pipeline")
        tmp = Path(tempfile.mkdtemp(prefix="mobilenets-bench-"))
        try:
            settings["folder"] = build_image_folder(tmp, n_train=200)
            rows += run_data_part(tmp, [224, 128], rounds=2 if args.quick else 11,
                                  items=100 if args.quick else 200, settings=settings)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    machine["load1_end"] = load1()
    machine["wall_s"] = round(time.perf_counter() - t0, 1)
    log(f"load avg (1 min) at end: {machine['load1_end']}; wall time {machine['wall_s']:.0f} s")
    if args.json:
        out_rows = []
        for r in rows:
            d = asdict(r)
            d["samples"] = [round(s, 3) for s in d["samples"]]
            for k in ("median", "p10", "p90", "ratio_same", "ratio_best"):
                if d[k] is not None:
                    d[k] = round(d[k], 4)
            out_rows.append(d)
        print(json.dumps({"machine": machine, "settings": settings, "rows": out_rows}, indent=2))
    else:
        print_report(machine, settings, rows)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("train_throughput.py: interrupted", file=sys.stderr)
        sys.exit(130)

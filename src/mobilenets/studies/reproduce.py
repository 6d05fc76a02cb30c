"""``reproduce``: re-run the paper's Tables 4-7, each row trained and evaluated with one recipe.

Every row is a ``train()`` run (the one loop, :func:`~mobilenets.train.loop.fit`) in its own
folder under the output folder, so a killed reproduction continues where it stopped: finished
rows are read back from their ``metrics.jsonl``, a row with a checkpoint is resumed, a row
folder with no checkpoint yet (killed within its first epoch) is refused in one line. With
``data`` the rows run at the paper's resolutions on that ImageNet-style folder; without it they
run on the built-in digits at small scale (the paper's 224 px become 32 px; Table 7's 224-128
become 64-40 px), labelled as such. The table prints the paper's accuracy beside ours and the
cost columns of our counter (at the paper's scale: 1000 classes, the paper's resolutions), and
says whether each of the paper's qualitative claims held in this run, without asserting it must.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobilenets.errors import MobileNetsError, arg

# table -> (paper table, title, [(registry model, digits resolution)])
TABLES = {
    "table4": ("TABLE4", "Table 4: Depthwise Separable vs Full Convolution MobileNet",
               [("mobilenet_v1_conv_1.0_224", 32), ("mobilenet_v1_1.0_224", 32)]),
    "table5": ("TABLE5", "Table 5: Narrow vs Shallow MobileNet",
               [("mobilenet_v1_0.75_224", 32), ("mobilenet_v1_shallow_1.0_224", 32)]),
    "table6": ("TABLE6", "Table 6: MobileNet Width Multiplier",
               [(f"mobilenet_v1_{a}_224", 32) for a in ("1.0", "0.75", "0.5", "0.25")]),
    "table7": ("TABLE7", "Table 7: MobileNet Resolution",
               [(f"mobilenet_v1_1.0_{r}", d) for r, d in ((224, 64), (192, 56), (160, 48), (128, 40))]),
}
DIGITS_EPOCHS = 6  # the paper recipe is at ~94-97 % on the digits by epoch 6; more would not fit 15 min on 2 shared cores
DIGITS_LABEL = ("digits stand-in (sklearn digits: 1,347 train / 450 test 8x8 images up-sampled; NOT ImageNet; "
                "small scale)")


def _finished(folder: Path, epochs: int) -> float | None:
    """The final val top-1 of a row that has run all its epochs, else None."""
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        return None
    last = None
    for line in metrics.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("epoch") is not None:
            last = record
    if last is None or last["epoch"] < epochs or last.get("val_top1") is None:
        return None
    return float(last["val_top1"])


def _setting(key: str, value: Any) -> str:
    """One setting of a reproduction plan in the caller's words (``--epochs 3`` / ``epochs=3``)."""
    if key == "table":
        return f"table {value}"
    if key == "data":
        return "the digits" if value is None else arg("data", value)
    field = key.removeprefix("recipe.")
    if field in ("epochs", "name"):
        return arg("epochs" if field == "epochs" else "recipe", value)
    return f"recipe field {field} {value!r}"


def _check_folder(out: Path, plan: dict[str, Any]) -> None:
    """The output folder is new, or holds this same reproduction (else one line)."""
    marker = out / "reproduce.json"
    if marker.is_file():
        try:
            saved = json.loads(marker.read_text())
        except ValueError:
            raise MobileNetsError(f"{marker} is damaged; remove it (the rows' runs are kept) to continue") from None
        def flat(d: dict[str, Any]) -> dict[str, Any]:  # recipe fields one by one, for a short message
            return {**{k: v for k, v in d.items() if k != "recipe"},
                    **{f"recipe.{k}": v for k, v in (d.get("recipe") or {}).items()}}

        mine, theirs = flat(plan), flat(saved)
        differ = [k for k, v in mine.items() if theirs.get(k) != v]
        if differ:
            raise MobileNetsError(
                f"{out} holds another reproduction ({', '.join(_setting(k, theirs.get(k)) for k in differ)}; "
                f"asked {', '.join(_setting(k, mine[k]) for k in differ)}); choose another {arg('output')}")
    elif out.is_dir() and any(out.iterdir()):
        raise MobileNetsError(f"{out} is not empty and holds no reproduce.json; choose another {arg('output')}")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(plan, indent=2))


def _run_row(name: str, resolution: int | None, data: str | None, recipe, folder: Path, options,
             log) -> dict[str, Any]:
    import dataclasses

    from mobilenets.train.classify import train
    from mobilenets.train.state import latest_state

    done = _finished(folder, recipe.epochs)
    if done is not None:
        log(f"{name}: finished earlier ({folder}), top-1 {100 * done:.2f}%")
        return {"top1": done, "resumed": False, "trained": False}
    has_state = latest_state(folder) is not None
    # The runner's own check (train/runner.py check_folder): a row stopped before its first
    # checkpoint is resumed from scratch with its recorded settings, like any run folder.
    opts = dataclasses.replace(options, output=str(folder),
                               resume=has_state or (folder / "config.json").is_file())
    # epochs and batch go as overrides: train() gives the digits its own defaults otherwise
    train(data, name, resolution=resolution, recipe=recipe, options=opts, log=log,
          recipe_overrides={"epochs": recipe.epochs, "batch_size": recipe.batch_size})
    top1 = _finished(folder, recipe.epochs)
    if top1 is None:
        raise MobileNetsError(f"{folder}: the run stopped before its {recipe.epochs} epochs")
    return {"top1": top1, "resumed": has_state, "trained": True}


def judge_claims(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whether the paper's qualitative claim about ``table`` held in these rows."""
    acc = [r["ours_top1"] for r in rows]
    if table == "table4":
        gap = acc[0] - acc[1]
        return [{"claim": "depthwise separable within ~1 point of full convolution", "holds": gap <= 1.0,
                 "detail": f"full conv {acc[0]:.2f}% vs separable {acc[1]:.2f}% ({gap:+.2f} points)"}]
    if table == "table5":
        gap = acc[0] - acc[1]
        return [{"claim": "thinner (0.75) beats shallower at similar cost", "holds": gap > 0,
                 "detail": f"0.75 MobileNet {acc[0]:.2f}% vs shallow {acc[1]:.2f}% ({gap:+.2f} points)"}]
    knob = "alpha" if table == "table6" else "resolution"
    drops = [a - b for a, b in zip(acc, acc[1:])]
    # "smooth": never rises by more than the noise of one run (0.5 point) as the knob shrinks
    holds = all(d >= -0.5 for d in drops)
    return [{"claim": f"accuracy falls smoothly as {knob} shrinks", "holds": holds,
             "detail": "steps " + ", ".join(f"{-d:+.2f}" for d in drops) + " points"}]


def reproduce(table: str, data: str | os.PathLike | None = None, *, output: str | os.PathLike | None = None,
              epochs: int | None = None, recipe: str = "paper", options=None, log: Any = print) -> dict[str, Any]:
    """Train and evaluate each row of ``table`` ("table4" ... "table7") with one ``recipe``;
    returns the rows (paper's top-1, ours, our counts) and the claims' verdicts. ``options``
    (:class:`~mobilenets.train.options.TrainOptions`): how every row runs (device, threads,
    precision, progress, ...); each row's folder and resume are set here."""
    from mobilenets.cost.count import analytical_cost
    from mobilenets.models.registry import get_config
    from mobilenets.paper import printed
    from mobilenets.train.options import TrainOptions
    from mobilenets.train.recipes import get_recipe

    options = options or TrainOptions()

    if table not in TABLES:
        raise MobileNetsError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    paper_name, title, models = TABLES[table]
    digits = data is None
    rec = get_recipe(recipe)
    rec = rec.replace(epochs=epochs or (DIGITS_EPOCHS if digits else rec.epochs),
                      **({"batch_size": 64} if digits else {}))
    if data is not None:
        data = os.path.abspath(data)
        if not os.path.isdir(data):
            from mobilenets.errors import DataNotFoundError

            raise DataNotFoundError(f"data folder not found: {data}")
    out = Path(output or f"runs/reproduce-{table}{'-digits' if digits else ''}")
    plan = {"table": table, "data": data, "recipe": rec.to_dict()}
    _check_folder(out, plan)
    rows = []
    for name, small in models:
        cfg = get_config(name)
        res = small if digits else cfg.resolution
        result = _run_row(name, res, data, rec, out / name, options, log)
        paper_top1, _m, _p = getattr(printed, paper_name)[name]
        full = analytical_cost(cfg.replace(num_classes=1000))
        ran = analytical_cost(cfg.replace(resolution=res, num_classes=10 if digits else cfg.num_classes))
        rows.append({"model": name, "alpha": cfg.alpha, "variant": cfg.variant, "paper_resolution": cfg.resolution,
                     "resolution": res, "paper_top1": paper_top1, "ours_top1": 100 * result["top1"],
                     "mult_adds": full.mult_adds, "params": full.params, "run_mult_adds": ran.mult_adds,
                     "folder": str(out / name), "trained_now": result["trained"]})
    return {"table": table, "title": title, "data": data if data is not None else "digits",
            "label": DIGITS_LABEL if digits else f"ImageNet-style folder {data}", "epochs": rec.epochs,
            "recipe": rec.name, "output": str(out), "rows": rows, "claims": judge_claims(table, rows)}


def _row_label(r: dict[str, Any]) -> str:
    kind = {"conv": "Conv MobileNet", "shallow": "Shallow MobileNet"}.get(r["variant"])
    width = f"{r['alpha']:g}" + (".0" if r["alpha"] == int(r["alpha"]) else "")  # the paper's "1.0 MobileNet-224"
    return kind or f"{width} MobileNet-{r['paper_resolution']}"


def reproduce_text(result: dict[str, Any]) -> str:
    lines = [result["title"], f"data: {result['label']}; recipe {result['recipe']}, {result['epochs']} epochs per row",
             f"{'Model':<22} {'paper top-1':>11} {'ours top-1':>10} {'M mult-adds':>11} {'M params':>9} "
             f"{'as run: px':>10} {'M mult-adds':>11}"]
    for r in result["rows"]:
        lines.append(f"{_row_label(r):<22} {r['paper_top1']:10.1f}% {r['ours_top1']:9.2f}% "
                     f"{r['mult_adds'] / 1e6:11.0f} {r['params'] / 1e6:9.2f} {r['resolution']:10d} "
                     f"{r['run_mult_adds'] / 1e6:11.2f}")
    lines.append("(paper top-1: ImageNet; ours: " + ("the digits stand-in" if result["data"] == "digits" else "this data")
                 + "; mult-adds and params by our counter at the paper's scale, 1000 classes)")
    for c in result["claims"]:
        lines.append(f"claim: {c['claim']}: {'holds' if c['holds'] else 'does not hold'} here ({c['detail']})")
    return "\n".join(lines)


__all__ = ["TABLES", "judge_claims", "reproduce", "reproduce_text"]

"""Acceptance run of embedding distillation (issue 13): a MobileNet student learns dlib's 128-d face
embedding from augmented face chips and must reproduce dlib's same/different decision (distance
<= 0.6) on pairs built from held-out augmentations.

Faces: the real photos with a face dlib finds (astronaut, Grace Hopper) as aligned 150-px chips,
and the first ``--lfw`` faces of ``skimage.data.lfw_subset()`` (25 px grey, upscaled), each one
identity. Every face gets ``--train-augs`` augmented copies for training and ``--test-augs`` other
ones for the test (random crop of 80-100 %, mirror, brightness, a small rotation). dlib runs once per
chip (it costs ~0.1 s a chip on one core: too slow to run inside every training step here), so the
student trains on a precomputed ``.npz`` teacher (``mobilenet distill --teacher dlib.npz``).

Test pairs: every same-identity pair of test chips and three times as many random different-identity
pairs. The student's threshold is chosen on training pairs (the one that best agrees with dlib at
0.6), then applied to the test pairs; the agreement at 0.6 itself is printed too. The verification
reports (truth: same identity) of dlib and the student are printed side by side (Table 14 layout)
and drawn in ``roc.png``.

    python benchmarks/distill_embedding.py --output /tmp/emb [--epochs 60 --threads 1]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _cli import ScriptParser, positive_int


def face_sources(n_lfw: int) -> dict[str, Image.Image]:
    """Identity -> one 150-px face chip."""
    import dlib
    import skimage.data

    from mobilenets.data.photos import load_photo
    from mobilenets.tasks.distill.faces import FaceAligner

    aligner = FaceAligner(size=150)
    out = {}
    for name in ("astronaut", "grace_hopper", "camera"):
        chips = aligner.chips(load_photo(name))
        if chips:
            out[name] = chips[0]
        else:
            print(f"dlib finds no face in {name}; left out")
    del dlib
    for i, face in enumerate(skimage.data.lfw_subset()[:n_lfw]):  # its first 100 images are faces
        grey = Image.fromarray((np.asarray(face) * 255).astype(np.uint8))
        out[f"lfw{i:03d}"] = grey.convert("RGB").resize((150, 150), Image.BICUBIC)
    return out


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random view of a chip: rotation (+-8 degrees), crop of 80-100 %, mirror, brightness."""
    image = image.rotate(float(rng.uniform(-8, 8)), resample=Image.BILINEAR)
    w = image.size[0]
    c = int(w * rng.uniform(0.8, 1.0))
    x, y = (int(v) for v in rng.integers(0, w - c + 1, size=2))
    image = image.crop((x, y, x + c, y + c)).resize((150, 150), Image.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image).astype(np.float32) * rng.uniform(0.75, 1.2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_views(sources: dict[str, Image.Image], folder: Path, count: int, seed: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for ident, chip in sources.items():
        for k in range(count):
            augment(chip, rng).save(folder / f"{ident}_{k:03d}.jpg", quality=95)
            names.append(f"{ident}_{k:03d}.jpg")
    return sorted(names)


def cached_outputs(npz: Path, paths: list[str]) -> np.ndarray | None:
    """The outputs a previous run of this script saved for exactly ``paths``, else None."""
    if not npz.is_file():
        return None
    with np.load(npz) as data:
        return np.array(data["outputs"]) if [str(p) for p in data["paths"]] == list(paths) else None


def teacher_outputs(teacher, folder: Path, paths: list[str]) -> np.ndarray:
    from mobilenets.tasks.distill.data import load_crops

    return np.concatenate([teacher(load_crops(folder, paths[i:i + 32], 150)).numpy()
                           for i in range(0, len(paths), 32)])


def make_pairs(paths: list[str], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(a, b)`` and same-identity flags: all same pairs, 3x as many different ones, shuffled."""
    ident = [p.rsplit("_", 1)[0] for p in paths]
    a, b = [], []
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            if ident[i] == ident[j]:
                a.append(i)
                b.append(j)
    n_same, rng = len(a), np.random.default_rng(seed)
    while len(a) < 4 * n_same:
        i, j = (int(v) for v in rng.integers(0, len(paths), size=2))
        if ident[i] != ident[j]:
            a.append(i)
            b.append(j)
    order = rng.permutation(len(a))  # same and different pairs in every fold
    same = np.arange(len(a)) < n_same
    return np.array(a)[order], np.array(b)[order], same[order]


def main(argv=None) -> dict:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="work folder (chips, teacher outputs, run, roc.png)")
    p.add_argument("--lfw", type=positive_int, default=30, help="LFW faces used as identities (default 30)")
    p.add_argument("--train-augs", type=positive_int, default=30, help="training views per face (default 30)")
    p.add_argument("--test-augs", type=positive_int, default=4, help="held-out views per face (default 4)")
    p.add_argument("--epochs", type=positive_int, default=60)
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument("--resolution", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--eval-only", action="store_true", help="judge the student already trained in OUTPUT/run")
    args = p.parse_args(argv)


    from mobilenets.tasks.distill.data import load_crops
    from mobilenets.tasks.distill.metrics import (
        format_verification,
        pair_distances,
        plot_roc,
        verification_report,
    )
    from mobilenets.tasks.distill.run import distill, load_student, outputs_of, student_preprocessing
    from mobilenets.tasks.distill.teachers import DlibFaceTeacher
    from mobilenets.train.options import TrainOptions
    from mobilenets.utils.scoped import torch_threads

    root = Path(args.output)
    t0, c0 = time.time(), time.process_time()
    with torch_threads(args.threads):
        sources = face_sources(args.lfw)
        train = write_views(sources, root / "train", args.train_augs, seed=0)
        test = write_views(sources, root / "test", args.test_augs, seed=1)
        teacher = DlibFaceTeacher()
        # views are deterministic: a rerun reuses the outputs a previous one saved
        t_train = cached_outputs(root / "dlib.npz", train)
        t_train = t_train if t_train is not None else teacher_outputs(teacher, root / "train", train)
        t_test = cached_outputs(root / "dlib_test.npz", test)
        t_test = t_test if t_test is not None else teacher_outputs(teacher, root / "test", test)
        np.savez(root / "dlib.npz", paths=np.array(train), outputs=t_train)
        np.savez(root / "dlib_test.npz", paths=np.array(test), outputs=t_test)
        prep_s = time.time() - t0
        print(f"{len(sources)} faces, {len(train)} training and {len(test)} test views; dlib: {prep_s:.0f} s",
              flush=True)

        # the same as: mobilenet distill --teacher ROOT/dlib.npz --data ROOT/train --task embedding
        #   --alpha A --resolution R --epochs E --lr LR --output ROOT/run
        if args.eval_only:
            summary = {"metrics": None, "seconds": None, "steps": None}
        else:
            if (root / "run").exists():
                import shutil

                shutil.rmtree(root / "run")  # a fresh run, not a resume
            summary = distill(str(root / "dlib.npz"), str(root / "train"), "embedding", alpha=args.alpha,
                              resolution=args.resolution, val_every=10,
                              recipe_overrides={"epochs": args.epochs, "lr": args.lr},
                              options=TrainOptions(output=str(root / "run"), progress=False))
        student, meta = load_student(root / "run")
        pre = student_preprocessing(meta, student)
        s_train = outputs_of(student, load_crops(root / "train", train, 150), pre)
        s_test = outputs_of(student, load_crops(root / "test", test, 150), pre)

    a, b, _ = make_pairs(train, seed=2)
    dt, ds = pair_distances(t_train[a], t_train[b]), pair_distances(s_train[a], s_train[b])
    candidates = np.unique(ds)
    s_thr = float(candidates[int(np.argmax([np.mean((ds <= c) == (dt <= 0.6)) for c in candidates]))])

    a, b, same = make_pairs(test, seed=3)
    dt, ds = pair_distances(t_test[a], t_test[b]), pair_distances(s_test[a], s_test[b])
    # how hard the bar is on these faces: a student that knew each face's mean training embedding
    # exactly but nothing of the view (best threshold), and the agreement away from the threshold
    ident_train = np.array([f.rsplit("_", 1)[0] for f in train])
    centre = {i: t_train[ident_train == i].mean(0) for i in set(ident_train)}
    c_test = np.stack([centre[f.rsplit("_", 1)[0]] for f in test])
    dc = pair_distances(c_test[a], c_test[b])
    identity_only = max(float(np.mean((dc <= c) == (dt <= 0.6))) for c in np.unique(dc))
    clear = np.abs(dt - 0.6) >= 0.1
    reports = {"dlib (teacher)": verification_report(None, None, same, distances=dt),
               f"MobileNet {args.alpha:g}-{args.resolution}": verification_report(None, None, same, distances=ds)}
    plot_roc(reports, root / "roc.png")
    from mobilenets.tasks.distill.tables import embedding_table

    result = {
        "faces": len(sources), "train_views": len(train), "test_views": len(test), "test_pairs": int(len(same)),
        "same_pairs": int(same.sum()), "teacher_same_decisions": int((dt <= 0.6).sum()),
        "student_threshold": s_thr,
        "agreement": float(np.mean((ds <= s_thr) == (dt <= 0.6))),
        "agreement_at_0.6": float(np.mean((ds <= 0.6) == (dt <= 0.6))),
        "distance_mae": float(np.mean(np.abs(ds - dt))),
        "test_embedding_mse": float(np.mean(np.sum((s_test - t_test) ** 2, axis=1))),
        "teacher_mean_embedding_mse": float(np.mean(np.sum((t_test - t_train.mean(0)) ** 2, axis=1))),
        "pairs_within_0.1_of_threshold": float(1 - clear.mean()),
        "agreement_on_pairs_0.1_or_more_from_threshold": float(np.mean(((ds <= s_thr) == (dt <= 0.6))[clear])),
        "identity_only_student_agreement": identity_only,
        "final_val": summary["metrics"], "fit_seconds": summary["seconds"], "steps": summary["steps"],
        "wall_s": round(time.time() - t0), "cpu_s": round(time.process_time() - c0),
    }
    print(format_verification(reports))
    names = list(reports)
    print(embedding_table([("dlib ResNet (teacher)", reports[names[0]], None),
                           (names[1], reports[names[1]], student)]))
    print(json.dumps(result, indent=1))
    (root / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

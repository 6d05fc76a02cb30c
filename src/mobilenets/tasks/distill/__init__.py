"""Distillation: train a MobileNet without labels by mimicking a teacher (the paper's Section 4
face attributes and FaceNet experiments), and the metrics that judge the student.

:mod:`~mobilenets.tasks.distill.teachers` runs teachers (our checkpoints, ONNX files, precomputed
outputs, torchvision/timm models, dlib's face embedding, the age/gender ONNX models),
:mod:`~mobilenets.tasks.distill.task` is the :class:`~mobilenets.train.tasks.Task` the training
loop runs, :mod:`~mobilenets.tasks.distill.metrics` holds verification and mean-AP metrics,
:mod:`~mobilenets.tasks.distill.celeba` reads CelebA's attribute layout (mean AP against ground
truth) and :mod:`~mobilenets.tasks.distill.tables` prints the paper's Tables 12 and 14 with our counts.
"""

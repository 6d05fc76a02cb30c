"""Training: the one loop (generic over tasks), tasks (loss + metrics + data), recipes,
optimizers and schedules, data order and resume state, distributed training."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".classify": ["train", "eval_checkpoint", "augment_for"],
    ".loop": ["fit", "train_step", "evaluate", "prepare_model", "StepContext"],
    ".options": ["TrainOptions", "TrainingDiverged"],
    ".recipes": ["Recipe", "PRESETS", "get_recipe"],
    ".tasks": ["Task", "Metrics", "ClassificationTask"],
    ".optim": ["build_optimizer", "build_scheduler", "build_ema", "param_groups"],
})

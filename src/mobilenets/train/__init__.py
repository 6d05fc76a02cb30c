"""Training: the one loop, tasks (loss + metrics), recipes, optimizers, resume, distributed."""

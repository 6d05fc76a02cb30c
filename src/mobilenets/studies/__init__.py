"""The paper's studies as commands: Figures 4-5 (``figures``), a budget picker (``pick``),
fine-grained transfer (``finetune``, Section 4.2 / Table 10) and the re-run of Tables 4-7
(``reproduce``). The names below load on first use; the four commands are functions of the
same name in the modules of the same name (``from mobilenets.studies.pick import pick``).

They live here, not under ``tasks/``: none of them is a new system with its own model or loss.
Fine-tuning is classification with another recipe and data layout (it runs ``train(init=...)``
with a :class:`~mobilenets.train.tasks.ClassificationTask` subclass); the others drive the
counter, the bench package and the training loop.
"""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".accuracy": ["Predictor", "SLIM_TOP1", "loglinear_fit", "paper_points", "slim_points", "run_points"],
    ".figures": ["figures_text"],
    ".pick": ["pick_text", "candidates", "pareto"],
    ".finetune": ["finetune_text", "FinetuneTask", "TRANSFER", "photo_dogs_layout", "stanford_dogs_folders"],
    ".reproduce": ["reproduce_text"],
})

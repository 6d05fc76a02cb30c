"""Training and evaluation data: preprocessing, transforms, image folders, the built-in digits."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".preprocess": ["Preprocessing"],
})

"""The ImageNet-1k class names that models converted from ImageNet weights carry.

The 1000 names come from torchvision (a dependency of the package), through its public weights
API: ``MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]``, ImageNet's usual order (sorted
WordNet ids), which is also the order of TF-slim's, Keras's and timm's classifiers. Nothing is
downloaded. TF-slim's 1001-way classifiers put a "background" class first.
"""

from __future__ import annotations

from functools import lru_cache

IMAGENET_CLASSES = 1000
BACKGROUND = "background"


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights  # imports torch: only when names are asked for

    names = tuple(str(c) for c in MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != IMAGENET_CLASSES:  # would mean torchvision changed its metadata
        raise RuntimeError(f"torchvision lists {len(names)} ImageNet categories, expected {IMAGENET_CLASSES}")
    return names


def imagenet_classes(background: bool = False) -> list[str]:
    """ImageNet-1k's 1000 class names in the classifiers' order; with ``background`` the 1001 of
    TF-slim's classifier ("background" at index 0)."""
    return ([BACKGROUND] if background else []) + list(_names())


def imagenet_classes_for(num_classes: int) -> list[str] | None:
    """The class names of an ImageNet classifier with ``num_classes`` outputs: the 1000 names, the
    1001 with "background" first, or None for any other count (not ImageNet-1k's classifier)."""
    if num_classes == IMAGENET_CLASSES:
        return imagenet_classes()
    if num_classes == IMAGENET_CLASSES + 1:
        return imagenet_classes(background=True)
    return None

"""Every name a package's __init__ promises (loaded lazily on first use) really exists."""

import importlib

import pytest

PACKAGES = ["mobilenets", "mobilenets.models", "mobilenets.cost", "mobilenets.data", "mobilenets.train",
            "mobilenets.weights", "mobilenets.weights.convert", "mobilenets.deploy", "mobilenets.bench"]


@pytest.mark.parametrize("package", PACKAGES)
def test_lazy_exports_resolve(package):
    module = importlib.import_module(package)
    names = [n for n in dir(module) if not n.startswith("_")]
    assert names
    for name in names:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018

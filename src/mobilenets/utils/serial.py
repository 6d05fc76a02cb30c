"""JSON round trip shared by the package's frozen config dataclasses (model config, recipe)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mobilenets.errors import MobileNetsError


class JsonDataclass:
    """``replace`` / ``to_dict`` / ``to_json`` / ``from_json`` for a frozen dataclass; the class
    supplies ``from_dict`` (its own rules for unknown and missing fields)."""

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        raise NotImplementedError

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MobileNetsError(f"{cls.__name__} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MobileNetsError(f"{cls.__name__} JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)

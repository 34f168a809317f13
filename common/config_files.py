"""Named config files and ``--set KEY=VALUE`` overrides, shared by the train and the extract configs.

Named configs live in ``configs/*.yaml`` (installed with the package as ``pipeline.configs`` and
found through :mod:`importlib.util`): :func:`config_dir`. ``--set`` strings are parsed here, once
(:func:`parse_overrides`, :func:`apply_overrides`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from common.errors import ConfigError


def config_dir() -> Path:
    """The folder of the named configs: the installed package data ``pipeline.configs`` (the
    repository's ``configs/``, mapped by pyproject.toml), or ``configs/`` of a source tree that
    was not installed."""
    spec = importlib.util.find_spec("pipeline.configs")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parent.parent / "configs"


CONFIG_DIR = config_dir()
def parse_overrides(items: Iterable[str] | None, option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--set``, or the command-line ``option`` named in errors) ->
    ``{dotted key: value parsed as YAML}``; a later one wins."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{option} {item!r}: the value is not valid YAML ({exc})") from None
    return out


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set each dotted key of ``overrides`` (``model.d_model``) in the nested mapping ``data``
    (in place; missing sections are created); ``data``."""
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data

"""The model catalog: which GGUF files make up each model, and where on the hub they live.

Repository names, file names and revisions change on the hub, so they are data
(`catalog.toml` next to this module), not code. A user file (`models.toml` in the
config directory) and then a file given with `--catalog` are merged over the built-in
catalog: a model entry replaces the entry of the same name, and the two defaults can
be changed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError

APP_NAME = "local-computer-agent"
USER_CATALOG_NAME = "models.toml"

Kind = Literal["instruct", "thinking"]
KINDS: tuple[Kind, ...] = ("instruct", "thinking")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSpec(_Entry):
    """One file of a model repository. No size, or an empty sha256, means unknown."""

    file: str
    size: int | None = Field(default=None, gt=0)
    sha256: str = ""

    @field_validator("file")
    @classmethod
    def _check_file(cls, value: str) -> str:
        # The name becomes a local path, so it must stay inside the model's directory.
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(
                f"file name {value!r} is invalid; give a plain file name such as 'model.gguf'"
            )
        return value

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _SHA256.fullmatch(value):
            raise ValueError(f"sha256 {value!r} is invalid; give 64 hex digits or leave it empty")
        return value


class CatalogModel(_Entry):
    """A model: one mmproj plus one GGUF per quantization, at a pinned revision."""

    name: str = ""
    title: str
    kind: Kind
    # Parameter count as the model name writes it, such as "8B", for `agent models pull --size`.
    parameters: str = ""
    repo: str
    revision: str = Field(min_length=1)
    default_quant: str
    mmproj: FileSpec
    quants: dict[str, FileSpec] = Field(min_length=1)

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str) -> str:
        if not _REPO.fullmatch(value):
            raise ValueError(f"repo {value!r} is invalid; write it as 'owner/name'")
        return value

    @model_validator(mode="after")
    def _check_default_quant(self) -> CatalogModel:
        if self.default_quant not in self.quants:
            raise ValueError(
                f"default_quant {self.default_quant!r} is not one of the quants: "
                f"{', '.join(self.quants)}"
            )
        return self

    @property
    def revision_pinned(self) -> bool:
        """Whether the revision is a commit hash, not a branch or tag that can move."""
        return _COMMIT.fullmatch(self.revision) is not None

    def gguf(self, quant: str | None = None) -> FileSpec:
        """Return the language-model GGUF for `quant` (the model's default when None)."""
        quant = quant or self.default_quant
        try:
            return self.quants[quant]
        except KeyError:
            raise ConfigError(
                f"quantization {quant!r} is not in the catalog for {self.name}; "
                f"use one of: {', '.join(self.quants)}"
            ) from None


class _CatalogFile(_Entry):
    default_instruct: str | None = None
    default_thinking: str | None = None
    models: dict[str, CatalogModel] = Field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """The merged catalog, with the files it was read from."""

    models: dict[str, CatalogModel]
    default_instruct: str
    default_thinking: str
    sources: tuple[Path, ...]

    def model(self, name: str) -> CatalogModel:
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(
                f"model {name!r} is not in the catalog; use one of: {', '.join(self.models)}"
            ) from None

    def default(self, kind: Kind) -> CatalogModel:
        """Return the default model of a kind."""
        return self.model(self.default_instruct if kind == "instruct" else self.default_thinking)

    def model_of_size(self, kind: Kind, parameters: str) -> CatalogModel:
        """Return the first model of a kind with this parameter count, such as "4b" or "4B"."""
        for entry in self.models.values():
            if entry.kind == kind and entry.parameters.lower() == parameters.lower():
                return entry
        sizes = sorted({entry.parameters for entry in self.models.values() if entry.kind == kind})
        raise ConfigError(
            f"the model catalog has no {kind} model of size {parameters!r}; use one of: "
            f"{', '.join(size for size in sizes if size)}"
        )


def builtin_catalog_path() -> Path:
    return Path(str(resources.files("agent.models").joinpath("catalog.toml")))


def user_catalog_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / USER_CATALOG_NAME


def load_catalog(extra: Path | None = None, *, user_file: Path | None = None) -> Catalog:
    """Load the built-in catalog, then merge the user file (if present) and `extra` over it.

    `user_file` defaults to `user_catalog_path()`. `extra` must exist, but the user file need not.
    Raises ConfigError naming the file for a missing file, bad TOML or an invalid entry.
    """
    user_file = user_file if user_file is not None else user_catalog_path()
    layers = [builtin_catalog_path()]
    if user_file.is_file():
        layers.append(user_file)
    if extra is not None:
        if not extra.is_file():
            raise ConfigError(f"model catalog {extra} not found; check the --catalog path")
        layers.append(extra)

    models: dict[str, CatalogModel] = {}
    defaults: dict[str, str] = {}
    for path in layers:
        layer = _read_layer(path)
        models.update(
            {name: entry.model_copy(update={"name": name}) for name, entry in layer.models.items()}
        )
        if layer.default_instruct:
            defaults["instruct"] = layer.default_instruct
        if layer.default_thinking:
            defaults["thinking"] = layer.default_thinking

    catalog = Catalog(
        models=models,
        default_instruct=defaults.get("instruct", ""),
        default_thinking=defaults.get("thinking", ""),
        sources=tuple(layers),
    )
    _check_defaults(catalog)
    return catalog


def _read_layer(path: Path) -> _CatalogFile:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read model catalog {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"model catalog {path} is not valid TOML: {exc}") from exc
    try:
        return _CatalogFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"model catalog {path} is invalid: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(item) for item in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _check_defaults(catalog: Catalog) -> None:
    for kind, name in (
        ("instruct", catalog.default_instruct),
        ("thinking", catalog.default_thinking),
    ):
        sources = ", ".join(str(path) for path in catalog.sources)
        if not name:
            raise ConfigError(f"no default_{kind} model is set in the model catalog ({sources})")
        entry = catalog.models.get(name)
        if entry is None:
            raise ConfigError(
                f"default_{kind} model {name!r} is not in the model catalog ({sources})"
            )
        if entry.kind != kind:
            raise ConfigError(
                f"default_{kind} model {name!r} has kind {entry.kind!r} in the model catalog "
                f"({sources})"
            )

"""Download model GGUF files from the Hugging Face hub into the local model cache.

Layout: `<models dir>/<catalog model name>/<revision>/<file name>`. A file is written
to `<file name>.part` and renamed only after its size and sha256 check out, so a file
under its final name is complete. An interrupted download keeps its `.part` file, and
the next pull resumes it with an HTTP Range request.

The hub serves each file at `GET {endpoint}/{repo}/resolve/{revision}/{file}`. For a
Git LFS file it returns a redirect to a CDN and reports the size in `X-Linked-Size`
and the sha256 in `X-Linked-Etag`. For a small file the final response carries
`Content-Length` and `ETag`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import httpx
import platformdirs
from rich.progress import Progress, TaskID

from agent.errors import ConfigError, DownloadError
from agent.models.catalog import APP_NAME, Catalog, CatalogModel, FileSpec, Kind, load_catalog

logger = logging.getLogger(__name__)

MODELS_DIR_ENV = "AGENT_MODELS_DIR"
ENDPOINT_ENV = "AGENT_HF_ENDPOINT"
DEFAULT_ENDPOINT = "https://huggingface.co"

TARGETS = ("instruct", "thinking", "all")
LOCAL_FILES_HINT = (
    "pass GGUF files you already have with --instruct-model FILE --instruct-mmproj FILE"
)

_CHUNK_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def models_dir() -> Path:
    """Return the model cache directory: $AGENT_MODELS_DIR, else the user cache directory."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir(APP_NAME)) / "models"


def check_models_dir(root: Path) -> None:
    """Raise ConfigError when `root`, or a folder above it, is a file and not a directory."""
    fix = f"pass a directory with --models-dir DIR or set {MODELS_DIR_ENV} to one"
    for path in (root, *root.parents):
        if path.is_dir():
            return
        if not path.exists():
            continue
        if path == root:
            raise ConfigError(f"the model cache directory {root} is a file, not a directory; {fix}")
        raise ConfigError(
            f"the model cache directory {root} cannot be created because {path} is a file; {fix}"
        )


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the directory {path}: {exc.strerror or exc}; pass another model "
            f"cache directory with --models-dir DIR or set {MODELS_DIR_ENV} to one"
        ) from exc


def hub_endpoint(explicit: str | None = None) -> str:
    """Return the hub URL: `explicit`, else $AGENT_HF_ENDPOINT, else huggingface.co."""
    return (explicit or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")


def format_bytes(count: int) -> str:
    """Format a byte count in decimal units, as the hub shows file sizes."""
    if count < 1000:
        return f"{count} B"
    value = count / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.2f} {unit}"
        value /= 1000
    return f"{value:.2f} GB"


def size_problem(path: Path, expected: int | None) -> str:
    """Describe how a file's size differs from `expected`, or return "" when it matches.

    An `expected` of None (a size the catalog does not give) always matches.
    """
    if expected is None:
        return ""
    actual = _file_size(path)
    if actual == expected:
        return ""
    shown_actual, shown_expected = format_bytes(actual), format_bytes(expected)
    if shown_actual == shown_expected:
        shown_actual, shown_expected = f"{actual} bytes", f"{expected} bytes"
    if actual < expected:
        return f"{path.name} is incomplete: {shown_actual} of {shown_expected}"
    return f"{path.name} has the wrong size: {shown_actual}, but the catalog gives {shown_expected}"


# --- Planning ---------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedFile:
    """One file of a pull: where it comes from and where it goes."""

    model: CatalogModel
    spec: FileSpec
    url: str
    path: Path

    @property
    def part_path(self) -> Path:
        return self.path.with_name(self.path.name + ".part")

    @property
    def installed(self) -> bool:
        """True when the file exists with the size the catalog gives, or any size if none."""
        return self.path.is_file() and not size_problem(self.path, self.spec.size)

    def remaining_bytes(self) -> int | None:
        """Bytes still to download, from the catalog size and the `.part` file, or None."""
        if self.installed:
            return 0
        if self.spec.size is None:
            return None
        return max(self.spec.size - _file_size(self.part_path), 0)


@dataclass(frozen=True)
class PullPlan:
    """The files one `agent models pull` downloads, before anything is fetched."""

    target: str
    quant: str | None
    size: str | None
    root: Path
    endpoint: str
    models: tuple[tuple[CatalogModel, str], ...]
    files: tuple[PlannedFile, ...]

    @property
    def missing(self) -> tuple[PlannedFile, ...]:
        return tuple(item for item in self.files if not item.installed)

    @property
    def download_bytes(self) -> int:
        """Bytes left to download for the files whose size the catalog gives."""
        return sum(item.remaining_bytes() or 0 for item in self.missing)

    @property
    def sizes_known(self) -> bool:
        return all(item.remaining_bytes() is not None for item in self.missing)

    @property
    def command(self) -> str:
        """The command line that runs or resumes this pull. It leaves out any --catalog option."""
        words = ["agent models pull", self.target]
        if self.size:
            words.append(f"--size {self.size}")
        if self.quant:
            words.append(f"--quant {self.quant}")
        if self.root != models_dir():
            words.append(f"--models-dir {self.root}")
        if self.endpoint != hub_endpoint():
            words.append(f"--endpoint {self.endpoint}")
        return " ".join(words)

    def summary(self) -> str:
        """Describe the models and the download size in one line, for prompts and logs."""
        names = ", ".join(f"{model.title} {quant}" for model, quant in self.models)
        if not self.missing:
            return f"{names}: already installed"
        unknown = sum(1 for item in self.missing if item.remaining_bytes() is None)
        files = f"{len(self.missing)} file{'s' if len(self.missing) > 1 else ''}"
        if unknown == len(self.missing):
            return f"{names}: {files}, size not in the catalog"
        size = f"{format_bytes(self.download_bytes)} to download"
        if unknown:
            size = f"at least {size} (the catalog gives no size for {unknown} of them)"
        return f"{names}: {files}, {size}"


def file_url(endpoint: str, repo: str, revision: str, name: str) -> str:
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/{quote(name)}"


def model_directory(root: Path, model: CatalogModel) -> Path:
    # A branch name such as refs/pr/1 must not create nested directories.
    return root / model.name / model.revision.replace("/", "--")


def plan_pull(
    catalog: Catalog,
    target: str = "instruct",
    quant: str | None = None,
    *,
    size: str | None = None,
    root: Path | None = None,
    endpoint: str | None = None,
) -> PullPlan:
    """Plan the download of `target`: instruct, thinking, all, or a catalog model name.

    `quant` applies to every selected model, and None takes each model's default_quant.
    `size` (such as "4b") picks models of that parameter count in place of the defaults.
    Raises ConfigError for an unknown target, size or quantization.
    """
    root = root if root is not None else models_dir()
    check_models_dir(root)
    endpoint = hub_endpoint(endpoint)
    selected = _select_models(catalog, target, size)
    models = tuple((model, quant or model.default_quant) for model in selected)

    files = []
    for model, model_quant in models:
        directory = model_directory(root, model)
        for spec in (model.gguf(model_quant), model.mmproj):
            url = file_url(endpoint, model.repo, model.revision, spec.file)
            files.append(PlannedFile(model, spec, url, directory / spec.file))
    return PullPlan(target, quant, size, root, endpoint, models, tuple(files))


def _select_models(catalog: Catalog, target: str, size: str | None) -> list[CatalogModel]:
    kinds: list[Kind]
    if target == "all":
        kinds = ["instruct", "thinking"]
    elif target == "instruct":
        kinds = ["instruct"]
    elif target == "thinking":
        kinds = ["thinking"]
    elif size:
        raise ConfigError(
            f"--size applies to {', '.join(TARGETS)}, not to the model name {target!r}"
        )
    else:
        return [catalog.model(target)]
    if size:
        return [catalog.model_of_size(kind, size) for kind in kinds]
    return [catalog.default(kind) for kind in kinds]


# --- Pulling ------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """File size, sha256 and commit as the hub reports them. An empty sha256 means none."""

    size: int | None
    sha256: str
    commit: str


class _TransientError(Exception):
    """A failure that a later attempt can fix: a dropped connection, HTTP 429 or 5xx."""


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def pull(
    plan: PullPlan,
    *,
    progress: Progress | None = None,
    free_bytes: Callable[[Path], int] = _free_bytes,
    max_attempts: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Path, ...]:
    """Download and verify every missing file of `plan`, and return the paths of all its files.

    The hub is asked for each file's size and hash first, so an unreachable hub, an
    outdated catalog or a full disk fail before any large transfer starts. A file whose
    connection drops is tried up to `max_attempts` times in all, resuming where it stopped,
    with waits of `backoff`, 2 x `backoff`, ... seconds in between. Raises DownloadError.
    """
    progress = progress or Progress(disable=True)
    missing = plan.missing
    if not missing:
        return tuple(item.path for item in plan.files)

    headers = {"User-Agent": APP_NAME, "Accept-Encoding": "identity"}
    with httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)) as client:
        remote = [_fetch_metadata(client, plan, item) for item in missing]
        _check_free_space(plan.root, missing, remote, free_bytes)
        for item, info in zip(missing, remote, strict=True):
            _pull_file(client, plan, item, info, progress, max_attempts, backoff, sleep)
    return tuple(item.path for item in plan.files)


def _fetch_metadata(client: httpx.Client, plan: PullPlan, item: PlannedFile) -> RemoteFile:
    """Ask the hub for a file's size, sha256 and commit, and check them against the catalog."""
    try:
        response = client.head(item.url)
        if response.is_redirect and "x-linked-size" not in response.headers:
            response = client.head(item.url, follow_redirects=True)
    except httpx.TransportError as exc:
        raise _unreachable(plan, exc) from exc
    if response.status_code >= 400:
        raise DownloadError(_http_failure(response, item))

    headers = response.headers
    size_text = headers.get("x-linked-size") or headers.get("content-length")
    etag = _strip_etag(headers.get("x-linked-etag") or headers.get("etag") or "")
    info = RemoteFile(
        size=int(size_text) if size_text and size_text.isdigit() else None,
        sha256=etag if _SHA256.fullmatch(etag) else "",
        commit=headers.get("x-repo-commit", ""),
    )
    _check_against_catalog(item, info)
    if not item.model.revision_pinned:
        logger.warning(
            "catalog model %s uses revision %r, which is not pinned; the hub resolved it to "
            "commit %s, which can replace it in the catalog",
            item.model.name,
            item.model.revision,
            info.commit or "(not reported)",
        )
    return info


def _strip_etag(value: str) -> str:
    return value.removeprefix("W/").strip('"').lower()


def _check_against_catalog(item: PlannedFile, info: RemoteFile) -> None:
    where = f"{item.spec.file} in {item.model.repo} at revision {item.model.revision}"
    fix = f"update the catalog entry {item.model.name!r} after checking the model card"
    if item.spec.size is not None and info.size is not None and item.spec.size != info.size:
        raise DownloadError(
            f"{where} is {info.size} bytes on the hub, but the catalog expects "
            f"{item.spec.size}; {fix}"
        )
    if item.spec.sha256 and info.sha256 and item.spec.sha256 != info.sha256:
        raise DownloadError(
            f"{where} has sha256 {info.sha256} on the hub, but the catalog expects "
            f"{item.spec.sha256}; {fix}"
        )


def _check_free_space(
    root: Path,
    missing: Iterable[PlannedFile],
    remote: Iterable[RemoteFile],
    free_bytes: Callable[[Path], int],
) -> None:
    needed = 0
    for item, info in zip(missing, remote, strict=True):
        size = item.spec.size or info.size
        if size is None:
            logger.warning(
                "the size of %s is unknown, so the free-space check leaves it out", item.spec.file
            )
            continue
        needed += max(size - _file_size(item.part_path), 0)

    _make_directory(root)
    free = free_bytes(root)
    if needed > free:
        raise DownloadError(
            f"not enough free disk space in {root}: the download needs {format_bytes(needed)} "
            f"and {format_bytes(free)} is free; free up space, or set {MODELS_DIR_ENV} to a "
            "directory on a disk with more room"
        )


def _pull_file(
    client: httpx.Client,
    plan: PullPlan,
    item: PlannedFile,
    info: RemoteFile,
    progress: Progress,
    max_attempts: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> None:
    size = item.spec.size or info.size
    _make_directory(item.path.parent)
    task = progress.add_task(item.spec.file, total=size, completed=_file_size(item.part_path))
    logger.info("downloading %s from %s", item.spec.file, item.url)

    for attempt in range(1, max_attempts + 1):
        try:
            _fetch_into_part(client, item, size, progress, task)
            break
        except (httpx.TransportError, _TransientError) as exc:
            received = _file_size(item.part_path)
            if attempt == max_attempts:
                raise DownloadError(
                    f"the download of {item.url} failed {_times(max_attempts)}, last with: {exc}. "
                    f"The {format_bytes(received)} received so far are kept in {item.part_path}; "
                    f"run `{plan.command}` again to resume"
                ) from exc
            delay = backoff * 2 ** (attempt - 1)
            logger.warning(
                "download of %s interrupted at %d bytes (%s); retrying in %.1f s, attempt %d of %d",
                item.spec.file,
                received,
                exc,
                delay,
                attempt + 1,
                max_attempts,
            )
            sleep(delay)

    _verify(
        plan,
        item,
        size,
        item.spec.sha256 or info.sha256,
        "the catalog" if item.spec.sha256 else "the hub",
    )
    item.part_path.replace(item.path)
    logger.info("installed %s", item.path)


def _fetch_into_part(
    client: httpx.Client, item: PlannedFile, size: int | None, progress: Progress, task: TaskID
) -> None:
    """Append the rest of the file to its `.part` file, or start over if Range is ignored."""
    part = item.part_path
    offset = _file_size(part)
    if size is not None and offset > size:
        logger.warning("%s is larger than the file; starting over", part)
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return

    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", item.url, headers=headers, follow_redirects=True) as response:
        if not _accept_range_response(response, item, offset):
            return
        mode = "ab" if response.status_code == 206 else "wb"
        if mode == "wb" and offset:
            logger.info(
                "the server ignored the Range request for %s; downloading from the start",
                item.spec.file,
            )
        progress.update(task, completed=offset if mode == "ab" else 0)
        with part.open(mode) as out:
            # No chunk size, because httpx would buffer up to it and a dropped connection
            # would lose the buffer.
            for chunk in response.iter_raw():
                out.write(chunk)
                progress.advance(task, len(chunk))

    received = _file_size(part)
    if size is not None and received < size:
        raise _TransientError(f"the connection closed after {received} of {size} bytes")


def _accept_range_response(response: httpx.Response, item: PlannedFile, offset: int) -> bool:
    """Check a GET response, and return False if the `.part` file already is the whole file."""
    status = response.status_code
    if status == 416 and offset:
        total = response.headers.get("content-range", "").rpartition("/")[2]
        if total == str(offset):
            return False
        item.part_path.unlink()
        raise _TransientError(f"the server rejected the resume at byte {offset}; starting over")
    if status in _RETRY_STATUSES:
        raise _TransientError(f"HTTP {status} from {response.url}")
    if status >= 400:
        response.read()
        raise DownloadError(_http_failure(response, item))
    if status == 206 and not response.headers.get("content-range", "").startswith(
        f"bytes {offset}-"
    ):
        item.part_path.unlink(missing_ok=True)
        raise _TransientError(
            f"the server sent a different byte range than requested from byte {offset}"
        )
    return True


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _verify(plan: PullPlan, item: PlannedFile, size: int | None, sha256: str, source: str) -> None:
    part = item.part_path
    actual_size = _file_size(part)
    if size is not None and actual_size != size:
        part.unlink()
        raise DownloadError(
            f"{item.spec.file} is {actual_size} bytes, but {size} were expected; the partial file "
            f"was deleted, run `{plan.command}` again"
        )
    if not sha256:
        logger.warning("no sha256 is known for %s; only its size was checked", item.spec.file)
        return

    actual = _sha256_of(part)
    if actual != sha256:
        part.unlink()
        raise DownloadError(
            f"the sha256 of {item.spec.file} is {actual}, but {source} gives {sha256}; the "
            f"file was deleted. Run `{plan.command}` again, and if the hash differs again, "
            f"check the catalog entry {item.model.name!r} against the model card"
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _file_size(path: Path) -> int:
    """Return the size of a file in bytes, or 0 when it or a folder on its path is missing."""
    try:
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _unreachable(plan: PullPlan, exc: Exception) -> DownloadError:
    return DownloadError(
        f"cannot reach the model hub at {plan.endpoint} ({str(exc) or type(exc).__name__}). "
        f"Connect to the internet and run `{plan.command}` again, set {ENDPOINT_ENV} to a "
        f"reachable mirror, or {LOCAL_FILES_HINT}"
    )


def _http_failure(response: httpx.Response, item: PlannedFile) -> str:
    message = f"{response.request.method} {response.url} failed with HTTP {response.status_code}"
    if response.status_code == 404:
        return (
            f"{message}: {item.spec.file} was not found in {item.model.repo} at revision "
            f"{item.model.revision}; check the catalog entry {item.model.name!r} against the "
            "model card"
        )
    if response.status_code in (401, 403):
        return f"{message}: the hub refused access, and `agent models pull` sends no access token"
    return message


# --- Installed models ---------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    """A catalog model whose GGUF for one quantization and whose mmproj are both on disk."""

    model: CatalogModel
    quant: str
    gguf: Path
    mmproj: Path
    # How the files' sizes differ from the catalog's, one line per file, or empty when they match.
    problems: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def size_bytes(self) -> int:
        return _file_size(self.gguf) + _file_size(self.mmproj)


class DefaultModelPaths(NamedTuple):
    """The GGUF and mmproj files `agent run` loads; the Thinking pair is None when not installed."""

    instruct_gguf: Path
    instruct_mmproj: Path
    thinking_gguf: Path | None
    thinking_mmproj: Path | None


def installed_models(
    catalog: Catalog | None = None, root: Path | None = None
) -> list[InstalledModel]:
    """List the complete models in the cache, in catalog order, default quantization first."""
    return [entry for entry in cached_models(catalog, root) if entry.complete]


def cached_models(catalog: Catalog | None = None, root: Path | None = None) -> list[InstalledModel]:
    """List the models whose two files are in the cache, including files of the wrong size.

    The order is that of `installed_models`. Raises ConfigError when `root` is not a directory.
    """
    catalog = catalog or load_catalog()
    root = root if root is not None else models_dir()
    check_models_dir(root)
    found = []
    for model in catalog.models.values():
        directory = model_directory(root, model)
        mmproj = directory / model.mmproj.file
        if not mmproj.is_file():
            continue
        for quant in _quants_default_first(model):
            spec = model.quants[quant]
            gguf = directory / spec.file
            if not gguf.is_file():
                continue
            problems = (size_problem(gguf, spec.size), size_problem(mmproj, model.mmproj.size))
            found.append(
                InstalledModel(model, quant, gguf, mmproj, tuple(text for text in problems if text))
            )
    return found


def _quants_default_first(model: CatalogModel) -> list[str]:
    return [model.default_quant, *(quant for quant in model.quants if quant != model.default_quant)]


def default_model_paths(
    catalog: Catalog | None = None, root: Path | None = None
) -> DefaultModelPaths | None:
    """Return the installed model files to run with, or None when no Instruct model is installed.

    For each kind this prefers the catalog's default model, then any other installed model
    of that kind (a smaller one pulled by name), in catalog order.
    """
    catalog = catalog or load_catalog()
    installed = installed_models(catalog, root)
    instruct = _pick(installed, catalog, "instruct")
    if instruct is None:
        return None
    thinking = _pick(installed, catalog, "thinking")
    return DefaultModelPaths(
        instruct.gguf,
        instruct.mmproj,
        thinking.gguf if thinking else None,
        thinking.mmproj if thinking else None,
    )


def _pick(installed: list[InstalledModel], catalog: Catalog, kind: Kind) -> InstalledModel | None:
    default_name = catalog.default(kind).name
    candidates = [entry for entry in installed if entry.model.kind == kind]
    preferred = [entry for entry in candidates if entry.model.name == default_name]
    ranked = preferred + candidates
    return ranked[0] if ranked else None


def missing_models_error(catalog: Catalog | None = None, root: Path | None = None) -> DownloadError:
    """Build the error `agent run` raises when no Instruct model is installed and none was given."""
    catalog = catalog or load_catalog()
    plan = plan_pull(catalog, "instruct", root=root)
    problems = [
        problem
        for entry in cached_models(catalog, plan.root)
        if entry.model.kind == "instruct"
        for problem in entry.problems
    ]
    found = f" ({'; '.join(problems)})" if problems else ""
    return DownloadError(
        f"no Instruct model is installed in {plan.root}{found}. Run `{plan.command}` to download "
        f"{plan.summary()}, or {LOCAL_FILES_HINT}"
    )

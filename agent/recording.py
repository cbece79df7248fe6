"""Write and read run recordings: one self-contained directory per run.

    REC/
      manifest.json        task, models and their SHA-256, settings, executor, screen,
                           versions, outcome
      steps.jsonl          one JSON object per finished step, appended in order
      screenshots/         step-0001.png, step-0002.png, ... (the screenshot each step decided on)
      images/              any other image a prompt held (none in the current loop)

`docs/recording-format.md` documents every field.

Durability: a background thread does the writing, so PNG encoding and fsync stay off
the loop's critical path. For each step it writes the screenshot (to a temporary
name, fsync, rename), then appends the step's line and fsyncs `steps.jsonl`. A line
therefore never refers to a missing file, and a run killed at any moment leaves a
valid recording up to the last step whose line was written. A reader ignores a
final line cut off mid-write. The manifest is replaced atomically each time it
changes.

Secrets: every string of the manifest and of each step passes through
`Secrets.redact` before it is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import queue
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from agent.actions import Action, parse_action
from agent.approval import Verdict
from agent.errors import InvalidReplyError, RecordingError
from agent.models.base import ChatRequest, ImagePart, Message, ModelReply
from agent.safety import Secrets
from agent.steps import ModelCall, RunOutcome, StepRecord

logger = logging.getLogger(__name__)

FORMAT_NAME = "local-computer-agent recording"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STEPS = "steps.jsonl"
SCREENSHOTS = "screenshots"
# Step fields that hold file names or enum values, left as written when secrets are redacted.
_KEPT_KEYS = frozenset({"screenshot", "path", "outcome", "decider", "role", "slot", "status"})
IMAGES = "images"


def screenshot_name(step: int) -> str:
    return f"{SCREENSHOTS}/step-{step:04d}.png"


@dataclass(frozen=True)
class ModelFiles:
    """A configured model: its name and, for GGUF models, the files it loads."""

    name: str
    path: Path | None = None
    mmproj: Path | None = None


class NullRecorder:
    """A recorder that keeps nothing, for callers that do not want a recording."""

    def begin(self, task: str, settings: dict[str, Any]) -> None:
        pass

    def record_step(self, record: StepRecord) -> None:
        pass

    def finish(self, outcome: RunOutcome) -> None:
        pass


class _Final:
    """A writer job that runs even after an earlier job failed."""

    def __init__(self, job: Callable[[], None]) -> None:
        self._job = job

    def __call__(self) -> None:
        self._job()


class Recorder:
    """Writes one run into a recording directory from a background thread."""

    def __init__(
        self,
        directory: Path,
        *,
        models: Mapping[str, ModelFiles] | None = None,
        executor: Mapping[str, Any] | None = None,
        secrets: Secrets | None = None,
        labels: tuple[str, ...] = (),
        hash_cache: Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._models = dict(models or {})
        self._executor = dict(executor or {})
        self._secrets = secrets or Secrets()
        self._labels = labels
        self._hash_cache = hash_cache
        self._manifest: dict[str, Any] = {}
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._hasher: threading.Thread | None = None
        self._error: BaseException | None = None
        self._steps_file: Any = None

    # The StepRecorder protocol.

    def begin(self, task: str, settings: dict[str, Any]) -> None:
        """Create the directory and manifest, and start the writer and model-hashing threads."""
        self._prepare_directory()
        self._manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "task": task,
            "created_at": _now(),
            "labels": list(self._labels),
            "models": {slot: _model_entry(files) for slot, files in self._models.items()},
            "settings": settings,
            "executor": self._executor,
            "secret_names": list(self._secrets.names),
            "screen": None,
            "versions": versions(),
            "outcome": None,
            "finished_at": None,
        }
        self._write_manifest()
        self._steps_file = open(self.directory / STEPS, "a", encoding="utf-8")  # noqa: SIM115
        self._thread = threading.Thread(target=self._work, name="recording-writer", daemon=True)
        self._thread.start()
        if any(files.path for files in self._models.values()):
            self._hasher = threading.Thread(
                target=self._hash_models, name="recording-hasher", daemon=True
            )
            self._hasher.start()
        logger.info("recording to %s", self.directory)

    def record_step(self, record: StepRecord) -> None:
        """Queue one step for writing and return at once."""
        self._raise_writer_error()
        self._jobs.put(lambda: self._write_step(record))

    def finish(self, outcome: RunOutcome) -> None:
        """Write the outcome into the manifest and wait until everything is on disk."""
        if self._hasher is not None:
            self._hasher.join()
        # The outcome is written even after a failed step write, so the manifest says how
        # the run ended; `close` then raises the step's error.
        self._jobs.put(_Final(lambda: self._write_outcome(outcome)))
        self.close()

    # Lifecycle.

    def flush(self) -> None:
        """Wait until every queued step is written."""
        self._jobs.join()
        self._raise_writer_error()

    def close(self) -> None:
        """Stop the writer thread after it wrote everything queued."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._steps_file is not None:
            self._steps_file.close()
            self._steps_file = None
        self._raise_writer_error()

    def _prepare_directory(self) -> None:
        if (self.directory / STEPS).exists() or (self.directory / MANIFEST).exists():
            raise RecordingError(
                f"{self.directory} already contains a recording; "
                "choose a new directory with --record"
            )
        try:
            (self.directory / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(
                f"cannot create the recording directory {self.directory}: {exc}"
            ) from exc

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise RecordingError(
                f"writing the recording in {self.directory} failed: {self._error}"
            ) from self._error

    # The writer thread.

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None or isinstance(job, _Final):
                    job()
            except Exception as exc:
                logger.error("writing the recording in %s failed: %s", self.directory, exc)
                self._error = self._error or exc
            finally:
                self._jobs.task_done()

    def _write_step(self, record: StepRecord) -> None:
        _write_png(record.observation.image, self.directory / screenshot_name(record.step))
        extra_images = _ImageNames(record, self.directory)
        line = self._secrets.redact_value(step_to_json(record, extra_images.name), _KEPT_KEYS)
        self._steps_file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._steps_file.flush()
        os.fsync(self._steps_file.fileno())
        if self._manifest["screen"] is None:
            self._manifest["screen"] = _geometry_json(record)
            self._write_manifest()

    def _write_outcome(self, outcome: RunOutcome) -> None:
        self._manifest["outcome"] = outcome.as_dict()
        self._manifest["finished_at"] = _now()
        self._write_manifest()

    def _write_manifest(self) -> None:
        data = self._secrets.redact_value(self._manifest)
        _write_atomic(
            self.directory / MANIFEST, json.dumps(data, indent=2, ensure_ascii=False).encode()
        )

    def _hash_models(self) -> None:
        """Fill in each model file's SHA-256, then queue a manifest update."""
        cache = HashCache(self._hash_cache)
        hashes = {slot: _hash_entry(files, cache) for slot, files in self._models.items()}
        cache.save()
        self._jobs.put(lambda: self._set_model_hashes(hashes))

    def _set_model_hashes(self, hashes: dict[str, dict[str, str | None]]) -> None:
        for slot, entry in hashes.items():
            self._manifest["models"][slot].update(entry)
        self._write_manifest()


class _ImageNames:
    """Names the images of a step's prompts: screenshots by step, others as extra files."""

    def __init__(self, record: StepRecord, directory: Path) -> None:
        self._steps = record.prompt_images
        self._record_step = record.step
        self._directory = directory
        self._extra: dict[int, str] = {}

    def name(self, image: Image.Image) -> str:
        step = self._steps.get(id(image))
        if step is not None:
            return screenshot_name(step)
        if id(image) not in self._extra:
            name = f"{IMAGES}/step-{self._record_step:04d}-{len(self._extra) + 1}.png"
            (self._directory / IMAGES).mkdir(exist_ok=True)
            _write_png(image, self._directory / name)
            self._extra[id(image)] = name
        return self._extra[id(image)]


# Serialising a step.


def step_to_json(record: StepRecord, image_name: Callable[[Image.Image], str]) -> dict[str, Any]:
    """Turn a step record into the JSON object of one `steps.jsonl` line."""
    decision = record.decision
    result = record.result
    return {
        "step": record.step,
        "started_at": record.started_at,
        "screenshot": screenshot_name(record.step),
        "screen": _geometry_json(record),
        "extras": dict(record.observation.extras),
        "screen_hash": record.screen_hash,
        "screen_changed": record.screen_changed,
        "outcome": str(record.outcome),
        "decider": str(record.decider) if record.decider else None,
        "calls": [_call_json(call, image_name) for call in record.calls],
        "instruction": record.instruction,
        "reasoning": record.reasoning,
        "proposed": record.proposed.arguments() if record.proposed else None,
        "action": record.action.arguments() if record.action else None,
        "point": list(record.point) if record.point else None,
        "risk": record.risk,
        "approval": None
        if decision is None
        else {
            "verdict": str(decision.verdict),
            "source": decision.source,
            "hint": decision.hint,
            "action": decision.action.arguments() if decision.action else None,
        },
        "result": None
        if result is None
        else {
            "ok": result.ok,
            "reason": result.reason,
            "point": list(result.point) if result.point else None,
            "new_page": result.new_page,
            "extras": dict(result.extras),
        },
        "feedback": record.feedback,
        "timings": {key: round(value, 6) for key, value in record.timings.items()},
    }


def _geometry_json(record: StepRecord) -> dict[str, float]:
    geometry = record.observation.geometry
    return {
        "width": geometry.width,
        "height": geometry.height,
        "scale": geometry.scale,
        "origin_x": geometry.origin_x,
        "origin_y": geometry.origin_y,
    }


def _call_json(call: ModelCall, image_name: Callable[[Image.Image], str]) -> dict[str, Any]:
    return {
        "role": str(call.role),
        "slot": str(call.slot),
        "model": call.model,
        "status": call.status,
        "error": call.error,
        "seconds": round(call.seconds, 6),
        "parse_seconds": round(call.parse_seconds, 6),
        "request": _request_json(call.request),
        "prompt": [_message_json(message, image_name) for message in call.request.messages],
        "reply": _reply_json(call.reply),
    }


def _request_json(request: ChatRequest) -> dict[str, Any]:
    return {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "constrain_tool_call": request.constrain_tool_call,
        "reasoning_budget": request.reasoning_budget,
        "seed": request.seed,
    }


def _message_json(message: Message, image_name: Callable[[Image.Image], str]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, ImagePart):
            parts.append({"type": "image", "path": image_name(part.image)})
        else:
            parts.append({"type": "text", "text": part.text})
    return {"role": message.role, "content": parts}


def _reply_json(reply: ModelReply) -> dict[str, Any]:
    usage = reply.usage
    return {
        "text": reply.text,
        "reasoning": reply.reasoning,
        "content": reply.content,
        "finish_reason": reply.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "image_tokens": usage.image_tokens,
            "evaluated_tokens": usage.evaluated_tokens,
        },
        "timings": dict(reply.timings),
    }


# Files.


def _write_png(image: Image.Image, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        image.save(handle, format="PNG")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# Manifest facts.


def versions() -> dict[str, str | None]:
    """Return the versions that can change a run's behaviour."""
    return {
        "agent": _package_version("local-computer-agent"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "llama_cpp_python": _package_version("llama_cpp_python"),
        "playwright": _package_version("playwright"),
        "pillow": _package_version("pillow"),
        "miniwob": _package_version("miniwob"),
        "executable": sys.executable,
    }


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _model_entry(files: ModelFiles) -> dict[str, Any]:
    return {
        "name": files.name,
        "path": str(files.path) if files.path else None,
        "mmproj": str(files.mmproj) if files.mmproj else None,
        "size": _size(files.path),
        "mmproj_size": _size(files.mmproj),
        "sha256": None,
        "mmproj_sha256": None,
    }


def _hash_entry(files: ModelFiles, cache: HashCache) -> dict[str, str | None]:
    return {
        "sha256": cache.sha256(files.path) if files.path else None,
        "mmproj_sha256": cache.sha256(files.mmproj) if files.mmproj else None,
    }


def _size(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return path.stat().st_size
    except OSError:
        return None


class HashCache:
    """SHA-256 of files, remembered by path, size and modification time.

    Hashing an 8B model's GGUF reads several gigabytes; the cache makes that a one-time
    cost per file. Without a cache path, every run hashes again.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._entries: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                self._entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("ignoring the unreadable hash cache %s: %s", path, exc)

    def sha256(self, path: Path) -> str | None:
        try:
            stat = path.stat()
        except OSError as exc:
            logger.warning("cannot hash the model file %s: %s", path, exc)
            return None
        key = str(path.resolve())
        entry = self._entries.get(key)
        if (
            entry
            and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
        ):
            return str(entry["sha256"])
        try:
            digest = _file_sha256(path)
        except OSError as exc:
            logger.warning("cannot hash the model file %s: %s", path, exc)
            return None
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        return digest

    def save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(self._path, json.dumps(self._entries, indent=1).encode())
        except OSError as exc:
            logger.warning("cannot save the hash cache %s: %s", self._path, exc)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# Reading.


@dataclass(frozen=True)
class RecordedCall:
    """One model call as recorded."""

    role: str
    slot: str
    model: str
    status: str
    reply_text: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class RecordedStep:
    """One step as recorded; `raw` is its JSON object."""

    step: int
    outcome: str
    screenshot: Path
    action: Action | None
    point: tuple[int, int] | None
    calls: tuple[RecordedCall, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def decision(self) -> dict[str, Any] | None:
        value = self.raw.get("approval")
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Recording:
    """A recording read back from disk."""

    path: Path
    manifest: dict[str, Any]
    steps: tuple[RecordedStep, ...]
    # True when the last line of steps.jsonl was cut off and ignored.
    truncated: bool = False

    @classmethod
    def open(cls, path: str | Path) -> Recording:
        """Read a recording directory. Raises `RecordingError` when it is not a valid recording."""
        directory = Path(path)
        manifest = _read_manifest(directory)
        lines, truncated = _read_step_lines(directory / STEPS)
        steps = tuple(
            _recorded_step(directory, number, data) for number, data in enumerate(lines, 1)
        )
        return cls(directory, manifest, steps, truncated)

    @property
    def task(self) -> str:
        return str(self.manifest.get("task", ""))

    @property
    def finished(self) -> bool:
        return self.manifest.get("outcome") is not None

    @property
    def complete(self) -> bool:
        """True when the run wrote its outcome and no step line was cut off."""
        return self.finished and not self.truncated

    def replies(self, slot: str) -> list[str]:
        """Return the raw reply texts of one model slot ("instruct" or "thinking") in order."""
        return [call.reply_text for step in self.steps for call in step.calls if call.slot == slot]


# Manifest keys and the JSON types a reader accepts for them. Null is accepted only where listed.
_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "labels": (list,),
    "models": (dict,),
    "settings": (dict,),
    "executor": (dict,),
    "secret_names": (list,),
    "screen": (dict, type(None)),
    "versions": (dict,),
    "outcome": (dict, type(None)),
}


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    hint = "give a recording directory that `agent run` wrote"
    if not directory.exists():
        raise RecordingError(f"recording {directory} not found; {hint}")
    if not directory.is_dir():
        raise RecordingError(f"{directory} is a file, not a recording directory; {hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecordingError(
            f"{directory} is not a recording: {MANIFEST} is missing; {hint}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise RecordingError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise RecordingError(f"{path} is not a manifest of a {FORMAT_NAME}")
    if manifest.get("version") != FORMAT_VERSION:
        raise RecordingError(
            f"{path} has format version {manifest.get('version')!r}, but this agent reads version "
            f"{FORMAT_VERSION}; use the agent version that wrote it"
        )
    for key, types in _MANIFEST_TYPES.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise RecordingError(
                f"{path} is invalid: {key!r} must be {_type_names(types)}, "
                f"found {_show_value(manifest[key])}"
            )
    names = manifest.get("secret_names", [])
    if not all(isinstance(name, str) for name in names):
        raise RecordingError(f"{path} is invalid: 'secret_names' must be a list of strings")
    for slot, entry in manifest.get("models", {}).items():
        if not isinstance(entry, dict):
            raise RecordingError(
                f"{path} is invalid: models {slot!r} must be an object, found {_show_value(entry)}"
            )
    return manifest


def _read_step_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Return the step objects, ignoring a last line that a killed run left unfinished."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], False
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"cannot read {path}: {exc}") from exc
    lines = text.split("\n")
    tail = lines.pop()  # the text after the last newline: empty unless a write was cut off
    steps: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise RecordingError(f"{path} line {number} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RecordingError(
                f"{path} line {number} is not a step: expected a JSON object, "
                f"found {_show_value(data)}"
            )
        steps.append(data)
    if tail:
        logger.warning("ignoring the unfinished last line of %s", path)
    return steps, bool(tail)


def _recorded_step(directory: Path, expected: int, data: dict[str, Any]) -> RecordedStep:
    """Check one step object's fields that readers rely on, and build its `RecordedStep`.

    Every error names the file and line, which is also the step number.
    """
    where = f"{directory / STEPS} line {expected}"
    number = data.get("step")
    if type(number) is not int or number != expected:
        raise RecordingError(
            f"{where} contains step {_show_value(number)} where step {expected} belongs"
        )
    outcome = data.get("outcome", "")
    if not isinstance(outcome, str):
        raise RecordingError(f"{where}: 'outcome' must be a string, found {_show_value(outcome)}")
    calls = data.get("calls", [])
    if not isinstance(calls, list):
        raise RecordingError(f"{where}: 'calls' must be a list, found {_show_value(calls)}")
    timings = data.get("timings", {})
    if not isinstance(timings, dict) or not all(_is_number(value) for value in timings.values()):
        raise RecordingError(
            f"{where}: 'timings' must map phases to seconds, found {_show_value(timings)}"
        )
    _check_approval(data.get("approval"), where)
    return RecordedStep(
        step=expected,
        outcome=outcome,
        screenshot=_screenshot_path(
            directory, data.get("screenshot", screenshot_name(expected)), where
        ),
        action=_action_or_none(data.get("action"), where, "action"),
        point=_point_or_none(data.get("point"), where),
        calls=tuple(_recorded_call(call, where, index) for index, call in enumerate(calls, 1)),
        raw=data,
    )


def _recorded_call(call: Any, where: str, index: int) -> RecordedCall:
    where = f"{where}, call {index}"
    if not isinstance(call, dict):
        raise RecordingError(f"{where}: expected a JSON object, found {_show_value(call)}")
    for key in ("role", "slot", "model", "status"):
        if not isinstance(call.get(key, ""), str):
            raise RecordingError(
                f"{where}: {key!r} must be a string, found {_show_value(call[key])}"
            )
    if not _is_number(call.get("seconds", 0)):
        raise RecordingError(
            f"{where}: 'seconds' must be a number, found {_show_value(call['seconds'])}"
        )
    reply = call.get("reply", {})
    if not isinstance(reply, dict):
        raise RecordingError(f"{where}: 'reply' must be an object, found {_show_value(reply)}")
    for key in ("text", "reasoning", "content", "finish_reason"):
        if not isinstance(reply.get(key, ""), str):
            raise RecordingError(
                f"{where}: reply {key!r} must be a string, found {_show_value(reply[key])}"
            )
    usage = reply.get("usage", {})
    if not isinstance(usage, dict) or not all(
        value is None or (type(value) is int and value >= 0) for value in usage.values()
    ):
        raise RecordingError(
            f"{where}: reply 'usage' must map names to token counts, found {_show_value(usage)}"
        )
    return RecordedCall(
        role=call.get("role", ""),
        slot=call.get("slot", ""),
        model=call.get("model", ""),
        status=call.get("status", ""),
        reply_text=reply.get("text", ""),
        raw=call,
    )


def _screenshot_path(directory: Path, value: Any, where: str) -> Path:
    """Return the screenshot's path, which must stay inside the recording directory."""
    if not isinstance(value, str) or not value:
        raise RecordingError(
            f"{where}: 'screenshot' must be a path relative to the recording, "
            f"found {_show_value(value)}"
        )
    relative = Path(value)
    if relative.is_absolute() or ".." in relative.parts:
        raise RecordingError(
            f"{where}: 'screenshot' {value!r} points outside the recording; "
            "it must be a path relative to the recording directory"
        )
    return directory / relative


def _point_or_none(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(map(_is_number, value)):
        raise RecordingError(
            f"{where}: 'point' must be null or [x, y] with two numbers, found {_show_value(value)}"
        )
    return int(value[0]), int(value[1])


def _check_approval(value: Any, where: str) -> None:
    """Check the recorded approval decision that `agent replay` serves again."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise RecordingError(
            f"{where}: 'approval' must be null or an object, found {_show_value(value)}"
        )
    verdicts = [str(verdict) for verdict in Verdict]
    if value.get("verdict") not in verdicts:
        raise RecordingError(
            f"{where}: approval 'verdict' must be one of {', '.join(verdicts)}, "
            f"found {_show_value(value.get('verdict'))}"
        )
    if not isinstance(value.get("hint", ""), str):
        raise RecordingError(
            f"{where}: approval 'hint' must be a string, found {_show_value(value['hint'])}"
        )
    _action_or_none(value.get("action"), where, "approval action")


def _action_or_none(arguments: Any, where: str, name: str) -> Action | None:
    if arguments is None:
        return None
    try:
        return parse_action(arguments)
    except InvalidReplyError as exc:
        raise RecordingError(f"{where} contains an invalid {name}: {exc}") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _type_names(types: tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return " or ".join(names[kind] for kind in types)


def _show_value(value: Any) -> str:
    """Return a short JSON rendering of a value for an error message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."

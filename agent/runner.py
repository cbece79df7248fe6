"""Build everything one run needs from a `RunConfig`, then run the loop.

`run_agent` is the one entry point that `agent run`, `agent replay` and the TUI
share: it loads the models, starts the executor (and a MiniWoB++ episode when asked),
opens the recording, and runs `AgentLoop`. The caller passes the approval hook and
the `RunControl`, so the same function serves a terminal prompt, `--yes` and the TUI,
which calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import platformdirs

from agent.approval import ApprovalHook
from agent.control import RunControl
from agent.deciding import Models
from agent.errors import ConfigError
from agent.loop import AgentLoop, EventSink, LoopSettings
from agent.models.base import ChatModel
from agent.recording import ModelFiles, Recorder
from agent.safety import Secrets
from agent.steps import Mode, RunOutcome
from executors.base import Executor

logger = logging.getLogger(__name__)

APP_NAME = "local-computer-agent"
RUNS_DIR_ENV = "AGENT_RUNS_DIR"
EXECUTOR_KINDS = ("browser", "desktop")
ENVIRONMENTS = {
    "browser": "a web page in a Chromium browser",
    "desktop": "an X11 desktop",
}


@dataclass(frozen=True)
class ExecutorSpec:
    """The executor to start and its options, recorded so that replay can start it again."""

    kind: str = "browser"
    url: str = "about:blank"
    viewport: tuple[int, int] = (1280, 800)
    device_scale_factor: float = 1.0
    headless: bool = True
    browser_path: str | None = None
    # The desktop monitor to capture, numbered from 1 as mss does; None is the primary.
    monitor: int | None = None
    miniwob_task: str | None = None
    miniwob_seed: int = 0
    # Shell-style URL patterns the browser may load; empty allows every URL.
    allowed_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in EXECUTOR_KINDS:
            raise ConfigError(
                f"executor {self.kind!r} is unknown; use one of: {', '.join(EXECUTOR_KINDS)}"
            )
        if self.miniwob_task is not None and self.kind != "browser":
            raise ConfigError(
                f"MiniWoB++ tasks run in the browser executor, not {self.kind!r}; "
                "choose the browser executor"
            )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["viewport"] = list(self.viewport)
        data["allowed_urls"] = list(self.allowed_urls)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutorSpec:
        """Rebuild a spec from a manifest's `executor` object, ignoring keys it does not know."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "viewport" in known:
            known["viewport"] = tuple(known["viewport"])
        if "allowed_urls" in known:
            known["allowed_urls"] = tuple(known["allowed_urls"])
        return cls(**known)


@dataclass(frozen=True)
class ModelSpec:
    """One GGUF model and its mmproj (vision projector) file."""

    model: Path
    mmproj: Path


@dataclass(frozen=True)
class ServerSpec:
    """An OpenAI-compatible server that serves the models in place of local GGUF files."""

    base_url: str
    instruct_model: str
    thinking_model: str | None = None
    # Name of the environment variable holding the API key; the key itself is never stored.
    api_key_env: str | None = None


@dataclass(frozen=True)
class RuntimeOptions:
    """Options for loading the models with llama.cpp."""

    n_ctx: int = 16384
    # Layers offloaded to the GPU: -1 offloads all, 0 runs on the CPU only.
    gpu_layers: int = -1
    threads: int | None = None
    kv_cache_type: str = "f16"
    seed: int | None = None
    # Image-token budget per screenshot; Qwen-VL grounding needs about 1,024 or more.
    image_min_tokens: int = 1024
    image_max_tokens: int = 2048


@dataclass(frozen=True)
class RunConfig:
    """Everything `run_agent` needs, as plain data."""

    task: str
    record_dir: Path
    instruct: ModelSpec | None = None
    thinking: ModelSpec | None = None
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    settings: LoopSettings = field(default_factory=LoopSettings)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    server: ServerSpec | None = None
    # Secret values by name; kept out of repr so they never reach a log line.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    labels: tuple[str, ...] = ()


def runs_dir() -> Path:
    """Return the folder of default recordings: $AGENT_RUNS_DIR, else the user data folder."""
    configured = os.environ.get(RUNS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "runs"


def default_record_dir(task: str, now: datetime | None = None) -> Path:
    """Return a new timestamped recording directory under `runs_dir()`."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")[:40] or "run"
    return runs_dir() / f"{stamp}-{slug}"


def run_agent(
    config: RunConfig,
    approval_hook: ApprovalHook,
    control: RunControl,
    on_event: EventSink | None = None,
    *,
    models: Models | None = None,
) -> RunOutcome:
    """Run one task from start to finish and return how it ended.

    Loads the configured models unless `models` is given (replay passes recorded ones),
    starts the executor, and always leaves a recording in `config.record_dir`. Raises
    `ConfigError`, `ModelError` or `ExecutorError` when the run cannot start.
    """
    secrets = Secrets(config.secrets)
    with contextlib.ExitStack() as stack:
        if models is None:
            models = load_models(config, stack)
        executor = stack.enter_context(_executor_context(config.executor))
        task, evaluate = _prepare_target(config, executor)
        recorder = Recorder(
            config.record_dir,
            models=_model_files(config, models),
            executor=config.executor.as_dict(),
            secrets=secrets,
            labels=config.labels,
            hash_cache=runs_dir() / "model-hashes.json",
        )
        loop = AgentLoop(
            models=models,
            executor=executor,
            approval=approval_hook,
            recorder=recorder,
            control=control,
            settings=config.settings,
            secrets=secrets,
            on_event=on_event,
            evaluate=evaluate,
        )
        return loop.run(task)
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions here


def load_models(config: RunConfig, stack: contextlib.ExitStack) -> Models:
    """Load the configured GGUF models with llama.cpp; `stack` closes them after the run."""
    if config.server is not None:
        return server_models(config.server, config.settings.mode)
    if config.instruct is None:
        raise ConfigError(
            "no Instruct model is configured; pass --instruct-model and --instruct-mmproj"
        )
    if config.settings.mode is not Mode.SINGLE and config.thinking is None:
        raise ConfigError(
            f"mode {config.settings.mode} needs a Thinking model; pass --thinking-model and "
            "--thinking-mmproj, or use --mode single"
        )
    from agent.models.llama import LlamaCppModel  # loads llama.cpp's library only when needed

    def load(spec: ModelSpec, thinking: bool) -> ChatModel:
        model = LlamaCppModel(
            spec.model,
            spec.mmproj,
            thinking=thinking,
            n_ctx=config.runtime.n_ctx,
            n_gpu_layers=config.runtime.gpu_layers,
            n_threads=config.runtime.threads,
            kv_cache_type=config.runtime.kv_cache_type,
            seed=config.runtime.seed,
            image_min_tokens=config.runtime.image_min_tokens,
            image_max_tokens=config.runtime.image_max_tokens,
        )
        stack.callback(model.close)
        return model

    instruct = load(config.instruct, thinking=False)
    thinking = (
        load(config.thinking, thinking=True)
        if config.thinking and config.settings.mode is not Mode.SINGLE
        else None
    )
    return Models(instruct, thinking)


def server_models(server: ServerSpec, mode: Mode) -> Models:
    """Connect to the models an OpenAI-compatible server serves."""
    from agent.models.http import OpenAICompatibleModel

    api_key = os.environ.get(server.api_key_env) if server.api_key_env else None
    if server.api_key_env and api_key is None:
        raise ConfigError(
            f"the environment variable {server.api_key_env} is not set; export the API key "
            "there or drop --api-key-env"
        )
    instruct = OpenAICompatibleModel(server.base_url, server.instruct_model, api_key=api_key)
    if mode is Mode.SINGLE or server.thinking_model is None:
        return Models(instruct, None)
    thinking = OpenAICompatibleModel(server.base_url, server.thinking_model, api_key=api_key)
    return Models(instruct, thinking)


@contextlib.contextmanager
def _executor_context(spec: ExecutorSpec) -> Iterator[Executor]:
    executor = build_executor(spec)
    with executor:
        yield executor


def build_executor(spec: ExecutorSpec) -> Executor:
    """Create (not start) the executor a spec describes."""
    if spec.kind == "desktop":
        from executors.desktop import DesktopExecutor

        return DesktopExecutor(spec.monitor)
    from executors.browser import BrowserExecutor

    url = _miniwob_task(spec).url if spec.miniwob_task else spec.url
    return BrowserExecutor(
        url,
        headless=spec.headless,
        viewport=spec.viewport,
        device_scale_factor=spec.device_scale_factor,
        executable_path=spec.browser_path,
        allowed_urls=_allowed_urls(spec, url),
    )


def _allowed_urls(spec: ExecutorSpec, start_url: str) -> tuple[str, ...] | None:
    """Return the allow-list, with the start page added so that it can always load."""
    if not spec.allowed_urls:
        return None
    return tuple(dict.fromkeys((*spec.allowed_urls, start_url)))


def _prepare_target(
    config: RunConfig, executor: Executor
) -> tuple[str, Callable[[], dict[str, Any]] | None]:
    """Start a MiniWoB++ episode when one is configured; return the task text and its evaluator."""
    spec = config.executor
    if spec.miniwob_task is None:
        return config.task, None
    task = _miniwob_task(spec)
    utterance = task.start(executor)
    logger.info("MiniWoB++ %s seed %d: %s", task.name, task.seed, utterance)

    def evaluate() -> dict[str, Any]:
        reward = task.raw_reward(executor)
        return {"miniwob_task": task.name, "miniwob_seed": task.seed, "raw_reward": reward}

    return config.task or utterance, evaluate


def _miniwob_task(spec: ExecutorSpec) -> Any:
    from agent.miniwob import MiniWobTask

    assert spec.miniwob_task is not None
    return MiniWobTask(spec.miniwob_task, seed=spec.miniwob_seed)


def _model_files(config: RunConfig, models: Models) -> dict[str, ModelFiles]:
    files = {"instruct": _files(models.instruct, config.instruct)}
    if models.thinking is not None:
        files["thinking"] = _files(models.thinking, config.thinking)
    return files


def _files(model: ChatModel, spec: ModelSpec | None) -> ModelFiles:
    if spec is None:
        return ModelFiles(model.name)
    # Absolute, so the manifest names the files wherever the recording is opened from.
    return ModelFiles(model.name, spec.model.resolve(), spec.mmproj.resolve())

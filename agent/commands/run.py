"""`agent run "TASK"`: carry out a task on a browser page or the desktop.

The command turns its options into a `RunConfig` and calls `run_agent`. In an
interactive terminal the TUI shows the run and asks for approvals; with `--no-tui`
the run logs plain lines and asks for approvals on stdin.

Exit codes: 0 the task succeeded (or was answered), 1 it did not complete (failure,
a limit, stuck, invalid replies or an error during the run), 2 usage or
configuration errors and runs that cannot start, 130 aborted.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from agent.actions import describe_action, parse_action
from agent.approval import POLICIES, ApprovalHook, ApprovalRequest, Decision, Verdict, make_policy
from agent.cli import EXIT_ABORTED, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from agent.commands.arguments import gpu_layers, positive_float, positive_int, size, token_range
from agent.control import RunControl
from agent.deciding import CallSettings
from agent.errors import AgentError, ConfigError, DownloadError, InvalidReplyError, RecordingError
from agent.history import HistoryConfig
from agent.loop import LoopSettings
from agent.runner import (
    ENVIRONMENTS,
    EXECUTOR_KINDS,
    ExecutorSpec,
    ModelSpec,
    RunConfig,
    RuntimeOptions,
    ServerSpec,
    default_record_dir,
    run_agent,
)
from agent.safety import Secrets
from agent.steps import (
    LoopEvent,
    Mode,
    RunOutcome,
    RunStarted,
    RunStatus,
    StepFinished,
    steps_text,
)

__all__ = ["build_config", "exit_code", "register", "run_agent"]

# Set while `_read` waits for the person at an approval prompt.
_prompting = threading.Event()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="carry out a task on a browser page or the desktop",
        description="Carry out TASK: the models look at the screen and act on it, one approved "
        "step at a time. Every run that starts writes a recording.",
        epilog="Exit status: 0 when the model finished the task with success or an answer, 1 when "
        "it did not complete (it reported failure, or a step, time or token limit or an error "
        "ended the run), 2 for usage or configuration errors and runs that cannot start (a model "
        "llama.cpp cannot load, a page that does not load, no display), 130 when the run was "
        "aborted.",
    )
    parser.add_argument(
        "task", nargs="?", default="", help="what to do, in plain words (optional with --miniwob)"
    )
    _add_target_options(parser)
    _add_model_options(parser)
    _add_limit_options(parser)
    _add_approval_options(parser)
    parser.set_defaults(handler=run)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the agent acts")
    group.add_argument(
        "--executor",
        choices=EXECUTOR_KINDS,
        default="browser",
        help="what to drive (default: browser)",
    )
    group.add_argument(
        "--url", default="about:blank", help="page the browser opens first (default: about:blank)"
    )
    group.add_argument(
        "--viewport",
        type=size,
        default=(1280, 800),
        metavar="WIDTHxHEIGHT",
        help="browser viewport in CSS pixels (default: 1280x800)",
    )
    group.add_argument(
        "--device-scale-factor",
        type=float,
        default=1.0,
        metavar="F",
        help="browser device pixels per CSS pixel (default: 1)",
    )
    group.add_argument(
        "--headed", action="store_true", help="show the browser window (needs an X display)"
    )
    group.add_argument(
        "--browser", metavar="PATH", help="Chromium executable (default: the system Chromium)"
    )
    group.add_argument(
        "--allow-url",
        action="append",
        default=[],
        metavar="PATTERN",
        help="let the browser load only URLs matching this shell-style pattern, such as "
        "'https://example.com/*'; repeat for more patterns (default: any URL)",
    )
    group.add_argument(
        "--monitor",
        type=int,
        metavar="N",
        help="desktop monitor to capture, from 1 (default: the primary)",
    )
    group.add_argument(
        "--miniwob",
        metavar="TASK",
        help="start the MiniWoB++ task page TASK, such as click-button, in the browser",
    )
    group.add_argument("--seed", type=int, default=0, help="MiniWoB++ episode seed (default: 0)")


# The llama.cpp cache types `agent.models.llama` accepts, listed here so that the help
# works without loading llama.cpp.
KV_CACHE_TYPES = ("f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models (default: those installed by `agent models pull`)")
    group.add_argument(
        "--instruct-model", type=Path, metavar="GGUF", help="Qwen3-VL Instruct model file"
    )
    group.add_argument(
        "--instruct-mmproj", type=Path, metavar="GGUF", help="its vision projector (mmproj) file"
    )
    group.add_argument(
        "--thinking-model",
        type=Path,
        metavar="GGUF",
        help="Qwen3-VL Thinking model file, used as the planner",
    )
    group.add_argument(
        "--thinking-mmproj", type=Path, metavar="GGUF", help="its vision projector (mmproj) file"
    )
    group.add_argument(
        "--api-base",
        metavar="URL",
        help="use an OpenAI-compatible server (llama-server, Ollama, vLLM, SGLang) instead of "
        "GGUF files, for example http://127.0.0.1:8080/v1",
    )
    group.add_argument(
        "--api-model", metavar="NAME", help="the server's Instruct model name (with --api-base)"
    )
    group.add_argument(
        "--api-thinking-model",
        metavar="NAME",
        help="the server's Thinking model name, used as the planner (with --api-base)",
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable that holds the server's API key (default: no key)",
    )
    group.add_argument(
        "--mode",
        choices=[mode.value for mode in Mode],
        help="single: the Instruct model plans and acts; two-model: the Thinking model plans "
        "and the Instruct model grounds; escalating: Thinking plans the first step, then "
        "Instruct acts alone until it stalls "
        "(default: two-model with a Thinking model, else single)",
    )
    group.add_argument(
        "--context",
        type=positive_int,
        default=16384,
        metavar="TOKENS",
        help="context window per model (default: 16384)",
    )
    group.add_argument(
        "--gpu-layers",
        type=gpu_layers,
        default=-1,
        metavar="N",
        help="layers to offload to the GPU: -1 all, 0 none (default: -1)",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for llama.cpp (default: llama.cpp's choice)",
    )
    group.add_argument(
        "--kv-cache-type",
        default="f16",
        choices=KV_CACHE_TYPES,
        metavar="TYPE",
        help=f"KV cache type: {', '.join(KV_CACHE_TYPES)}; q8_0 halves the cache (default: f16)",
    )
    group.add_argument(
        "--model-seed", type=int, metavar="N", help="sampling seed, for repeatable replies"
    )
    group.add_argument(
        "--image-tokens",
        type=token_range,
        default=(1024, 2048),
        metavar="MIN:MAX",
        help="image tokens per screenshot; screenshots are resized into this range "
        "(default: 1024:2048)",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits and recording")
    group.add_argument(
        "--max-steps",
        type=positive_int,
        default=30,
        metavar="N",
        help="stop after N steps (default: 30)",
    )
    group.add_argument(
        "--max-seconds",
        type=positive_float,
        metavar="S",
        help="stop after S seconds of wall time (default: no limit)",
    )
    group.add_argument(
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help="stop after the models generated N tokens in all (default: no limit)",
    )
    group.add_argument(
        "--history-images",
        type=positive_int,
        default=4,
        metavar="N",
        help="screenshots kept in each prompt (default: 4)",
    )
    group.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="recording directory (default: a new timestamped folder under the runs folder)",
    )


def _add_approval_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("approval and secrets")
    group.add_argument(
        "--yes",
        action="store_true",
        help="approve every action without asking (same as --approval auto)",
    )
    group.add_argument(
        "--approval",
        choices=POLICIES,
        default="always",
        help="when to ask: auto never, always every step, risky only for risky steps "
        "(default: always)",
    )
    group.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a secret the agent may type as {{secret:NAME}}; its value comes from the "
        "environment variable NAME or a prompt",
    )
    group.add_argument(
        "--no-tui", action="store_true", help="plain log output, with approval prompts on stdin"
    )


# The command.


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except (ConfigError, DownloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    policy = "auto" if args.yes else args.approval
    if not args.no_tui and _interactive():
        return _run_in_tui(config, policy)
    return _run_plain(config, policy)


def _run_plain(config: RunConfig, policy: str) -> int:
    hook = make_policy(policy, ask_on_stdin)
    control = RunControl()
    redact = Secrets(config.secrets).redact

    def on_event(event: LoopEvent) -> None:
        if isinstance(event, RunStarted):
            print(f"Recording to {config.record_dir}", flush=True)
        print_progress(event, redact)

    try:
        with signals_abort(control):
            outcome = run_agent(config, hook, control, on_event)
    except (ConfigError, DownloadError, RecordingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgentError as exc:
        print(f"error: the run could not start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print_outcome(outcome, config.record_dir)
    return exit_code(outcome)


@contextlib.contextmanager
def signals_abort(control: RunControl) -> Iterator[None]:
    """Make Ctrl+C (SIGINT), SIGTERM and SIGHUP abort the run through `control`.

    A KeyboardInterrupt raised while llama.cpp runs lands in one of its Python callbacks,
    where ctypes drops it, so the handler only sets the abort flag. At an approval prompt,
    Ctrl+C raises KeyboardInterrupt as usual. A second signal exits at once; the recording
    keeps every step that finished.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _prompting.is_set():
            control.abort()
            raise KeyboardInterrupt
        # os.write, not logging: the handler may run in the middle of another write to stderr.
        if control.aborted:
            os.write(2, b"\nexiting at once; the recording keeps the finished steps\n")
            os._exit(EXIT_ABORTED)
        os.write(2, _STOPPING_NOTICE)
        control.abort()

    previous = {number: signal.signal(number, interrupt) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# SIGHUP comes when the terminal closes.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOPPING_NOTICE = (
    b"\nstopping the run once the current model call or action returns (loading a model and "
    b"encoding a screenshot cannot be interrupted). Press Ctrl+C again to exit at once\n"
)


def _run_in_tui(config: RunConfig, policy: str) -> int:
    from agent.tui import Policy, run_with_tui

    def run_task(approval: ApprovalHook, control: RunControl, on_event: Any) -> RunOutcome:
        return run_agent(config, approval, control, on_event)

    task = config.task or f"MiniWoB++ {config.executor.miniwob_task}"
    code = run_with_tui(task, run_task, policy=Policy(policy))
    print(f"Recording: {config.record_dir}")
    return code


def print_progress(event: LoopEvent, redact: Callable[[str], str] = str) -> None:
    """Print one line per finished step, for runs without the TUI, passed through `redact`."""
    if not isinstance(event, StepFinished):
        return
    record = event.record
    action = record.action or record.proposed
    text = describe_action(action) if action is not None else "no action"
    where = f" at input point {record.point}" if record.point else ""
    print(redact(f"Step {record.step}: {text}{where}: {record.outcome}"), flush=True)


def exit_code(outcome: RunOutcome) -> int:
    """Map how a run ended to the exit code of `agent run`."""
    if outcome.completed:
        return EXIT_OK
    if outcome.status is RunStatus.ABORTED:
        return EXIT_ABORTED
    return EXIT_INCOMPLETE


def print_outcome(outcome: RunOutcome, record_dir: Path) -> None:
    """Print how the run ended. The loop already shows secrets in the outcome as placeholders."""
    print(f"Run ended: {outcome.status} after {steps_text(outcome.steps)}: {outcome.message}")
    if outcome.answer is not None:
        print(f"Answer: {outcome.answer}")
    reward = outcome.evaluation.get("raw_reward", "missing") if outcome.evaluation else "missing"
    if reward != "missing":
        shown = "not finished" if reward is None else f"{reward:g}"
        print(f"MiniWoB++ raw reward: {shown}")
    print(f"Recording: {record_dir}")


def _interactive() -> bool:
    # A dumb terminal cannot show the full-screen TUI, so it gets plain log lines.
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


# Building the configuration.


def build_config(args: argparse.Namespace) -> RunConfig:
    """Turn parsed options into a `RunConfig`. Raises `ConfigError` or `DownloadError`."""
    if not args.task.strip() and not args.miniwob:
        raise ConfigError('a task is missing; run `agent run "what to do"` or give --miniwob TASK')
    executor = _executor_spec(args)
    server = _server_spec(args)
    if server is not None:
        instruct, thinking = None, None
        has_planner = server.thinking_model is not None
    else:
        instruct, thinking = resolve_models(args)
        has_planner = thinking is not None
    default_mode = Mode.TWO_MODEL if has_planner else Mode.SINGLE
    mode = Mode(args.mode) if args.mode else default_mode
    if mode is not Mode.SINGLE and not has_planner:
        raise ConfigError(
            f"mode {mode} needs a Thinking model; pass --thinking-model and --thinking-mmproj "
            "(or --api-thinking-model with --api-base)"
        )
    task = args.task.strip()
    record_dir = args.record or default_record_dir(task or f"miniwob-{args.miniwob}")
    if (record_dir / "manifest.json").exists():
        raise ConfigError(
            f"{record_dir} already contains a recording; choose a new --record directory"
        )
    return RunConfig(
        task=task,
        record_dir=record_dir,
        instruct=instruct,
        thinking=thinking,
        executor=executor,
        settings=_loop_settings(args, mode),
        runtime=_runtime_options(args, mode),
        server=server,
        secrets=read_secrets(args.secret),
    )


def _server_spec(args: argparse.Namespace) -> ServerSpec | None:
    if args.api_base is None:
        for option in ("api_model", "api_thinking_model", "api_key_env"):
            if getattr(args, option) is not None:
                flag = "--" + option.replace("_", "-")
                raise ConfigError(f"{flag} needs --api-base URL, the server's address")
        return None
    if args.api_model is None:
        raise ConfigError(
            "--api-base needs --api-model NAME, the name the server gives the Instruct model"
        )
    if args.instruct_model or args.thinking_model:
        raise ConfigError("use either --api-base or GGUF model files, not both")
    address = urlsplit(args.api_base)
    if address.scheme not in ("http", "https") or not address.netloc:
        raise ConfigError(
            f"--api-base {args.api_base} is invalid; give the server's http:// or https:// "
            "address, for example http://127.0.0.1:8080/v1"
        )
    return ServerSpec(args.api_base, args.api_model, args.api_thinking_model, args.api_key_env)


def _executor_spec(args: argparse.Namespace) -> ExecutorSpec:
    if args.url != "about:blank" and (args.miniwob or args.executor == "desktop"):
        where = "--miniwob opens its own task page" if args.miniwob else "the desktop has no URL"
        raise ConfigError(f"--url {args.url} has no effect because {where}; drop --url")
    ignored = _ignored_options(args)
    if ignored:
        flags = " and ".join(ignored)
        raise ConfigError(
            f"{flags} has no effect with --executor {args.executor}; drop it or use the "
            "other executor"
        )
    return ExecutorSpec(
        kind=args.executor,
        url=args.url,
        viewport=args.viewport,
        device_scale_factor=args.device_scale_factor,
        headless=not args.headed,
        browser_path=args.browser,
        monitor=args.monitor,
        miniwob_task=args.miniwob,
        miniwob_seed=args.seed,
        allowed_urls=tuple(args.allow_url),
    )


def _ignored_options(args: argparse.Namespace) -> list[str]:
    """Return the executor options given that the chosen executor does not use."""
    if args.executor == "browser":
        return ["--monitor"] if args.monitor is not None else []
    browser_only = {
        "--viewport": args.viewport != (1280, 800),
        "--device-scale-factor": args.device_scale_factor != 1.0,
        "--headed": args.headed,
        "--browser": args.browser is not None,
        "--allow-url": bool(args.allow_url),
        "--miniwob": args.miniwob is not None,
    }
    return [flag for flag, given in browser_only.items() if given]


def _loop_settings(args: argparse.Namespace, mode: Mode) -> LoopSettings:
    return LoopSettings(
        mode=mode,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        max_tokens=args.max_tokens,
        environment=ENVIRONMENTS[args.executor],
        history=HistoryConfig(images=args.history_images),
        calls=CallSettings(seed=args.model_seed),
    )


def _runtime_options(args: argparse.Namespace, mode: Mode) -> RuntimeOptions:
    reply_tokens = CallSettings().actor_max_tokens
    if mode is not Mode.SINGLE:
        reply_tokens = CallSettings().planner_max_tokens
    needed = args.image_tokens[1] + reply_tokens
    if args.context <= needed:
        raise ConfigError(
            f"--context {args.context} cannot hold one screenshot of up to {args.image_tokens[1]} "
            f"image tokens plus a {mode} reply of up to {reply_tokens} tokens; raise --context "
            f"above {needed} or lower --image-tokens"
        )
    return RuntimeOptions(
        n_ctx=args.context,
        gpu_layers=args.gpu_layers,
        threads=args.threads,
        kv_cache_type=args.kv_cache_type,
        seed=args.model_seed,
        image_min_tokens=args.image_tokens[0],
        image_max_tokens=args.image_tokens[1],
    )


def resolve_models(args: argparse.Namespace) -> tuple[ModelSpec, ModelSpec | None]:
    """Return the Instruct and Thinking model files: given as options, else installed ones."""
    instruct = _pair(args.instruct_model, args.instruct_mmproj, "instruct")
    thinking = _pair(args.thinking_model, args.thinking_mmproj, "thinking")
    if instruct is not None:
        # Models given by path are the whole choice: an installed Thinking model is not added.
        return instruct, thinking
    installed_instruct, installed_thinking = _installed_models()
    return installed_instruct, thinking or installed_thinking


def _pair(model: Path | None, mmproj: Path | None, kind: str) -> ModelSpec | None:
    if model is None and mmproj is None:
        return None
    if model is None or mmproj is None:
        raise ConfigError(
            f"give both --{kind}-model and --{kind}-mmproj, "
            f"or neither to use the installed {kind} model"
        )
    for path in (model, mmproj):
        if path.is_dir():
            raise ConfigError(f"model file {path} is a directory; give the .gguf file inside it")
        if not path.is_file():
            raise ConfigError(
                f"model file {path} not found; check the path, or run `agent models pull {kind}`"
            )
    return ModelSpec(model, mmproj)


def _installed_models() -> tuple[ModelSpec, ModelSpec | None]:
    """Return the installed default models, offering to download them when none are installed."""
    from agent.models.downloads import default_model_paths

    paths = default_model_paths()
    if paths is None:
        offer_download()
        paths = default_model_paths()
        if paths is None:
            raise ConfigError(
                "the download finished, but no Instruct model is installed; run `agent models list`"
            )
    thinking = None
    if paths.thinking_gguf is not None and paths.thinking_mmproj is not None:
        thinking = ModelSpec(paths.thinking_gguf, paths.thinking_mmproj)
    return ModelSpec(paths.instruct_gguf, paths.instruct_mmproj), thinking


def offer_download() -> None:
    """Offer to download the default Instruct model; raise when declined or impossible."""
    from rich.progress import Progress

    from agent.models.catalog import load_catalog
    from agent.models.downloads import missing_models_error, plan_pull, pull

    catalog = load_catalog()
    if not sys.stdin.isatty():
        raise missing_models_error(catalog)
    plan = plan_pull(catalog, "instruct")
    print(f"No complete model is installed. The default Instruct model is {plan.summary()}.")
    print("A Thinking model for planning can be added later with `agent models pull thinking`.")
    answer = input("Download it now? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise missing_models_error(catalog)
    with Progress() as progress:
        pull(plan, progress=progress)


def read_secrets(names: list[str]) -> dict[str, str]:
    """Read each secret from the environment variable of its name, or ask for it without echo."""
    values: dict[str, str] = {}
    for name in names:
        if not SECRET_NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"secret name {name!r} is invalid; use letters, digits and underscores, "
                "such as PASSWORD"
            )
        value = os.environ.get(name)
        if value is None:
            if not sys.stdin.isatty():
                raise ConfigError(
                    f"secret {name} has no value; "
                    f"set the environment variable {name} or run in a terminal"
                )
            value = getpass.getpass(f"Value of secret {name}: ")
        if not value:
            raise ConfigError(f"secret {name} is empty; give it a value")
        values[name] = value
    return values


SECRET_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# Approval on stdin.


def ask_on_stdin(request: ApprovalRequest) -> Decision:
    """Show one proposed action and read the person's decision from stdin."""
    print(f"\nStep {request.step}: {request.description}")
    if request.instruction:
        print(f"  Plan: {request.instruction}")
    if request.risk:
        print(f"  Risky: {request.risk}")
    try:
        while True:
            answer = _read("Approve? [y]es, [s]kip, [d]eny with a hint, [e]dit, [q]uit: ").lower()
            decision = _decision(answer)
            if decision is not None:
                return decision
    except _PromptClosed:
        return Decision(Verdict.ABORT, source="person")


def _decision(answer: str) -> Decision | None:
    match answer:
        case "" | "y" | "yes" | "a":
            return Decision.approve("person")
        case "s" | "skip":
            return Decision(Verdict.SKIP, source="person")
        case "d" | "deny":
            return _denied()
        case "e" | "edit":
            return _edited()
        case "q" | "quit" | "abort":
            return Decision(Verdict.ABORT, source="person")
    print("Answer y, s, d, e or q.")
    return None


def _denied() -> Decision | None:
    hint = _read("Hint for the planner: ")
    if not hint:
        print("A deny needs a hint that tells the planner what to do instead.")
        return None
    return Decision(Verdict.DENY, hint=hint, source="person")


def _edited() -> Decision | None:
    text = _read(
        'New action as JSON, for example {"action": "left_click", "coordinate": [500, 300]}: '
    )
    try:
        return Decision(Verdict.EDIT, action=parse_action(json.loads(text)), source="person")
    except (ValueError, InvalidReplyError) as exc:
        print(f"That action is invalid: {exc}")
        return None


class _PromptClosed(Exception):
    """Ctrl+C at a prompt, or stdin closed: no answer will come, so the run is aborted."""


def _read(prompt: str) -> str:
    _prompting.set()
    try:
        return input(prompt).strip()
    except EOFError:
        # No person can respond: stop instead of guessing.
        print("\nstdin is closed, so no approval can come: aborting the run", file=sys.stderr)
        raise _PromptClosed from None
    except KeyboardInterrupt:
        print()
        raise _PromptClosed from None
    finally:
        _prompting.clear()

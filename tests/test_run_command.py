"""`agent run`: options, model defaults, secrets, stdin approval, and a real end-to-end run."""

from __future__ import annotations

import hashlib
import io
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.actions import LeftClick
from agent.approval import ApprovalRequest, Verdict
from agent.cli import EXIT_ABORTED, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, build_parser, main
from agent.commands.run import ask_on_stdin, build_config, exit_code, signals_abort
from agent.control import RunControl
from agent.geometry import ScreenGeometry
from agent.models.tiny import TinyModelPaths
from agent.recording import Recording
from agent.runner import default_record_dir
from agent.steps import Mode, RunOutcome, RunStatus
from executors.base import Observation


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep runs and models of these tests out of the user's folders."""
    monkeypatch.setenv("AGENT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("AGENT_MODELS_DIR", str(tmp_path / "models"))


def _model_args(paths: TinyModelPaths) -> list[str]:
    return [
        "--instruct-model",
        str(paths.instruct),
        "--instruct-mmproj",
        str(paths.instruct_mmproj),
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _report_command_ready() -> bool:
    try:
        build_parser().parse_args(["report", "REC"])
    except SystemExit:
        return False
    return True


# End to end.


@pytest.mark.timeout(60)
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_model_call(
    tiny_models: TinyModelPaths, tmp_path: Path, number: signal.Signals
) -> None:
    """SIGINT or SIGTERM as the model starts on the first step's prompt aborts the run."""
    record = tmp_path / "rec"
    page = tmp_path / "page.html"
    page.write_text("<button>Ok</button>", encoding="utf-8")
    args = ["-vv", "run", "press Ok", "--url", page.as_uri(), *_model_args(tiny_models)]
    args += ["--yes", "--no-tui", "--record", str(record), "--threads", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    # The backend logs the rendered prompt at DEBUG just before it evaluates it. The first
    # such line comes from the warm-up at load time, so wait until the run has started.
    started = False
    for line in process.stderr:
        started = started or "run started" in line
        if started and "prompt for" in line:
            process.send_signal(number)
            break
    output, errors = process.communicate(timeout=30)

    assert process.returncode == EXIT_ABORTED, errors[-2000:]
    assert "Run ended: aborted" in output
    assert "Exception ignored" not in errors
    assert "prompt evaluation cancelled" in errors
    recording = Recording.open(record)
    assert recording.manifest["outcome"]["status"] == "aborted"
    assert [step.outcome for step in recording.steps] == ["aborted"]


def test_tiny_model_drives_miniwob(
    tiny_models: TinyModelPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny real model drives a live MiniWoB++ page through the whole loop to the step limit."""
    record = tmp_path / "rec"
    args = ["run", "--miniwob", "click-button", "--seed", "1", *_model_args(tiny_models)]
    args += [
        "--max-steps",
        "3",
        "--yes",
        "--no-tui",
        "--record",
        str(record),
        "--threads",
        "2",
        "--model-seed",
        "7",
    ]
    # A small image budget and context keep the tiny model's steps short on a CPU.
    args += ["--image-tokens", "16:256", "--context", "4096"]

    code = main(args)

    output = capsys.readouterr().out
    assert code == EXIT_INCOMPLETE, output
    assert "Run ended: step_limit after 3 steps" in output
    recording = Recording.open(record)
    manifest = recording.manifest
    assert manifest["outcome"]["status"] == "step_limit"
    assert manifest["task"] == 'Click on the "Ok" button.'
    assert manifest["executor"]["miniwob_task"] == "click-button"
    assert manifest["models"]["instruct"]["sha256"] == _sha256(tiny_models.instruct)
    assert manifest["models"]["instruct"]["mmproj_sha256"] == _sha256(tiny_models.instruct_mmproj)
    assert Path(manifest["models"]["instruct"]["path"]).is_absolute()
    assert manifest["screen"]["width"] == 1280
    assert manifest["settings"]["max_steps"] == 3
    assert "raw_reward" in manifest["outcome"]["evaluation"]
    assert len(recording.steps) == 3
    for step in recording.steps:
        assert step.screenshot.is_file()
        assert step.calls, f"step {step.step} made no model call"
        assert step.calls[0].raw["reply"]["usage"]["completion_tokens"] > 0
        assert step.outcome in ("executed", "failed")


@pytest.mark.skipif(not _report_command_ready(), reason="the report command is not available yet")
def test_tiny_run_report(tiny_models: TinyModelPaths, tmp_path: Path) -> None:
    record = tmp_path / "rec"
    args = ["run", "--miniwob", "click-button", *_model_args(tiny_models), "--max-steps", "2"]
    main(
        [
            *args,
            "--yes",
            "--no-tui",
            "--record",
            str(record),
            "--threads",
            "2",
            "--image-tokens",
            "16:256",
        ]
    )

    code = main(["report", str(record), "-o", str(tmp_path / "report.html")])

    assert code == EXIT_OK
    assert (tmp_path / "report.html").stat().st_size > 0


# Options and configuration errors.


def _run_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_missing_task_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_error(["--no-tui"], capsys)

    assert code == 2
    assert "a task is missing" in err


def test_model_without_mmproj_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_error(
        ["do it", "--instruct-model", str(tmp_path / "m.gguf"), "--no-tui"], capsys
    )

    assert code == 2
    assert "--instruct-mmproj" in err


def test_missing_model_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.gguf"
    code, err = _run_error(
        ["do it", "--instruct-model", str(missing), "--instruct-mmproj", str(missing)], capsys
    )

    assert code == 2
    assert str(missing) in err


def test_two_model_needs_thinking(
    tiny_models: TinyModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run_error(["do it", *_model_args(tiny_models), "--mode", "two-model"], capsys)

    assert code == 2
    assert "needs a Thinking model" in err


def test_no_installed_model_names_pull(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_error(["do it", "--no-tui"], capsys)

    assert code == 2
    assert "agent models pull" in err
    assert "--instruct-model" in err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_hub_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENT_HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))

    code, err = _run_error(["do it", "--no-tui"], capsys)

    assert code == 2
    assert "cannot reach the model hub" in err
    assert "agent models pull" in err
    assert "No complete model is installed" in err


def test_mode_defaults_follow_models(tiny_models: TinyModelPaths) -> None:
    single = build_config(build_parser().parse_args(["run", "t", *_model_args(tiny_models)]))
    both = build_config(
        build_parser().parse_args(
            [
                "run",
                "t",
                *_model_args(tiny_models),
                "--thinking-model",
                str(tiny_models.thinking),
                "--thinking-mmproj",
                str(tiny_models.thinking_mmproj),
            ]
        )
    )

    assert single.settings.mode is Mode.SINGLE
    assert both.settings.mode is Mode.TWO_MODEL
    assert single.record_dir.parent == default_record_dir("t").parent


def test_secret_read_from_environment(
    tiny_models: TinyModelPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_PASSWORD", "s3cret")

    config = build_config(
        build_parser().parse_args(
            ["run", "t", *_model_args(tiny_models), "--secret", "SITE_PASSWORD"]
        )
    )

    assert config.secrets == {"SITE_PASSWORD": "s3cret"}
    assert "s3cret" not in repr(config)


def test_missing_secret_is_usage_error(
    tiny_models: TinyModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run_error(
        ["t", *_model_args(tiny_models), "--secret", "NOT_SET_ANYWHERE", "--no-tui"], capsys
    )

    assert code == 2
    assert "NOT_SET_ANYWHERE" in err


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (RunStatus.SUCCESS, EXIT_OK),
        (RunStatus.ANSWERED, EXIT_OK),
        (RunStatus.FAILURE, EXIT_INCOMPLETE),
        (RunStatus.STEP_LIMIT, EXIT_INCOMPLETE),
        (RunStatus.TIME_LIMIT, EXIT_INCOMPLETE),
        (RunStatus.TOKEN_LIMIT, EXIT_INCOMPLETE),
        (RunStatus.STUCK, EXIT_INCOMPLETE),
        (RunStatus.INVALID_REPLIES, EXIT_INCOMPLETE),
        (RunStatus.ERROR, EXIT_INCOMPLETE),
        (RunStatus.ABORTED, EXIT_ABORTED),
    ],
)
def test_exit_codes(status: RunStatus, code: int) -> None:
    assert exit_code(RunOutcome(status=status, steps=1)) == code


# Approval on stdin.


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def request_to_approve() -> ApprovalRequest:
    from PIL import Image

    observation = Observation(Image.new("RGB", (10, 10)), ScreenGeometry(10, 10))
    return ApprovalRequest(
        step=1,
        task="t",
        action=LeftClick(action="left_click", coordinate=(500, 500)),
        observation=observation,
    )


def _answers(monkeypatch: pytest.MonkeyPatch, *lines: str) -> Iterator[str]:
    queue = iter(lines)

    def fake_input(prompt: str = "") -> str:
        try:
            return next(queue)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    return queue


@pytest.mark.parametrize(
    ("lines", "verdict"),
    [
        (("y",), Verdict.APPROVE),
        (("",), Verdict.APPROVE),
        (("s",), Verdict.SKIP),
        (("q",), Verdict.ABORT),
        (("maybe", "y"), Verdict.APPROVE),
        ((), Verdict.ABORT),
    ],
)
def test_stdin_verdicts(
    monkeypatch: pytest.MonkeyPatch,
    request_to_approve: ApprovalRequest,
    lines: tuple[str, ...],
    verdict: Verdict,
) -> None:
    _answers(monkeypatch, *lines)

    assert ask_on_stdin(request_to_approve).verdict is verdict


def test_stdin_deny_needs_hint(
    monkeypatch: pytest.MonkeyPatch, request_to_approve: ApprovalRequest
) -> None:
    _answers(monkeypatch, "d", "", "d", "use the search box")

    decision = ask_on_stdin(request_to_approve)

    assert decision.verdict is Verdict.DENY
    assert decision.hint == "use the search box"


@pytest.mark.parametrize("answers", [(), ("d",), ("e",)])
def test_stdin_signals_abort(
    monkeypatch: pytest.MonkeyPatch, request_to_approve: ApprovalRequest, answers: tuple[str, ...]
) -> None:
    """Ctrl+C at any prompt, the hint and edit prompts included, aborts the run."""
    queue = iter(answers)

    def interrupted_input(prompt: str = "") -> str:
        for answer in queue:
            return answer
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", interrupted_input)

    assert ask_on_stdin(request_to_approve).verdict is Verdict.ABORT


# Runs in a child process, because the second Ctrl+C ends the process.
_TWO_CTRL_C = """
import os, signal, time
from agent.commands.run import signals_abort
from agent.control import RunControl

control = RunControl()
with signals_abort(control):
    os.kill(os.getpid(), signal.SIGINT)
    print("aborted" if control.aborted else "running", flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)
print("not exited", flush=True)
"""


def test_second_ctrl_c_exits_at_once() -> None:
    """The first SIGINT only sets the abort flag; the second exits with 130."""
    result = subprocess.run(
        [sys.executable, "-c", _TWO_CTRL_C],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
    )

    assert result.stdout == "aborted\n"
    assert result.returncode == EXIT_ABORTED
    assert "stopping the run" in result.stderr
    assert "exiting at once" in result.stderr


def test_ctrl_c_handler_restored() -> None:
    before = signal.getsignal(signal.SIGINT)

    with signals_abort(RunControl()):
        assert signal.getsignal(signal.SIGINT) is not before

    assert signal.getsignal(signal.SIGINT) is before


def test_stdin_deny_with_hint(
    monkeypatch: pytest.MonkeyPatch, request_to_approve: ApprovalRequest
) -> None:
    _answers(monkeypatch, "d", "click the other button")

    decision = ask_on_stdin(request_to_approve)

    assert decision.verdict is Verdict.DENY
    assert decision.hint == "click the other button"


def test_stdin_edit_parses_action(
    monkeypatch: pytest.MonkeyPatch, request_to_approve: ApprovalRequest
) -> None:
    _answers(
        monkeypatch,
        "e",
        '{"action": "left_click", "coordinate": [1500, 1]}',
        "e",
        '{"action": "left_click", "coordinate": [10, 20]}',
    )

    decision = ask_on_stdin(request_to_approve)

    assert decision.verdict is Verdict.EDIT
    assert decision.action == LeftClick(action="left_click", coordinate=(10, 20))


def test_kv_cache_choices_match_backend() -> None:
    from agent.commands.run import KV_CACHE_TYPES
    from agent.models.llama import KV_CACHE_TYPES as BACKEND_TYPES

    assert set(KV_CACHE_TYPES) == set(BACKEND_TYPES)


def test_context_too_small_for_screenshot(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "task",
            "--api-base",
            "http://127.0.0.1:9/v1",
            "--api-model",
            "m",
            "--context",
            "1000",
            "--yes",
            "--no-tui",
        ]
    )

    assert code == 2
    assert "or lower --image-tokens" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-seconds", "0"], "use a number above 0"),
        (["--max-seconds", "inf"], "use a number above 0"),
        (["--secret", "bad name"], "letters, digits and underscores"),
        (["--threads", "-3"], "use 1 or more"),
        (["--gpu-layers", "-7"], "use -1 for all layers"),
        (["--executor", "desktop", "--viewport", "800x600"], "--viewport has no effect"),
        (["--executor", "desktop", "--headed", "--allow-url", "x"], "--headed and --allow-url"),
        (["--monitor", "2"], "--monitor has no effect with --executor browser"),
    ],
)
def test_run_options_checked(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "task",
            "--api-base",
            "http://127.0.0.1:9/v1",
            "--api-model",
            "m",
            "--yes",
            "--no-tui",
            *args,
        ]
    )

    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--miniwob", "click-button"], ["--executor", "desktop"]])
def test_url_without_effect_rejected(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "task",
            "--url",
            "https://example.test/",
            *extra,
            "--api-base",
            "http://127.0.0.1:9/v1",
            "--api-model",
            "m",
            "--yes",
            "--no-tui",
        ]
    )

    assert code == 2
    assert "drop --url" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["model", "page"])
def test_run_that_cannot_start_exits_2(
    tiny_models: TinyModelPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """A model file llama.cpp cannot load, or a start page that does not load, is a usage error."""
    page = tmp_path / "page.html"
    page.write_text("<button>Ok</button>", encoding="utf-8")
    broken = tmp_path / "broken.gguf"
    broken.write_text("this is not a GGUF file", encoding="utf-8")
    if target == "model":
        args = ["--url", page.as_uri(), "--instruct-model", str(broken)]
        args += ["--instruct-mmproj", str(tiny_models.instruct_mmproj)]
    else:
        args = ["--url", (tmp_path / "missing.html").as_uri(), *_model_args(tiny_models)]

    code = main(["run", "press Ok", *args, "--yes", "--no-tui", "--record", str(tmp_path / "r")])

    assert code == EXIT_USAGE
    assert "the run could not start" in capsys.readouterr().err


def test_model_directory_rejected(
    tiny_models: TinyModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_models.instruct.parent
    args = ["--instruct-model", str(folder), "--instruct-mmproj", str(tiny_models.instruct_mmproj)]

    code = main(["run", "task", *args, "--yes", "--no-tui"])

    assert code == EXIT_USAGE
    assert f"model file {folder} is a directory" in capsys.readouterr().err


def test_dumb_terminal_gets_plain_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.commands import run as run_command

    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("sys.stdout", _Terminal())
    monkeypatch.setenv("TERM", "xterm-256color")
    assert run_command._interactive()

    monkeypatch.setenv("TERM", "dumb")
    assert not run_command._interactive()

"""`agent run` against an OpenAI-compatible server: a loopback server stands in for llama-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import EXIT_OK, EXIT_USAGE, main
from agent.recording import Recording
from tests.test_http_backend import Canned, FakeServer, completion, server  # noqa: F401

PAGE = (
    "data:text/html,<button style='width:100vw;height:100vh' "
    "onclick=\"document.title='clicked'\">Ok</button>"
)


def _call(**arguments: object) -> str:
    body = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call>"


def test_run_uses_server_models(server: FakeServer, tmp_path: Path) -> None:  # noqa: F811
    server.script = [
        Canned(body=completion(_call(action="left_click", coordinate=[500, 500]))),
        Canned(body=completion(_call(action="terminate", status="success"))),
    ]
    record = tmp_path / "rec"

    code = main(
        [
            "run",
            "press the button",
            "--url",
            PAGE,
            "--api-base",
            server.base_url,
            "--api-model",
            "qwen3-vl-8b",
            "--yes",
            "--no-tui",
            "--record",
            str(record),
        ]
    )

    assert code == EXIT_OK
    assert server.paths == ["/v1/chat/completions"] * 2
    assert server.requests[0]["model"] == "qwen3-vl-8b"
    images = [
        part["image_url"]["url"]
        for message in server.requests[0]["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]
    assert len(images) == 1
    assert images[0].startswith("data:image/png;base64,")
    recording = Recording.open(record)
    assert recording.steps[1].raw["extras"]["title"] == "clicked"
    assert recording.manifest["models"]["instruct"]["name"] == "qwen3-vl-8b"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-model", "m"], "--api-model needs --api-base"),
        (["--api-base", "http://127.0.0.1:9/v1"], "--api-base needs --api-model"),
        (
            ["--api-base", "http://127.0.0.1:9/v1", "--api-model", "m", "--mode", "two-model"],
            "needs a Thinking model",
        ),
        (["--api-base", "ftp://127.0.0.1/v1", "--api-model", "m"], "http:// or https://"),
        (["--api-base", "127.0.0.1:8080", "--api-model", "m"], "http:// or https://"),
    ],
)
def test_server_options_checked(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "task", "--yes", "--no-tui", *args])

    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_allow_list_blocks_other_pages(server: FakeServer, tmp_path: Path) -> None:  # noqa: F811
    link_page = (
        "data:text/html,<a href='http://127.0.0.1:9/elsewhere' style='display:block;"
        "width:100vw;height:100vh'>away</a>"
    )
    server.script = [
        Canned(body=completion(_call(action="left_click", coordinate=[500, 500]))),
        Canned(body=completion(_call(action="terminate", status="failure"))),
    ]
    record = tmp_path / "rec"

    main(
        [
            "run",
            "follow the link",
            "--url",
            link_page,
            "--allow-url",
            "https://example.test/*",
            "--api-base",
            server.base_url,
            "--api-model",
            "m",
            "--yes",
            "--no-tui",
            "--record",
            str(record),
        ]
    )

    recording = Recording.open(record)
    first = recording.steps[0].raw
    assert first["result"]["ok"] is False
    assert "http://127.0.0.1:9/elsewhere" in first["result"]["reason"]
    assert recording.steps[1].raw["extras"]["url"].startswith("data:text/html")
    assert recording.manifest["executor"]["allowed_urls"] == ["https://example.test/*"]


def test_console_redacts_secrets(
    server: FakeServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model that writes a secret's value itself still never shows it on the console."""
    monkeypatch.setenv("SITE_PASSWORD", "hunter2secret")
    server.script = [
        Canned(body=completion(_call(action="type", text="hunter2secret"))),
        Canned(body=completion(_call(action="answer", text="the password is hunter2secret"))),
    ]

    code = main(
        [
            "run",
            "log in",
            "--url",
            PAGE,
            "--api-base",
            server.base_url,
            "--api-model",
            "qwen3-vl-8b",
            "--secret",
            "SITE_PASSWORD",
            "--yes",
            "--no-tui",
            "--record",
            str(tmp_path / "rec"),
        ]
    )

    output = capsys.readouterr()
    assert code == EXIT_OK
    assert "hunter2secret" not in output.out
    assert "hunter2secret" not in output.err
    assert "Answer: the password is {{secret:SITE_PASSWORD}}" in output.out

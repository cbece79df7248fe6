"""`agent parse` through `agent.cli.main`, as a user runs it."""

from __future__ import annotations

import io
import json

import pytest

from agent.cli import main
from agent.parsing import MAX_CHECKED_AFTER_ACTION

CLICK = '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 250]}}</tool_call>'


def run_parse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], reply: str, *args: str
):
    monkeypatch.setattr("sys.stdin", io.StringIO(reply))
    code = main(["parse", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_parse_prints_point(monkeypatch, capsys) -> None:
    code, out, _ = run_parse(
        monkeypatch, capsys, "Find it.</think>" + CLICK, "--screen", "1920x1080"
    )
    result = json.loads(out)
    assert code == 0
    assert result["thinking"] == "Find it."
    assert result["action"] == {"action": "left_click", "coordinate": [500, 250]}
    assert result["point"] == [960, 270]
    assert result["dropped"] == []


def test_parse_scale_and_origin(monkeypatch, capsys) -> None:
    reply = CLICK.replace("[500, 250]", "[500, 500]")
    code, out, _ = run_parse(
        monkeypatch, capsys, reply, "--screen", "2560x1600", "--scale", "2", "--origin=-1280,0"
    )
    assert code == 0
    assert json.loads(out)["point"] == [-640, 400]


def test_parse_keys_normalised(monkeypatch, capsys) -> None:
    reply = '<tool_call>{"name": "computer_use", "arguments": {"action": "key", "keys": "Ctrl+Return"}}</tool_call>'
    code, out, _ = run_parse(monkeypatch, capsys, reply, "--screen", "800x600")
    result = json.loads(out)
    assert code == 0
    assert result["action"]["keys"] == ["ctrl", "enter"]
    assert result["point"] is None


def test_parse_reports_dropped(monkeypatch, capsys) -> None:
    code, out, _ = run_parse(monkeypatch, capsys, CLICK + CLICK, "--screen", "800x600")
    assert code == 0
    assert "one action per step" in json.loads(out)["dropped"][0]["reason"]


@pytest.mark.parametrize(
    ("reply", "flags", "message"),
    [
        ("still thinking about", ["--thinking"], "truncated"),
        (
            '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [5, 2000]}}'
            "</tool_call>",
            [],
            "0 to 1000",
        ),
        ("no action here", [], "no_action"),
    ],
)
def test_parse_exits_2_without_action(
    monkeypatch, capsys, reply: str, flags: list[str], message: str
) -> None:
    code, _, err = run_parse(monkeypatch, capsys, reply, "--screen", "800x600", *flags)
    assert code == 2
    assert message in err


@pytest.mark.parametrize("screen", ["1920", "axb", "0x10", "10x-5"])
def test_parse_rejects_bad_screen(monkeypatch, capsys, screen: str) -> None:
    code, _, err = run_parse(monkeypatch, capsys, CLICK, "--screen", screen)
    assert code == 2
    assert "WIDTHxHEIGHT" in err or "at least 1" in err


def test_parse_failure_output_keys(monkeypatch, capsys) -> None:
    code, out, _ = run_parse(monkeypatch, capsys, "no action here", "--screen", "800x600")
    result = json.loads(out)
    assert code == 2
    assert set(result) == {"status", "thinking", "dropped"}
    assert result["status"] == "no_action"


def test_parse_help_names_failure_keys(monkeypatch, capsys) -> None:
    code = main(["parse", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert "keys thinking, action, point and dropped" in help_text
    assert "keys status (truncated, no_action or invalid), thinking and dropped" in help_text
    assert "exit status is 2" in help_text


@pytest.mark.parametrize("depth", [900, 1000, 5000])
def test_parse_deep_call_exits_2(monkeypatch, capsys, depth: int) -> None:
    reply = "<tool_call>" + "[" * depth + "]" * depth + "</tool_call>"
    code, out, err = run_parse(monkeypatch, capsys, reply, "--screen", "1280x800")
    assert code == 2
    assert json.loads(out)["status"] == "invalid"
    assert "nested too deeply" in err


def test_parse_many_calls_summarised(monkeypatch, capsys) -> None:
    code, out, _ = run_parse(monkeypatch, capsys, CLICK * 1000, "--screen", "800x600")
    dropped = json.loads(out)["dropped"]
    assert code == 0
    assert len(dropped) == MAX_CHECKED_AFTER_ACTION + 1
    assert dropped[-1]["reason"].startswith("979 more tool calls were not checked")
    assert dropped[-1]["text"] == ""

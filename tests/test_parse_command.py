"""`agent parse` through `agent.cli.main`, as a user runs it."""

from __future__ import annotations

import io
import json

import pytest

from agent.cli import main

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

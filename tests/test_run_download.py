"""`agent run` with no model installed: it offers the download, shows the size and goes on.

A loopback server imitates the hub and serves the tiny test model under a catalog entry
that the test writes as the user's catalog.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.cli import EXIT_INCOMPLETE, EXIT_USAGE, main
from agent.models import catalog as catalog_module
from agent.models.downloads import ENDPOINT_ENV
from agent.models.tiny import TinyModelPaths
from agent.recording import Recording
from tests.test_downloads import REVISION, FakeHub, FakeHubHandler

REPO = "tester/Tiny-VL-Instruct-GGUF"
MODEL_FILE = "tiny-instruct-Q8_0.gguf"
MMPROJ_FILE = "mmproj-tiny-instruct-F16.gguf"


class TerminalInput(io.StringIO):
    """Standard input that claims to be a terminal, with the person's typed answers."""

    def isatty(self) -> bool:
        return True


def _entry(name: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f'{{ file = "{name}", size = {len(data)}, sha256 = "{digest}" }}'


@pytest.fixture
def tiny_hub(
    tiny_models: TinyModelPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHub]:
    model = tiny_models.instruct.read_bytes()
    mmproj = tiny_models.instruct_mmproj.read_bytes()
    state = FakeHub(
        files={
            f"{REPO}/resolve/{REVISION}/{MODEL_FILE}": model,
            f"{REPO}/resolve/{REVISION}/{MMPROJ_FILE}": mmproj,
        }
    )
    handler = type("Handler", (FakeHubHandler,), {"hub": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    catalog = tmp_path / "config" / "models.toml"
    catalog.parent.mkdir()
    catalog.write_text(
        'default_instruct = "tiny-instruct"\n\n'
        "[models.tiny-instruct]\n"
        'title = "Tiny-VL-Instruct"\nparameters = "tiny"\nkind = "instruct"\n'
        f'repo = "{REPO}"\nrevision = "{REVISION}"\ndefault_quant = "Q8_0"\n'
        f"mmproj = {_entry(MMPROJ_FILE, mmproj)}\n\n"
        "[models.tiny-instruct.quants]\n"
        f"Q8_0 = {_entry(MODEL_FILE, model)}\n"
    )
    monkeypatch.setattr(catalog_module, "user_catalog_path", lambda: catalog)
    monkeypatch.setenv(ENDPOINT_ENV, state.endpoint)
    monkeypatch.setenv("AGENT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("AGENT_RUNS_DIR", str(tmp_path / "runs"))
    yield state
    server.shutdown()
    server.server_close()


RUN = [
    "run",
    "--miniwob",
    "click-button",
    "--max-steps",
    "1",
    "--yes",
    "--no-tui",
    "--image-tokens",
    "16:256",
    "--context",
    "4096",
    "--threads",
    "2",
]


def test_run_downloads_then_continues(
    tiny_hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", TerminalInput("y\n"))
    record = tmp_path / "rec"

    code = main([*RUN, "--record", str(record)])

    output = capsys.readouterr().out
    assert code == EXIT_INCOMPLETE, output
    assert "Tiny-VL-Instruct Q8_0: 2 files" in output
    assert (tmp_path / "models").is_dir()
    manifest = Recording.open(record).manifest
    assert manifest["outcome"]["status"] == "step_limit"
    assert manifest["models"]["instruct"]["path"].endswith(MODEL_FILE)


def test_declined_download_names_options(
    tiny_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", TerminalInput("n\n"))

    code = main(RUN)

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "agent models pull" in captured.err
    assert "--instruct-model" in captured.err
    assert not [path for path in tiny_hub.requests if path[0] == "GET"]

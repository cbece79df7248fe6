"""Model downloads against a local server that imitates the Hugging Face hub's file endpoints.

The fake hub serves `/{repo}/resolve/{revision}/{file}` as the hub does for Git LFS
files: a redirect to a CDN path, with `X-Linked-Size` and `X-Linked-Etag`
(the sha256). The CDN path serves the bytes with Range support. It can drop a
connection midway, ignore Range, or serve bytes that do not match the advertised hash.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import ConfigError, DownloadError
from agent.models import catalog as catalog_module
from agent.models.catalog import APP_NAME, load_catalog, user_catalog_path
from agent.models.downloads import (
    ENDPOINT_ENV,
    cached_models,
    default_model_paths,
    installed_models,
    missing_models_error,
    plan_pull,
    pull,
)

REPO_INSTRUCT = "tester/Tiny-VL-Instruct-GGUF"
REPO_THINKING = "tester/Tiny-VL-Thinking-GGUF"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


FILES = {
    f"{REPO_INSTRUCT}/resolve/{REVISION}/tiny-instruct-Q8_0.gguf": _blob(1, 300_000),
    f"{REPO_INSTRUCT}/resolve/{REVISION}/mmproj-tiny-instruct-F16.gguf": _blob(2, 70_000),
    f"{REPO_THINKING}/resolve/{REVISION}/tiny-thinking-Q8_0.gguf": _blob(3, 200_000),
    f"{REPO_THINKING}/resolve/{REVISION}/mmproj-tiny-thinking-F16.gguf": _blob(4, 50_000),
}
INSTRUCT_GGUF = f"{REPO_INSTRUCT}/resolve/{REVISION}/tiny-instruct-Q8_0.gguf"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeHub:
    """State of the fake hub: files by path, faults to inject, and the requests seen."""

    files: dict[str, bytes]
    endpoint: str = ""
    # Path -> bytes to send before dropping the connection, used once per entry.
    drop_after: dict[str, int] = field(default_factory=dict)
    # Path -> bytes served in place of the real ones, under the real size and sha256.
    corrupt: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def gets(self, path: str) -> list[str | None]:
        """Return the Range header of each GET of a file's CDN URL, in order."""
        cdn = f"/cdn/{path}"
        return [range_ for method, seen, range_ in self.requests if method == "GET" and seen == cdn]


class FakeHubHandler(BaseHTTPRequestHandler):
    """Request handler of the fake hub. Subclasses set `hub` to the state to serve."""

    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _serve(self, *, send_body: bool) -> None:
        self.hub.requests.append((self.command, self.path, self.headers.get("Range")))
        if self.path.startswith("/cdn/"):
            self._serve_cdn(self.path.removeprefix("/cdn/"), send_body)
        else:
            self._serve_resolve(self.path.lstrip("/"))

    def _serve_resolve(self, path: str) -> None:
        data = self.hub.files.get(path)
        if data is None:
            self._send_empty(404, {"X-Error-Code": "EntryNotFound"})
            return
        headers = {
            "Location": f"/cdn/{path}",
            "X-Linked-Size": str(len(data)),
            "X-Linked-Etag": f'"{_sha256(data)}"',
            "X-Repo-Commit": REVISION,
        }
        self._send_empty(302, headers)

    def _serve_cdn(self, path: str, send_body: bool) -> None:
        data = self.hub.corrupt.get(path, self.hub.files[path])
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and self.hub.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self._send_empty(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{_sha256(self.hub.files[path])}"')
        self.end_headers()
        if send_body:
            self._send_body(path, body)

    def _send_body(self, path: str, body: bytes) -> None:
        cut = self.hub.drop_after.pop(path, None)
        if cut is None:
            self.wfile.write(body)
            return
        # Send part of the body and close the connection, so the client gets a short read.
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True

    def _send_empty(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    state = FakeHub(files=dict(FILES))
    handler = type("Handler", (FakeHubHandler,), {"hub": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's real catalog file, model cache and hub settings out of every test."""
    user_file = tmp_path / "config" / "models.toml"
    monkeypatch.setattr(catalog_module, "user_catalog_path", lambda: user_file)
    monkeypatch.setenv("AGENT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)


def _catalog_text(instruct_sha256: str = "") -> str:
    instruct = FILES[INSTRUCT_GGUF]
    return f"""
default_instruct = "tiny-instruct"
default_thinking = "tiny-thinking"

[models.tiny-instruct]
title = "Tiny-VL-Instruct"
kind = "instruct"
repo = "{REPO_INSTRUCT}"
revision = "{REVISION}"
default_quant = "Q8_0"
mmproj = {{ file = "mmproj-tiny-instruct-F16.gguf", sha256 = "" }}

[models.tiny-instruct.quants]
Q8_0 = {{ file = "tiny-instruct-Q8_0.gguf", size = {len(instruct)}, sha256 = "{instruct_sha256}" }}
F16 = {{ file = "tiny-instruct-F16.gguf" }}

[models.tiny-thinking]
title = "Tiny-VL-Thinking"
kind = "thinking"
repo = "{REPO_THINKING}"
revision = "{REVISION}"
default_quant = "Q8_0"
mmproj = {{ file = "mmproj-tiny-thinking-F16.gguf" }}

[models.tiny-thinking.quants]
Q8_0 = {{ file = "tiny-thinking-Q8_0.gguf" }}
"""


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(_catalog_text(_sha256(FILES[INSTRUCT_GGUF])))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _plan(catalog_file: Path, hub: FakeHub, root: Path, target: str = "instruct"):
    return plan_pull(load_catalog(catalog_file), target, root=root, endpoint=hub.endpoint)


def test_pull_downloads_and_verifies(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    plan = _plan(catalog_file, hub, root)

    paths = pull(plan, backoff=0)

    gguf, mmproj = paths
    assert gguf == root / "tiny-instruct" / REVISION / "tiny-instruct-Q8_0.gguf"
    assert gguf.read_bytes() == FILES[INSTRUCT_GGUF]
    assert (
        mmproj.read_bytes()
        == FILES[f"{REPO_INSTRUCT}/resolve/{REVISION}/mmproj-tiny-instruct-F16.gguf"]
    )
    assert not list(root.rglob("*.part"))
    assert hub.gets(INSTRUCT_GGUF) == [None]


def test_pull_skips_installed_files(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    pull(_plan(catalog_file, hub, root), backoff=0)
    hub.requests.clear()

    plan = _plan(catalog_file, hub, root)
    pull(plan, backoff=0)

    assert plan.missing == ()
    assert plan.summary() == "Tiny-VL-Instruct Q8_0: already installed"
    assert hub.requests == []


def test_pull_resumes_after_dropped_connection(
    catalog_file: Path, hub: FakeHub, root: Path
) -> None:
    hub.drop_after[INSTRUCT_GGUF] = 120_000

    (gguf, _) = pull(_plan(catalog_file, hub, root), backoff=0)

    assert gguf.read_bytes() == FILES[INSTRUCT_GGUF]
    assert hub.gets(INSTRUCT_GGUF) == [None, "bytes=120000-"]


def test_pull_interrupted_then_resumed(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    hub.drop_after[INSTRUCT_GGUF] = 120_000
    plan = _plan(catalog_file, hub, root)

    with pytest.raises(DownloadError) as caught:
        pull(plan, max_attempts=1, backoff=0)

    part = plan.files[0].part_path
    message = str(caught.value)
    assert f"run `agent models pull instruct --endpoint {hub.endpoint}` again to resume" in message
    assert str(part) in message
    assert part.read_bytes() == FILES[INSTRUCT_GGUF][:120_000]
    assert not plan.files[0].path.exists()
    assert plan.download_bytes == len(FILES[INSTRUCT_GGUF]) - 120_000

    pull(_plan(catalog_file, hub, root), backoff=0)

    assert plan.files[0].path.read_bytes() == FILES[INSTRUCT_GGUF]
    assert hub.gets(INSTRUCT_GGUF) == [None, "bytes=120000-"]


def test_pull_restarts_when_range_ignored(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    hub.drop_after[INSTRUCT_GGUF] = 120_000
    hub.honour_range = False

    (gguf, _) = pull(_plan(catalog_file, hub, root), backoff=0)

    assert gguf.read_bytes() == FILES[INSTRUCT_GGUF]
    assert hub.gets(INSTRUCT_GGUF) == [None, "bytes=120000-"]


def test_pull_finishes_complete_part(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    plan = _plan(catalog_file, hub, root)
    part = plan.files[0].part_path
    part.parent.mkdir(parents=True)
    part.write_bytes(FILES[INSTRUCT_GGUF])

    pull(plan, backoff=0)

    assert plan.files[0].path.read_bytes() == FILES[INSTRUCT_GGUF]
    assert hub.gets(INSTRUCT_GGUF) == []


def test_pull_rejects_hash_mismatch(tmp_path: Path, hub: FakeHub, root: Path) -> None:
    # No sha256 in the catalog, so the hub's X-Linked-Etag is the reference.
    catalog_file = tmp_path / "catalog.toml"
    catalog_file.write_text(_catalog_text(instruct_sha256=""))
    good = FILES[INSTRUCT_GGUF]
    hub.corrupt[INSTRUCT_GGUF] = bytes(reversed(good))
    plan = _plan(catalog_file, hub, root)

    with pytest.raises(DownloadError) as caught:
        pull(plan, backoff=0)

    message = str(caught.value)
    assert f"the hub gives {_sha256(good)}" in message
    assert "tiny-instruct-Q8_0.gguf" in message
    assert "the file was deleted" in message
    assert not plan.files[0].path.exists()
    assert not plan.files[0].part_path.exists()


def test_pull_rejects_catalog_hub_conflict(tmp_path: Path, hub: FakeHub, root: Path) -> None:
    catalog_file = tmp_path / "catalog.toml"
    catalog_file.write_text(_catalog_text(instruct_sha256="ab" * 32))

    with pytest.raises(DownloadError) as caught:
        pull(_plan(catalog_file, hub, root), backoff=0)

    message = str(caught.value)
    assert f"has sha256 {_sha256(FILES[INSTRUCT_GGUF])} on the hub" in message
    assert f"the catalog expects {'ab' * 32}" in message
    assert hub.gets(INSTRUCT_GGUF) == []


def test_pull_checks_disk_space_first(
    catalog_file: Path, hub: FakeHub, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_usage = shutil.disk_usage(root.parent)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage._replace(free=1_000))

    with pytest.raises(DownloadError) as caught:
        pull(_plan(catalog_file, hub, root), backoff=0)

    message = str(caught.value)
    assert f"not enough free disk space in {root}" in message
    assert "the download needs 370.00 kB and 1.00 kB is free" in message
    assert "AGENT_MODELS_DIR" in message
    assert [method for method, _, _ in hub.requests] == ["HEAD", "HEAD"]


def test_pull_free_space_counts_part_file(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    plan = _plan(catalog_file, hub, root)
    part = plan.files[0].part_path
    part.parent.mkdir(parents=True)
    part.write_bytes(FILES[INSTRUCT_GGUF][:100_000])
    needed = 370_000 - 100_000

    pull(plan, backoff=0, free_bytes=lambda path: needed)

    assert plan.files[0].path.read_bytes() == FILES[INSTRUCT_GGUF]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_pull_reports_unreachable_hub(catalog_file: Path, root: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    plan = plan_pull(load_catalog(catalog_file), "instruct", root=root, endpoint=endpoint)

    with pytest.raises(DownloadError) as caught:
        pull(plan, backoff=0)

    message = str(caught.value)
    assert f"cannot reach the model hub at {endpoint}" in message
    assert f"run `agent models pull instruct --endpoint {endpoint}` again" in message
    assert "--instruct-model FILE --instruct-mmproj FILE" in message
    assert ENDPOINT_ENV in message


def test_pull_reports_missing_file(tmp_path: Path, hub: FakeHub, root: Path) -> None:
    catalog_file = tmp_path / "catalog.toml"
    catalog_file.write_text(_catalog_text())
    plan = plan_pull(
        load_catalog(catalog_file), "instruct", "F16", root=root, endpoint=hub.endpoint
    )

    with pytest.raises(DownloadError) as caught:
        pull(plan, backoff=0)

    message = str(caught.value)
    assert "HTTP 404" in message
    assert (
        f"tiny-instruct-F16.gguf was not found in {REPO_INSTRUCT} at revision {REVISION}" in message
    )
    assert "'tiny-instruct'" in message


def test_plan_rejects_unknown_quant(catalog_file: Path) -> None:
    with pytest.raises(
        ConfigError, match="quantization 'Q2_K' is not in the catalog for tiny-instruct"
    ):
        plan_pull(load_catalog(catalog_file), "instruct", "Q2_K")


def test_plan_command_repeats_options(catalog_file: Path, tmp_path: Path) -> None:
    catalog = load_catalog(catalog_file)
    plan = plan_pull(catalog, "all", "Q8_0", root=tmp_path / "elsewhere", endpoint="http://mirror")

    assert plan.command == (
        f"agent models pull all --quant Q8_0 --models-dir {tmp_path / 'elsewhere'} "
        "--endpoint http://mirror"
    )


def test_plan_size_picks_smaller_models(root: Path) -> None:
    plan = plan_pull(load_catalog(), "all", size="4b", root=root)

    assert [model.name for model, _ in plan.models] == [
        "qwen3-vl-4b-instruct",
        "qwen3-vl-4b-thinking",
    ]
    assert [item.spec.file for item in plan.files] == [
        "Qwen3VL-4B-Instruct-Q4_K_M.gguf",
        "mmproj-Qwen3VL-4B-Instruct-F16.gguf",
        "Qwen3VL-4B-Thinking-Q4_K_M.gguf",
        "mmproj-Qwen3VL-4B-Thinking-F16.gguf",
    ]
    assert plan.command == "agent models pull all --size 4b"


def test_plan_rejects_unknown_size() -> None:
    with pytest.raises(ConfigError, match="no thinking model of size '2b'; use one of: 4B, 8B"):
        plan_pull(load_catalog(), "thinking", size="2b")


def test_plan_rejects_size_with_model_name() -> None:
    with pytest.raises(ConfigError, match="--size applies to instruct, thinking, all"):
        plan_pull(load_catalog(), "qwen3-vl-2b-instruct", size="4b")


def test_plan_sizes_for_download_offer(catalog_file: Path, root: Path) -> None:
    plan = plan_pull(load_catalog(catalog_file), "instruct", root=root)

    assert plan.command == "agent models pull instruct"

    assert plan.download_bytes == 300_000
    assert not plan.sizes_known
    assert plan.summary() == (
        "Tiny-VL-Instruct Q8_0: 2 files, at least 300.00 kB to download "
        "(the catalog gives no size for 1 of them)"
    )


def test_default_model_paths_after_pull_all(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    catalog = load_catalog(catalog_file)
    assert default_model_paths(catalog, root) is None

    pull(plan_pull(catalog, "all", root=root, endpoint=hub.endpoint), backoff=0)

    paths = default_model_paths(catalog, root)
    assert paths is not None
    directory = root / "tiny-instruct" / REVISION
    assert paths.instruct_gguf == directory / "tiny-instruct-Q8_0.gguf"
    assert paths.instruct_mmproj == directory / "mmproj-tiny-instruct-F16.gguf"
    assert paths.thinking_gguf == root / "tiny-thinking" / REVISION / "tiny-thinking-Q8_0.gguf"
    assert (
        paths.thinking_mmproj == root / "tiny-thinking" / REVISION / "mmproj-tiny-thinking-F16.gguf"
    )
    assert [(entry.model.name, entry.quant) for entry in installed_models(catalog, root)] == [
        ("tiny-instruct", "Q8_0"),
        ("tiny-thinking", "Q8_0"),
    ]


def test_default_model_paths_without_thinking(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    catalog = load_catalog(catalog_file)
    pull(plan_pull(catalog, "instruct", root=root, endpoint=hub.endpoint), backoff=0)

    paths = default_model_paths(catalog, root)

    assert paths is not None
    assert paths.thinking_gguf is None
    assert paths.thinking_mmproj is None


def test_missing_models_error_offers_pull(catalog_file: Path, root: Path) -> None:
    error = missing_models_error(load_catalog(catalog_file), root)

    message = str(error)
    assert f"no Instruct model is installed in {root}" in message
    assert "Run `agent models pull instruct` to download Tiny-VL-Instruct Q8_0" in message
    assert "--instruct-model FILE --instruct-mmproj FILE" in message


def test_builtin_catalog_is_valid() -> None:
    catalog = load_catalog()

    assert catalog.default("instruct").repo == "Qwen/Qwen3-VL-8B-Instruct-GGUF"
    assert catalog.default("thinking").repo == "Qwen/Qwen3-VL-8B-Thinking-GGUF"
    assert {"qwen3-vl-2b-instruct", "qwen3-vl-4b-instruct", "qwen3-vl-4b-thinking"} <= set(
        catalog.models
    )
    for model in catalog.models.values():
        assert model.mmproj.file.startswith("mmproj-")
        assert model.gguf().file.endswith(f"-{model.default_quant}.gguf")


def test_user_catalog_overrides_builtin(tmp_path: Path) -> None:
    user_file = tmp_path / "config" / "models.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(_catalog_text())

    catalog = load_catalog()

    assert catalog.default_instruct == "tiny-instruct"
    assert catalog.sources[-1] == user_file
    assert "qwen3-vl-8b-instruct" in catalog.models


def test_user_catalog_path_in_config_dir() -> None:
    # The name imported at the top is the real function, not the fixture's replacement.
    path = user_catalog_path()

    assert path.name == "models.toml"
    assert path.parent.name == APP_NAME


def test_invalid_catalog_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        _catalog_text().replace('repo = "tester/Tiny-VL-Thinking-GGUF"', 'repo = "no-owner"')
    )

    with pytest.raises(ConfigError) as caught:
        load_catalog(bad)

    message = str(caught.value)
    assert f"model catalog {bad} is invalid" in message
    assert "models.tiny-thinking.repo: repo 'no-owner' is invalid" in message


def test_catalog_rejects_path_in_file_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_catalog_text().replace('"tiny-thinking-Q8_0.gguf"', '"../evil.gguf"'))

    with pytest.raises(ConfigError, match=r"file name '\.\./evil\.gguf' is invalid"):
        load_catalog(bad)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; check the --catalog path"):
        load_catalog(tmp_path / "nowhere.toml")


def test_models_list_shows_installed(
    catalog_file: Path, hub: FakeHub, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pull(
        plan_pull(load_catalog(catalog_file), "instruct", root=root, endpoint=hub.endpoint),
        backoff=0,
    )

    code = main(["models", "list", "--catalog", str(catalog_file), "--models-dir", str(root)])

    output = capsys.readouterr().out
    assert code == 0
    lines = output.splitlines()
    assert lines[0] == f"models directory: {root}"
    assert lines[2].split() == ["MODEL", "KIND", "QUANT", "SIZE", "STATUS", "GGUF", "MMPROJ"]
    directory = root / "tiny-instruct" / REVISION
    assert lines[3].split() == [
        "tiny-instruct",
        "(default)",
        "instruct",
        "Q8_0",
        "370.00",
        "kB",
        "installed",
        str(directory / "tiny-instruct-Q8_0.gguf"),
        str(directory / "mmproj-tiny-instruct-F16.gguf"),
    ]
    assert len(lines) == 4


def test_models_list_when_empty(
    catalog_file: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["models", "list", "--catalog", str(catalog_file), "--models-dir", str(root)])

    output = capsys.readouterr().out
    assert code == 0
    assert "no models installed" in output
    assert "run `agent models pull instruct` to download Tiny-VL-Instruct Q8_0" in output


def test_models_pull_command(
    catalog_file: Path, hub: FakeHub, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "models",
        "pull",
        "thinking",
        "--catalog",
        str(catalog_file),
        "--endpoint",
        hub.endpoint,
    ]

    code = main(argv)

    output = capsys.readouterr().out
    assert code == 0
    expected = (
        f"Tiny-VL-Thinking Q8_0: 2 files, size not in the catalog, from {hub.endpoint} into {root}"
    )
    assert expected in output
    assert f"installed {root / 'tiny-thinking' / REVISION / 'tiny-thinking-Q8_0.gguf'}" in output


def test_models_pull_command_unreachable(
    catalog_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"

    code = main(["models", "pull", "--catalog", str(catalog_file), "--endpoint", endpoint])

    assert code == 2
    assert f"error: cannot reach the model hub at {endpoint}" in capsys.readouterr().err


def _install_wrong_size(catalog_file: Path, hub: FakeHub, root: Path, size: int) -> Path:
    """Pull the Instruct model, then replace its GGUF with `size` bytes; return that path."""
    pull(_plan(catalog_file, hub, root), backoff=0)
    gguf = root / "tiny-instruct" / REVISION / "tiny-instruct-Q8_0.gguf"
    gguf.write_bytes(FILES[INSTRUCT_GGUF][:size] + bytes(max(size - 300_000, 0)))
    return gguf


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        (1_680, "tiny-instruct-Q8_0.gguf is incomplete: 1.68 kB of 300.00 kB"),
        (299_999, "tiny-instruct-Q8_0.gguf is incomplete: 299999 bytes of 300000 bytes"),
        (
            400_000,
            "tiny-instruct-Q8_0.gguf has the wrong size: 400.00 kB, but the catalog gives 300.00 kB",
        ),
    ],
    ids=["short", "one-byte-short", "long"],
)
def test_wrong_size_file_not_installed(
    catalog_file: Path, hub: FakeHub, root: Path, size: int, problem: str
) -> None:
    catalog = load_catalog(catalog_file)
    gguf = _install_wrong_size(catalog_file, hub, root, size)

    cached = cached_models(catalog, root)

    assert [(entry.gguf, entry.problems) for entry in cached] == [(gguf, (problem,))]
    assert installed_models(catalog, root) == []
    assert default_model_paths(catalog, root) is None
    assert f"installed in {root} ({problem})" in str(missing_models_error(catalog, root))
    assert [item.path for item in _plan(catalog_file, hub, root).missing] == [gguf]


def test_models_list_flags_wrong_size(
    catalog_file: Path, hub: FakeHub, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_wrong_size(catalog_file, hub, root, 1_680)

    code = main(["models", "list", "--catalog", str(catalog_file), "--models-dir", str(root)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[3].split()[4:8] == ["71.68", "kB", "wrong", "size"]
    assert lines[4] == (
        "tiny-instruct Q8_0 is not usable: tiny-instruct-Q8_0.gguf is incomplete: 1.68 kB of "
        "300.00 kB. Run `agent models pull tiny-instruct --quant Q8_0` to download it again"
    )
    assert len(lines) == 5


def test_pull_replaces_wrong_size_file(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    gguf = _install_wrong_size(catalog_file, hub, root, 1_680)

    pull(_plan(catalog_file, hub, root), backoff=0)

    assert gguf.read_bytes() == FILES[INSTRUCT_GGUF]
    assert installed_models(load_catalog(catalog_file), root)[0].gguf == gguf


@pytest.mark.parametrize("action", ["list", "pull"])
@pytest.mark.parametrize(
    ("below", "message"),
    [
        ("", "the model cache directory {dir} is a file, not a directory"),
        ("sub", "the model cache directory {dir} cannot be created because {file} is a file"),
    ],
    ids=["file", "below-file"],
)
def test_models_dir_is_file(
    tmp_path: Path,
    catalog_file: Path,
    capsys: pytest.CaptureFixture[str],
    action: str,
    below: str,
    message: str,
) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html></html>")
    directory = page / below if below else page
    # A closed port: the command must fail before it contacts the hub.
    endpoint = ["--endpoint", f"http://127.0.0.1:{_closed_port()}"] if action == "pull" else []
    options = ["--catalog", str(catalog_file), "--models-dir", str(directory), *endpoint]

    code = main(["models", action, *options])

    captured = capsys.readouterr()
    assert code == 2
    assert message.format(dir=directory, file=page) in captured.err
    assert "pass a directory with --models-dir DIR or set AGENT_MODELS_DIR to one" in captured.err
    assert captured.out == ""
    assert page.read_text() == "<html></html>"


def test_models_dir_env_is_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog_file: Path
) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html></html>")
    monkeypatch.setenv("AGENT_MODELS_DIR", str(page))
    catalog = load_catalog(catalog_file)

    with pytest.raises(ConfigError, match="is a file, not a directory"):
        default_model_paths(catalog)
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        plan_pull(catalog)


def test_pull_reports_file_in_model_path(catalog_file: Path, hub: FakeHub, root: Path) -> None:
    """A file where a model's folder belongs fails with a message, not a traceback."""
    root.mkdir()
    (root / "tiny-instruct").write_text("not a folder")

    with pytest.raises(ConfigError, match=f"cannot create the directory {root / 'tiny-instruct'}"):
        pull(_plan(catalog_file, hub, root), backoff=0)

"""The OpenAI-compatible HTTP backend against a loopback chat-completions server.

The server records each request body and returns replies from a script,
so tests check the request shape, reply parsing, retries, timeouts and error messages.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from agent.actions import LeftClick, action_schema, tool_call_schema
from agent.errors import ModelError
from agent.models.base import ChatModel, ChatRequest, ImagePart, Message, TextPart
from agent.models.http import OpenAICompatibleModel
from agent.parsing import ReplyStatus, parse_reply

TOOL_CALL = (
    "<tool_call>\n"
    '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 250]}}'
    "\n</tool_call>"
)


@dataclass
class Canned:
    """One scripted response: status, JSON body (or raw text), extra headers, delay in seconds."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(content: str | None = TOOL_CALL, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, **message},
            }
        ],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230},
    }


@dataclass
class FakeServer:
    script: list[Canned] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    base_url: str = ""


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            server.paths.append(self.path)
            server.headers.append(dict(self.headers))
            server.requests.append(json.loads(self.rfile.read(length)))
            canned = server.script.pop(0) if server.script else Canned(body=completion())
            if self.path != "/v1/chat/completions":
                canned = Canned(
                    404, {"error": {"message": "File Not Found", "type": "not_found_error"}}
                )
            time.sleep(canned.delay)
            body = canned.body if isinstance(canned.body, str) else json.dumps(canned.body)
            data = body.encode()
            try:
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # The client gave up first, as in the timeout test.

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer()
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(
        target=http_server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.base_url = f"http://127.0.0.1:{http_server.server_address[1]}/v1"
    yield state
    http_server.shutdown()
    http_server.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_model(server: FakeServer, sleeps: list[float], **options: Any) -> OpenAICompatibleModel:
    options = {"timeout": 5.0, "backoff": 0.5, "sleep": sleeps.append, **options}
    return OpenAICompatibleModel(server.base_url, "qwen3-vl-8b", **options)


def screenshot() -> Image.Image:
    image = Image.new("RGB", (64, 48), (30, 60, 90))
    for x in range(64):
        image.putpixel((x, x % 48), (255, x * 4, 0))
    return image


def image_request(image: Image.Image, **options: Any) -> ChatRequest:
    messages = (
        Message.text("system", "You are a computer-use agent."),
        Message("user", (TextPart("Click the button."), ImagePart(image))),
    )
    return ChatRequest(messages=messages, **options)


def decode_data_uri(uri: str, mime: str) -> Image.Image:
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri.removeprefix(prefix))))


def test_model_follows_protocol(server: FakeServer, sleeps: list[float]) -> None:
    with make_model(server, sleeps) as model:
        assert isinstance(model, ChatModel)
        assert model.name == "qwen3-vl-8b"


def test_request_shape_with_png(server: FakeServer, sleeps: list[float]) -> None:
    image = screenshot()
    with make_model(server, sleeps) as model:
        model.complete(image_request(image, max_tokens=256, temperature=0.0, seed=7))

    assert server.paths == ["/v1/chat/completions"]
    body = server.requests[0]
    assert body["model"] == "qwen3-vl-8b"
    assert body["max_tokens"] == 256
    assert body["temperature"] == 0.0
    assert body["seed"] == 7
    assert body["stream"] is False
    assert "response_format" not in body
    assert body["messages"][0] == {"role": "system", "content": "You are a computer-use agent."}
    user = body["messages"][1]
    assert user["role"] == "user"
    assert user["content"][0] == {"type": "text", "text": "Click the button."}
    assert user["content"][1]["type"] == "image_url"
    sent = decode_data_uri(user["content"][1]["image_url"]["url"], "image/png")
    assert sent.size == image.size
    assert sent.convert("RGB").tobytes() == image.tobytes()


def test_request_omits_unset_sampling(server: FakeServer, sleeps: list[float]) -> None:
    with make_model(server, sleeps) as model:
        model.complete(ChatRequest(messages=(Message.text("user", "hi"),)))

    body = server.requests[0]
    assert "temperature" not in body
    assert "seed" not in body


def test_request_with_jpeg(server: FakeServer, sleeps: list[float]) -> None:
    image = screenshot()
    with make_model(server, sleeps, image_format="jpeg") as model:
        model.complete(image_request(image))

    uri = server.requests[0]["messages"][1]["content"][1]["image_url"]["url"]
    sent = decode_data_uri(uri, "image/jpeg")
    assert sent.format == "JPEG"
    assert sent.size == image.size


def test_extra_body_merged(server: FakeServer, sleeps: list[float]) -> None:
    with make_model(server, sleeps, extra_body={"top_k": 20, "top_p": 0.8}) as model:
        model.complete(image_request(screenshot()))

    assert server.requests[0]["top_k"] == 20
    assert server.requests[0]["top_p"] == 0.8


def test_api_key_sent_as_bearer(server: FakeServer, sleeps: list[float]) -> None:
    with make_model(server, sleeps, api_key="sk-test") as model:
        model.complete(image_request(screenshot()))

    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_reply_text_usage_and_timings(server: FakeServer, sleeps: list[float]) -> None:
    image = Image.new("RGB", (1280, 800))
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(image))

    assert reply.text == TOOL_CALL
    assert reply.content == TOOL_CALL
    assert reply.reasoning == ""
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens == 1200
    assert reply.usage.completion_tokens == 30
    assert reply.usage.evaluated_tokens == 1200
    assert reply.usage.image_tokens == 40 * 25
    assert reply.timings["request_s"] > 0
    assert reply.timings["encode_s"] > 0


def test_reasoning_split_at_think_close(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(
        Canned(body=completion(f"The button is centred.\n</think>\n\n{TOOL_CALL}"))
    )
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot()))

    assert reply.reasoning == "The button is centred."
    assert reply.content == TOOL_CALL
    assert reply.text == f"The button is centred.\n</think>\n\n{TOOL_CALL}"


def test_reasoning_content_field(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(
        Canned(body=completion(TOOL_CALL, reasoning_content="The button is centred."))
    )
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot()))

    assert reply.reasoning == "The button is centred."
    assert reply.content == TOOL_CALL
    parsed = parse_reply(reply.text, thinking_opened=True)
    assert parsed.status == ReplyStatus.OK
    assert parsed.thinking == "The button is centred."


def test_reasoning_field_from_vllm(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(Canned(body=completion(TOOL_CALL, reasoning="Look left.")))
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot()))

    assert reply.reasoning == "Look left."


def test_constraint_sends_response_format(server: FakeServer, sleeps: list[float]) -> None:
    call = '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [5, 9]}}'
    server.script.append(Canned(body=completion(call)))
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot(), constrain_tool_call=True))

    response_format = server.requests[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "computer_use"
    assert response_format["json_schema"]["schema"] == tool_call_schema()
    parsed = parse_reply(reply.text)
    assert parsed.status == ReplyStatus.OK
    assert parsed.action == LeftClick(action="left_click", coordinate=(5.0, 9.0))


def test_tools_mode_writes_tool_call_text(server: FakeServer, sleeps: list[float]) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {
            "name": "computer_use",
            "arguments": '{"action": "left_click", "coordinate": [500, 250]}',
        },
    }
    server.script.append(Canned(body=completion(None, tool_calls=[call])))
    with make_model(server, sleeps, tool_call_constraint="tools") as model:
        reply = model.complete(image_request(screenshot(), constrain_tool_call=True))

    body = server.requests[0]
    assert body["tools"][0]["function"]["name"] == "computer_use"
    assert body["tools"][0]["function"]["parameters"] == action_schema()
    assert body["tool_choice"] == {"type": "function", "function": {"name": "computer_use"}}
    parsed = parse_reply(reply.text)
    assert parsed.status == ReplyStatus.OK
    assert parsed.action == LeftClick(action="left_click", coordinate=(500.0, 250.0))


def test_llama_server_cache_counts(server: FakeServer, sleeps: list[float]) -> None:
    body = completion()
    body["timings"] = {"prompt_n": 45, "prompt_ms": 120.0, "predicted_ms": 800.0}
    server.script.append(Canned(body=body))
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot()))

    assert reply.usage.evaluated_tokens == 45
    assert reply.timings["prompt_eval_s"] == pytest.approx(0.12)
    assert reply.timings["decode_s"] == pytest.approx(0.8)


def test_openai_cached_tokens(server: FakeServer, sleeps: list[float]) -> None:
    body = completion()
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 1000}
    server.script.append(Canned(body=body))
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot()))

    assert reply.usage.evaluated_tokens == 200


def test_retries_500_then_succeeds(server: FakeServer, sleeps: list[float]) -> None:
    server.script += [Canned(500, {"error": {"message": "slot busy"}}), Canned(body=completion())]
    with make_model(server, sleeps) as model:
        reply = model.complete(image_request(screenshot()))

    assert reply.content == TOOL_CALL
    assert len(server.requests) == 2
    assert server.requests[0] == server.requests[1]
    assert sleeps == [0.5]


def test_retry_backoff_doubles(server: FakeServer, sleeps: list[float]) -> None:
    server.script += [Canned(503, "busy"), Canned(502, "bad gateway"), Canned(body=completion())]
    with make_model(server, sleeps) as model:
        model.complete(image_request(screenshot()))

    assert sleeps == [0.5, 1.0]


def test_retry_after_on_429(server: FakeServer, sleeps: list[float]) -> None:
    server.script += [
        Canned(429, {"error": "rate limited"}, {"Retry-After": "2"}),
        Canned(body=completion()),
    ]
    with make_model(server, sleeps) as model:
        model.complete(image_request(screenshot()))

    assert sleeps == [2.0]


def test_500_after_all_retries(server: FakeServer, sleeps: list[float]) -> None:
    server.script += [Canned(500, {"error": {"message": "out of memory"}}) for _ in range(3)]
    with make_model(server, sleeps, max_retries=2) as model, pytest.raises(ModelError) as caught:
        model.complete(image_request(screenshot()))

    message = str(caught.value)
    url = f"{server.base_url}/chat/completions"
    assert message == f"POST {url} failed with HTTP 500 after 3 attempts: out of memory"
    assert len(server.requests) == 3


def test_404_names_url_and_status(server: FakeServer, sleeps: list[float]) -> None:
    wrong_base = server.base_url.removesuffix("/v1")
    model = OpenAICompatibleModel(wrong_base, "qwen3-vl-8b", sleep=sleeps.append)
    with model, pytest.raises(ModelError) as caught:
        model.complete(image_request(screenshot()))

    message = str(caught.value)
    assert f"POST {wrong_base}/chat/completions failed with HTTP 404: File Not Found" in message
    assert "check the base URL (it usually ends in /v1)" in message
    assert len(server.requests) == 1
    assert sleeps == []


def test_cancel_while_server_works(server: FakeServer, sleeps: list[float]) -> None:
    """A cancel while the server is still working returns at once; the late reply is dropped."""
    server.script = [Canned(body=completion(), delay=3.0)]
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)

    with make_model(server, sleeps) as model:
        timer.start()
        reply = model.complete(image_request(screenshot(), cancelled=cancel.is_set))

    assert reply.finish_reason == "cancelled"
    assert reply.text == ""
    assert len(server.requests) == 1


def test_error_with_cancel_check(server: FakeServer, sleeps: list[float]) -> None:
    """With a cancel check the request runs in a thread, and its errors still reach the caller."""
    server.script = [Canned(status=400, body={"error": {"message": "bad image"}})]

    with make_model(server, sleeps) as model, pytest.raises(ModelError) as caught:
        model.complete(image_request(screenshot(), cancelled=lambda: False))

    assert "failed with HTTP 400" in str(caught.value)


def test_401_suggests_api_key(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(Canned(401, {"error": {"message": "Invalid API Key"}}))
    with (
        make_model(server, sleeps) as model,
        pytest.raises(ModelError, match="HTTP 401: Invalid API Key; check the API key"),
    ):
        model.complete(image_request(screenshot()))


def test_timeout_names_url(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(Canned(body=completion(), delay=1.0))
    with make_model(server, sleeps, timeout=0.2) as model, pytest.raises(ModelError) as caught:
        model.complete(image_request(screenshot()))

    assert str(caught.value).startswith(
        f"POST {server.base_url}/chat/completions timed out after 0.2 s"
    )
    assert len(server.requests) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_retries_then_fails(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    model = OpenAICompatibleModel(url, "m", max_retries=2, backoff=0.25, sleep=sleeps.append)
    with model, pytest.raises(ModelError) as caught:
        model.complete(image_request(screenshot()))

    assert str(caught.value).startswith(
        f"cannot connect to {url}/chat/completions after 3 attempts"
    )
    assert sleeps == [0.25, 0.5]


def test_body_that_is_not_json(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(Canned(200, "<html>proxy error</html>"))
    with (
        make_model(server, sleeps) as model,
        pytest.raises(ModelError, match="returned a body that is not JSON"),
    ):
        model.complete(image_request(screenshot()))


def test_reply_without_choices(server: FakeServer, sleeps: list[float]) -> None:
    server.script.append(Canned(200, {"choices": []}))
    with (
        make_model(server, sleeps) as model,
        pytest.raises(ModelError, match=r"without choices\[0\]\.message"),
    ):
        model.complete(image_request(screenshot()))


def test_invalid_options_rejected() -> None:
    with pytest.raises(ValueError, match="image_format 'webp' is invalid"):
        OpenAICompatibleModel("http://127.0.0.1:1/v1", "m", image_format="webp")  # type: ignore[arg-type]

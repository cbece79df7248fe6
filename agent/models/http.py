"""A ChatModel that calls an OpenAI-compatible `/chat/completions` endpoint.

This serves llama-server, Ollama, vLLM, SGLang and hosted endpoints. Screenshots go
out as PNG or JPEG data URIs. The server renders the chat template and may resize
images. Qwen3-VL writes coordinates on a 0..1000 grid, so they survive the resize.

Tool-call constraint modes, chosen per server:

- `response_format` (default) sends the JSON schema of one `computer_use` call as
  `response_format`. The reply is that JSON object, which the reply parser accepts.
  NOTE: a Thinking model can reason first only where the server applies the schema
  after the reasoning; no server's behaviour here was tested.
- `tools` declares `computer_use` as a function and forces it with `tool_choice`, and
  the server's `tool_calls` are turned back into `<tool_call>` blocks in the reply text.
- `none` sends no constraint.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx
from PIL import Image

from agent.actions import TOOL_NAME, action_schema, tool_call_schema
from agent.errors import ModelError
from agent.models.base import ChatRequest, ImagePart, Message, ModelReply, TextPart, Usage
from agent.parsing import CALL_CLOSE, CALL_OPEN, THINK_CLOSE, THINK_OPEN, split_reasoning

logger = logging.getLogger(__name__)

ImageFormat = Literal["png", "jpeg"]
ToolCallConstraint = Literal["response_format", "tools", "none"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# How often a request waiting for the server checks whether it was cancelled, in seconds.
_CANCEL_POLL_S = 0.1
_MAX_RETRY_AFTER_S = 60.0
_IMAGE_PATCH_PX = 32


class OpenAICompatibleModel:
    """A model behind an OpenAI-compatible server, such as `llama-server --jinja`.

    `base_url` is the API root that `/chat/completions` is appended to, usually ending
    in `/v1`. `timeout` bounds each request in seconds. Connection failures, HTTP 429
    and 5xx are retried `max_retries` times, waiting `backoff`, 2 x `backoff`, ... seconds,
    or the server's Retry-After. Every failure raises ModelError naming the URL.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        image_format: ImageFormat = "png",
        jpeg_quality: int = 90,
        tool_call_constraint: ToolCallConstraint = "response_format",
        extra_body: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format {image_format!r} is invalid; use 'png' or 'jpeg'")
        if tool_call_constraint not in ("response_format", "tools", "none"):
            raise ValueError(
                f"tool_call_constraint {tool_call_constraint!r} is invalid; use "
                "'response_format', 'tools' or 'none'"
            )
        self.name = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.image_format: ImageFormat = image_format
        self.jpeg_quality = jpeg_quality
        self.tool_call_constraint: ToolCallConstraint = tool_call_constraint
        # Server-specific sampling fields such as top_k, merged into every request.
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)), headers=headers
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def complete(self, request: ChatRequest) -> ModelReply:
        """Send one chat request and return the reply with the reasoning split off."""
        started = time.perf_counter()
        payload = self.build_payload(request)
        encoded = time.perf_counter()
        data = self._post_until_cancelled(payload, request.cancelled)
        finished = time.perf_counter()
        if data is None:
            timings = {"encode_s": encoded - started, "request_s": finished - encoded}
            return ModelReply(text="", timings=timings, finish_reason="cancelled")

        reply = parse_completion(
            data, self.url, image_tokens=_estimate_image_tokens(request.messages)
        )
        timings = {"encode_s": encoded - started, "request_s": finished - encoded, **reply.timings}
        if request.on_text is not None:
            # NOTE: requests are sent with stream=false, so the whole text arrives at once.
            request.on_text(reply.text)
        return dataclasses.replace(reply, timings=timings)

    def build_payload(self, request: ChatRequest) -> dict[str, Any]:
        """Build the JSON body of a chat-completions request."""
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": [self._message_json(message) for message in request.messages],
            "max_tokens": request.max_tokens,
            "stream": False,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.seed is not None:
            payload["seed"] = request.seed
        # NOTE: request.reasoning_budget is not sent, because OpenAI-compatible servers share
        # no field for it. Limit the reasoning on the server or through max_tokens.
        if request.constrain_tool_call:
            payload.update(_constraint_fields(self.tool_call_constraint))
        payload.update(self.extra_body)
        return payload

    def _message_json(self, message: Message) -> dict[str, Any]:
        if all(isinstance(part, TextPart) for part in message.content):
            text = "".join(part.text for part in message.content if isinstance(part, TextPart))
            return {"role": message.role, "content": text}
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                url = encode_image(part.image, self.image_format, self.jpeg_quality)
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append({"type": "text", "text": part.text})
        return {"role": message.role, "content": parts}

    def _post_until_cancelled(
        self, payload: dict[str, Any], cancelled: Callable[[], bool] | None
    ) -> dict[str, Any] | None:
        """Post `payload`, or return None once `cancelled` returns True while waiting.

        httpx cannot interrupt a request from another thread. The request therefore runs in
        a daemon thread, and a cancel leaves it behind and discards its reply.
        """
        if cancelled is None:
            return self._post(payload)
        result: dict[str, Any] = {}
        done = threading.Event()

        def post() -> None:
            try:
                result["data"] = self._post(payload)
            except BaseException as exc:  # handed to the caller's thread below
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=post, name=f"POST {self.url}", daemon=True).start()
        while not done.wait(_CANCEL_POLL_S):
            if cancelled():
                logger.info("request to %s cancelled; its reply will be discarded", self.url)
                return None
        if "error" in result:
            raise result["error"]
        data: dict[str, Any] = result["data"]
        return data

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._client.post(self.url, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt < attempts:
                    self._wait_before_retry(attempt, attempts, str(exc) or type(exc).__name__, None)
                    continue
                raise ModelError(
                    f"cannot connect to {self.url} after {attempts} attempts ({exc}); check that "
                    "the server is running and that the base URL is right"
                ) from exc
            except httpx.TimeoutException as exc:
                raise ModelError(
                    f"POST {self.url} timed out after {self.timeout:g} s; raise the timeout or "
                    "check that the server is not overloaded"
                ) from exc
            except httpx.TransportError as exc:
                raise ModelError(f"POST {self.url} failed: {exc}") from exc

            if response.status_code in _RETRY_STATUSES and attempt < attempts:
                reason = f"HTTP {response.status_code}"
                self._wait_before_retry(attempt, attempts, reason, _retry_after_s(response))
                continue
            if response.status_code >= 400:
                raise ModelError(self._status_message(response, attempt))
            return _decode_json(response, self.url)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait_before_retry(
        self, attempt: int, attempts: int, reason: str, retry_after: float | None
    ) -> None:
        delay = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
        logger.warning(
            "POST %s failed (%s); retrying in %.1f s, attempt %d of %d",
            self.url,
            reason,
            delay,
            attempt + 1,
            attempts,
        )
        self._sleep(delay)

    def _status_message(self, response: httpx.Response, attempts: int) -> str:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"POST {self.url} failed with HTTP {response.status_code}{tries}"
        detail = _error_detail(response)
        if detail:
            message += f": {detail}"
        if response.status_code == 404:
            message += (
                f"; check the base URL (it usually ends in /v1) and the model name {self.name!r}"
            )
        elif response.status_code in (401, 403):
            message += "; check the API key"
        return message


def encode_image(
    image: Image.Image, image_format: ImageFormat = "png", jpeg_quality: int = 90
) -> str:
    """Encode an image as a data URI. PNG is lossless, and JPEG is smaller for photos and video."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        # Level 1 encoded a synthetic 1920x1080 screenshot about 3 times faster than the
        # default level 6, at the same size (Pillow 13, one 2-core machine).
        image.save(buffer, format="PNG", compress_level=1)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{image_format};base64,{encoded}"


def _constraint_fields(mode: ToolCallConstraint) -> dict[str, Any]:
    if mode == "response_format":
        schema = {"name": TOOL_NAME, "strict": True, "schema": tool_call_schema()}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "tools":
        function = {
            "name": TOOL_NAME,
            "description": "Use the mouse and keyboard.",
            "parameters": action_schema(),
        }
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
        }
    return {}


def parse_completion(data: Mapping[str, Any], url: str, *, image_tokens: int = 0) -> ModelReply:
    """Turn a chat-completions response body into a ModelReply.

    The reasoning comes from `reasoning_content` (llama-server, SGLang) or `reasoning`
    (vLLM, Ollama) when the server splits it off. The reply text then gets it back as
    `<think>...</think>`, so the reply parser gets the same text as from the in-process
    backend. Otherwise the reasoning is split from the content at `</think>`.
    """
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(
            f"POST {url} returned a reply without choices[0].message: {_clip(data)}"
        ) from exc

    content = _content_text(message.get("content"))
    calls = _tool_calls_text(message.get("tool_calls"))
    if calls:
        content = f"{content}\n{calls}" if content else calls

    server_reasoning = message.get("reasoning_content", message.get("reasoning"))
    if isinstance(server_reasoning, str):
        reasoning, answer = server_reasoning.strip(), content.strip()
        text = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"
    else:
        reasoning, answer, _ = split_reasoning(content)
        text = content

    return ModelReply(
        text=text,
        reasoning=reasoning,
        content=answer,
        usage=_usage(data, image_tokens),
        timings=_server_timings(data),
        finish_reason=str(choice.get("finish_reason") or "stop"),
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _tool_calls_text(tool_calls: Any) -> str:
    """Write server-parsed tool calls back as the `<tool_call>` blocks the model emitted.

    The arguments are copied as the server sent them, so the reply parser reports broken
    JSON to the model the same way as from the in-process backend.
    """
    if not isinstance(tool_calls, list):
        return ""
    blocks = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        name = json.dumps(function.get("name", ""))
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        blocks.append(f'{CALL_OPEN}\n{{"name": {name}, "arguments": {arguments}}}\n{CALL_CLOSE}')
    return "\n".join(blocks)


def _usage(data: Mapping[str, Any], image_tokens: int) -> Usage:
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    evaluated = prompt_tokens
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if isinstance(cached, int):
        evaluated = prompt_tokens - cached
    server_timings = data.get("timings") or {}
    if isinstance(server_timings.get("prompt_n"), int):
        # llama-server counts the prompt tokens it evaluated; the rest came from its cache.
        evaluated = server_timings["prompt_n"]
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=int(usage.get("completion_tokens") or 0),
        image_tokens=image_tokens,
        evaluated_tokens=evaluated,
    )


def _server_timings(data: Mapping[str, Any]) -> dict[str, float]:
    server_timings = data.get("timings") or {}
    timings = {}
    for key, name in (("prompt_ms", "prompt_eval_s"), ("predicted_ms", "decode_s")):
        value = server_timings.get(key)
        if isinstance(value, int | float):
            timings[name] = value / 1000
    return timings


def _estimate_image_tokens(messages: tuple[Message, ...]) -> int:
    """Estimate image tokens as one per 32x32 px, as Qwen3-VL's resize rounds each side.

    NOTE: this is an estimate, because a server may resize images to another token budget.
    """
    total = 0
    for message in messages:
        for image in message.images:
            columns = max(1, round(image.width / _IMAGE_PATCH_PX))
            rows = max(1, round(image.height / _IMAGE_PATCH_PX))
            total += columns * rows
    return total


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        return None


def _decode_json(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ModelError(
            f"POST {url} returned a body that is not JSON: {_clip(response.text)}"
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(f"POST {url} returned JSON that is not an object: {_clip(data)}")
    return data


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _clip(response.text.strip())
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return _clip(error["message"])
    if isinstance(error, str):
        return _clip(error)
    return _clip(body)


def _clip(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."

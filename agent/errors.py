"""The exception tree of the agent.

Every error the agent raises on purpose derives from `AgentError`. Errors from
other libraries (pyautogui, Playwright, llama.cpp, httpx) are translated into
these classes at the boundary where they are caught, with `raise ... from exc`.

    AgentError
    ├── InvalidReplyError      a model reply that cannot run; its message goes back to the model
    ├── GeometryError          a point outside the captured screen region
    ├── KeyNameError           a key name that no executor can press
    ├── ConfigError            a bad option, path or setting given by the user
    ├── ModelError             a model backend failed to load or answer
    │   └── ContextOverflowError   a prompt that does not fit the context window
    ├── ExecutorError          an executor could not start or lost its target
    ├── RecordingError         a recording that cannot be read or written
    └── DownloadError          a model download failed
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class InvalidReplyError(AgentError):
    """A model reply that cannot run. The message is written to be sent back to the model."""


class GeometryError(AgentError, ValueError):
    """A coordinate or point that falls outside the captured screen region."""


class KeyNameError(AgentError, ValueError):
    """A key name that the normaliser does not know."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(
            message
            or f"unknown key {key!r}; use a key name such as 'enter', 'ctrl', 'f5' or one character"
        )


class ConfigError(AgentError):
    """A bad option, path or setting given by the user."""


class ModelError(AgentError):
    """A model backend that failed to load or to answer."""


class ContextOverflowError(ModelError):
    """A prompt that does not fit the model's context window, detected before decoding."""


class ExecutorError(AgentError):
    """An executor that could not start, or lost the screen or page it drives."""


class RecordingError(AgentError):
    """A recording that cannot be read or written."""


class DownloadError(AgentError):
    """A model download that failed or did not verify."""

"""Run MiniWoB++ tasks in a `BrowserExecutor`, as an outside check of the agent.

MiniWoB++ (PyPI `miniwob`, 1.1.0) ships small web tasks as plain HTML pages. Each
page has a seeded problem generator and scores itself: `WOB_RAW_REWARD_GLOBAL` is 1
on success and -1 on failure. `WOB_REWARD_GLOBAL` also shrinks with elapsed time,
so this module reads the raw reward.

    task = MiniWobTask("click-button", seed=3)
    with BrowserExecutor(task.url) as executor:
        instruction = task.start(executor)
        ...  # observe and execute actions
        reward = task.wait_done(executor)

The harness reads page state through the executor's Playwright `page`. Actions go
through `execute()` like any other run. Most tasks open over `file://`. The flight
booking tasks load data from a sibling folder and need an HTTP server instead.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from agent.errors import ConfigError, ExecutorError

# The pages' own limit is 10 s, which ends an episode with reward -1 while a local
# model is still thinking. 60 s leaves room for a few model steps.
EPISODE_MAX_TIME_MS = 60_000
LOAD_TIMEOUT_S = 10.0


class HasPage(Protocol):
    """An executor that exposes the Playwright page it drives, such as `BrowserExecutor`."""

    @property
    def page(self) -> Page: ...


def html_dir() -> Path:
    """Return the folder of MiniWoB++ task pages inside the installed `miniwob` package."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the miniwob package is not installed; install it with `pip install miniwob==1.1.0`"
        )
    folder = Path(spec.origin).parent / "html" / "miniwob"
    if not folder.is_dir():
        raise ConfigError(
            f"the miniwob package has no task pages at {folder}; reinstall miniwob==1.1.0"
        )
    return folder


def task_names() -> list[str]:
    """Return the names of all task pages, such as "click-button"."""
    return sorted(path.stem for path in html_dir().glob("*.html"))


@dataclass(frozen=True)
class MiniWobTask:
    """One MiniWoB++ task and the seed of its episode; the same seed gives the same problem."""

    name: str
    seed: int = 0
    episode_max_time_ms: int = EPISODE_MAX_TIME_MS

    def __post_init__(self) -> None:
        if not self.path.is_file():
            raise ConfigError(
                f"MiniWoB++ task {self.name!r} not found in {self.path.parent}; "
                "use a page name such as 'click-button', one of the .html files in that folder"
            )

    @property
    def path(self) -> Path:
        return html_dir() / f"{self.name}.html"

    @property
    def url(self) -> str:
        """The task page as a `file://` URL."""
        return self.path.as_uri()

    def start(self, executor: HasPage) -> str:
        """Open the task page, start a seeded episode and return its instruction.

        The page is reloaded, so one browser serves any number of tasks in turn.
        """
        page = executor.page
        timeout_ms = LOAD_TIMEOUT_S * 1000
        try:
            page.goto(self.url, wait_until="load", timeout=timeout_ms)
            page.wait_for_selector("#sync-task-cover", state="attached", timeout=timeout_ms)
            page.evaluate(
                """([seed, maxTime]) => {
                    Math.seedrandom(seed);
                    core.EPISODE_MAX_TIME = maxTime;
                    core.startEpisodeReal();
                }""",
                [self.seed, self.episode_max_time_ms],
            )
            page.wait_for_function("WOB_TASK_READY === true", timeout=timeout_ms)
        except PlaywrightError as exc:
            raise ExecutorError(
                f"MiniWoB++ task {self.name!r} did not start: {exc.message}"
            ) from exc
        return self.utterance(executor)

    def utterance(self, executor: HasPage) -> str:
        """Return the task's instruction, for example 'Click on the "ok" button.'."""
        return str(self._evaluate(executor, "core.getUtterance()"))

    def raw_reward(self, executor: HasPage) -> float | None:
        """Return the episode's raw reward (1 success, -1 failure), or None while it runs."""
        done, reward = self._evaluate(executor, "[WOB_DONE_GLOBAL, WOB_RAW_REWARD_GLOBAL]")
        return float(reward) if done else None

    def wait_done(self, executor: HasPage, timeout_s: float = 5.0) -> float:
        """Wait until the episode ends and return its raw reward."""
        try:
            executor.page.wait_for_function("WOB_DONE_GLOBAL === true", timeout=timeout_s * 1000)
        except PlaywrightError as exc:
            raise ExecutorError(
                f"MiniWoB++ task {self.name!r} did not end within {timeout_s:g} s: {exc.message}"
            ) from exc
        reward = self.raw_reward(executor)
        assert (
            reward is not None
        )  # WOB_DONE_GLOBAL was just true, and only a new episode resets it.
        return reward

    def reward_reason(self, executor: HasPage) -> str:
        """Return the reason the page gave for its reward, or "" when it gave none."""
        return str(self._evaluate(executor, "WOB_REWARD_REASON || ''"))

    def _evaluate(self, executor: HasPage, expression: str) -> Any:
        try:
            return executor.page.evaluate(expression)
        except PlaywrightError as exc:
            raise ExecutorError(
                f"cannot read MiniWoB++ state of {self.name!r}: {exc.message}"
            ) from exc

"""Browser fixtures: a loopback HTTP server for tests/pages and a BrowserExecutor factory.

Pages are served over HTTP on 127.0.0.1 because Playwright's routing, and so the
URL allow-list, does not see `file://` requests. Executors are headless and use
the system Chromium when there is one.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from executors.browser import BrowserExecutor

PAGES_DIR = Path(__file__).parent / "pages"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # Keep request lines out of the test output.


@pytest.fixture(scope="session")
def pages_url() -> Iterator[str]:
    """Serve tests/pages on a free loopback port and return the base URL, ending in '/'."""
    handler = functools.partial(_QuietHandler, directory=str(PAGES_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def make_browser() -> Iterator[Callable[..., BrowserExecutor]]:
    """Return a function that starts a BrowserExecutor; every one is closed after the test."""
    from executors.browser import BrowserExecutor  # Playwright loads only for browser tests.

    started: list[BrowserExecutor] = []

    def make(start_url: str = "about:blank", **options: Any) -> BrowserExecutor:
        executor = BrowserExecutor(start_url, **options).start()
        started.append(executor)
        return executor

    yield make
    for executor in started:
        executor.close()

"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's websocket client:
enough to open a page, run JavaScript in it, wait for it, read its console errors and take
screenshots. The dashboard's tests and benchmark use it; `find_chromium` is None when no
Chromium is installed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Self

import aiohttp

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage", "--remote-debugging-port=0",
    "--window-size=1280,1800",
)


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, _NAMES) if path), None)


class PageError(Exception):
    """A CDP command failed, or JavaScript threw."""


class Browser:
    """One Chromium process and its first tab. Use as `async with Browser(path) as browser:`."""

    def __init__(self, executable: str) -> None:
        self._executable = executable
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.console_errors: list[str] = []

    async def __aenter__(self) -> Self:
        self._profile = tempfile.TemporaryDirectory(prefix="infermeter-chromium-", ignore_cleanup_errors=True)
        self._process = await asyncio.create_subprocess_exec(
            self._executable, *_FLAGS, f"--user-data-dir={self._profile.name}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        port = await self._devtools_port(Path(self._profile.name) / "DevToolsActivePort")
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        url = next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
        self._socket = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        return self

    async def __aexit__(self, *exc_info) -> None:
        # Browser.close lets Chromium end its helper processes before the profile is removed.
        with contextlib.suppress(PageError, asyncio.TimeoutError, aiohttp.ClientError):
            await asyncio.wait_for(self._socket.send_json({"id": next(self._ids), "method": "Browser.close"}), 5)
        try:
            await asyncio.wait_for(self._process.wait(), 10)
        except asyncio.TimeoutError:
            self._process.kill()
            await self._process.wait()
        self._reader.cancel()
        await self._socket.close()
        await self._session.close()
        self._profile.cleanup()

    async def _devtools_port(self, path: Path, timeout_s: float = 30.0) -> int:
        """Chromium writes the port it chose (--remote-debugging-port=0) into its profile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise PageError(f"chromium exited with status {self._process.returncode}")
            lines = path.read_text().splitlines() if path.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            await asyncio.sleep(0.05)
        raise PageError("chromium did not open its DevTools port")

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._event(data["method"], data.get("params", {}))

    def _event(self, method: str, params: dict) -> None:
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.console_errors.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console_errors.append(details.get("exception", {}).get("description", details["text"]))

    async def send(self, method: str, **params) -> dict:
        message_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise PageError(f"{method}: {reply['error']}")
        return reply["result"]

    async def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited when it is a promise), as JSON."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise PageError(details.get("exception", {}).get("description", details["text"]))
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def wait_for(self, expression: str, timeout_s: float = 30.0):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = await self.evaluate(expression)
            except PageError:
                value = None  # the page is between documents
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s} s for {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

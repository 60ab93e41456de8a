"""Headless chromium driven over the DevTools protocol (its websocket), for tests that check what
a person sees: the DOM of a page, never its pixels (screenshots are only saved for the README).

    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page("http://127.0.0.1:6080/")
        await page.wait("document.querySelector('#state').dataset.state === 'connected'")

Chromium runs with --no-sandbox: CI runs the tests as root, where its sandbox refuses to start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import websockets

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> Optional[str]:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(AssertionError):
    pass


class Browser:
    def __init__(self, proc: subprocess.Popen, ws, log_path: Path):
        self.proc, self.ws, self.log_path = proc, ws, log_path
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, workdir: Path, timeout: float = 30.0):
        exe = find_chromium()
        assert exe, "chromium is not installed (scripts/install-deps.sh installs it)"
        profile = Path(workdir) / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        log_path = Path(workdir) / "chromium.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        browser = None
        try:
            # Chromium writes the port it chose and the browser target's path to this file.
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise CdpError(f"chromium did not start (exit {proc.poll()}): "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().split()[:2]
            ws = await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
            browser = cls(proc, ws, log_path)
            yield browser
        finally:
            if browser:
                with contextlib.suppress(Exception):  # a clean exit is quicker than SIGTERM
                    await browser.call("Browser.close", timeout=3)
                browser.reader.cancel()
                await browser.ws.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(3)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            fut = self.pending.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)

    async def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
                   timeout: float = 15.0) -> dict:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply["result"]

    async def new_page(self, url: str, width: int = 1200, height: int = 760) -> "Page":
        target = (await self.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.call("Target.attachToTarget",
                                   {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, session)
        await page.call("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        await page.call("Page.navigate", {"url": url})
        await page.wait("document.readyState === 'complete' && location.href !== 'about:blank'",
                        what=f"{url} to load")
        return page


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    async def call(self, method: str, params: Optional[dict] = None) -> dict:
        return await self.browser.call(method, params, self.session)

    async def eval(self, expression: str, timeout: float = 15.0) -> Any:
        """The value of a JS expression (awaited if it is a promise)."""
        res = await self.browser.call("Runtime.evaluate",
                                      {"expression": expression, "awaitPromise": True,
                                       "returnByValue": True}, self.session, timeout + 5)
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"{text}\n  in: {expression[:300]}")
        return res["result"].get("value")

    async def wait(self, condition: str, timeout: float = 10.0, what: str = "") -> Any:
        """Waits in the page until the JS expression `condition` is truthy; returns its value.
        Fails with `what` (or the expression) and the page's text after `timeout` seconds."""
        js = f"""new Promise((resolve, reject) => {{
          const start = performance.now();
          (function poll() {{
            let v;
            try {{ v = ({condition}); }} catch (e) {{ v = undefined; }}
            if (v) resolve(v);
            else if (performance.now() - start > {timeout * 1000}) reject(new Error('timeout'));
            else setTimeout(poll, 25);
          }})();
        }})"""
        try:
            return await self.eval(js, timeout)
        except CdpError as e:
            if "timeout" not in str(e):
                raise
            body = await self.eval("document.body ? document.body.innerText : ''")
            raise CdpError(f"timed out after {timeout}s waiting for {what or condition}; "
                           f"page text:\n{str(body)[:1500]}") from None

    async def screenshot(self, path: Path) -> None:
        data = (await self.call("Page.captureScreenshot", {"format": "png"}))["data"]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(data))

"""A small headless-Chromium driver over the DevTools protocol (aiohttp's
websocket client): enough to open a page with HTTP basic credentials, read
the answer's status, run JavaScript, wait for a navigation and take a
screenshot.  Chromium is Debian's `chromium` package; the browser is started
here and stopped by its pid."""

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="cdp-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",  # root in a container
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,900",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        self.ws_url = None
        while time.monotonic() < deadline and self.ws_url is None:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                self.ws_url = m.group(1)
            elif not line and self.proc.poll() is not None:
                break
        if self.ws_url is None:
            self.close()
            raise RuntimeError("chromium did not start its DevTools endpoint")
        self.port = int(re.search(r":(\d+)/", self.ws_url).group(1))
        self.loop = asyncio.new_event_loop()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "loop", None):
            self.loop.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    def page(self):
        return Page(self)


class Page:
    """One tab, driven through its own websocket."""

    def __init__(self, browser):
        self.browser = browser
        self.events = []
        self.n = 0
        browser.run(self._open())

    async def _open(self):
        self.http = aiohttp.ClientSession()
        async with self.http.put(f"http://127.0.0.1:{self.browser.port}/json/new?about:blank") as r:
            target = json.loads(await r.text())
        self.ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
        await self._call("Page.enable")
        await self._call("Network.enable")

    async def _call(self, method, **params):
        self.n += 1
        n = self.n
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def _wait_event(self, method, since):
        while True:
            for msg in self.events[since:]:
                if msg.get("method") == method:
                    return msg
            since = len(self.events)
            msg = json.loads((await self.ws.receive()).data)
            self.events.append(msg)

    def call(self, method, **params):
        return self.browser.run(self._call(method, **params))

    def basic_auth(self, user, password):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})

    def _document_status(self, since):
        """Status and URL of the last main-document response since `since`."""
        found = None
        for msg in self.events[since:]:
            if msg.get("method") == "Network.responseReceived" and msg["params"].get("type") == "Document":
                found = msg["params"]["response"]
        return (found["status"], found["url"]) if found else (None, None)

    def goto(self, url):
        """Navigate and wait for the load event: (status, final URL)."""
        since = len(self.events)
        self.call("Page.navigate", url=url)
        self.browser.run(self._wait_event("Page.loadEventFired", since))
        return self._document_status(since)

    def js(self, expression):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JavaScript failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def submit(self, expression):
        """Run JavaScript that submits a form; wait for the page it leads to:
        (status of each document response, final URL)."""
        since = len(self.events)
        self.js(expression)
        self.browser.run(self._wait_event("Page.loadEventFired", since))
        statuses = [
            m["params"]["response"]["status"]
            for m in self.events[since:]
            if m.get("method") == "Network.responseReceived" and m["params"].get("type") == "Document"
        ]
        return statuses, self.js("location.href")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))
        return path

    def close(self):
        async def _close():
            await self.ws.close()
            await self.http.close()

        self.browser.run(_close())

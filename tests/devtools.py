"""Headless Chromium driven over the Chrome DevTools Protocol with the standard library only.

`--remote-debugging-pipe` makes Chromium read protocol commands from file descriptor 3 and
write replies and events to descriptor 4, each message JSON ending in a NUL byte; no websocket
client or browser-automation package is needed. A Page loads a URL and records every request
and every console error or uncaught exception, dispatches real mouse input, evaluates scripts
and takes screenshots.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path

HIGH_FD = 10            # the pipe ends are moved above the descriptors the child's dup2 writes


class Page:
    """One Chromium process with one page (a tab), attached over the pipe."""

    def __init__(self, chromium: Path, flags: list[str], user_dir: Path, width: int, height: int):
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD) for fd in (to_child, from_child)]
        for fd in (to_child, from_child):
            os.close(fd)

        def child_fds():                # in the child, before exec: the two ends as fds 3 and 4
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([str(chromium), *flags, "--remote-debugging-pipe", f"--user-data-dir={user_dir}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     preexec_fn=child_fds, close_fds=False,   # keep 3 and 4 (others are not inheritable)
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in high:
            os.close(fd)
        self._buffer, self._id, self.events = b"", 0, []
        target = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable", session=self.session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False}, session=self.session)

    def _message(self, timeout: float) -> dict:
        """The next message from Chromium (events are also kept in self.events)."""
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("no message from Chromium")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        """Run one protocol command and return its result."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def command(self, method: str, **params) -> dict:
        """A command to the page's session."""
        return self.send(method, params, session=self.session)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        """Wait for (and consume) the next event named `method`."""
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for i, event in enumerate(self.events[seen:], seen):
                if event["method"] == method:
                    self.events[i] = {"method": "consumed: " + method, "params": event["params"]}
                    return event["params"]
            seen = len(self.events)
            self._message(deadline - time.monotonic())

    def open(self, url: str) -> None:
        """Navigate to `url` and wait for its load event; forget the events of earlier pages."""
        self.events.clear()
        self.command("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, pressed: bool = False, modifiers: int = 0) -> None:
        """One mouse event: kind is mouseMoved, mousePressed or mouseReleased (left button)."""
        button = "left" if pressed or kind != "mouseMoved" else "none"
        self.command("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, modifiers=modifiers,
                     buttons=1 if pressed or kind == "mousePressed" else 0, clickCount=1)

    def drag(self, x: float, y: float, dx: float, dy: float, steps: int = 8) -> None:
        """Press the left button at (x, y), move by (dx, dy) in `steps` moves, release."""
        self.mouse("mousePressed", x, y)
        for k in range(1, steps + 1):
            self.mouse("mouseMoved", x + dx * k / steps, y + dy * k / steps, pressed=True)
        self.mouse("mouseReleased", x + dx, y + dy)

    def click(self, x: float, y: float) -> None:
        """A left click at (x, y)."""
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def screenshot(self, clip: dict | None = None) -> bytes:
        """PNG bytes of the viewport, or of clip {x, y, width, height} in CSS px (may reach below it)."""
        params = {"format": "png"}
        if clip:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        return base64.b64decode(self.command("Page.captureScreenshot", **params)["data"])

    def requested_urls(self) -> list[str]:
        """Every URL the page requested since it was opened."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries since the page was opened."""
        out = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description", str(p["exceptionDetails"])))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"]["text"])
        return out

    def close(self) -> None:
        """Close the browser (kill it if it does not exit) and the pipe."""
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)

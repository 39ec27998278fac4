"""Load local HTML reports in headless Chromium; collect JavaScript errors and facts about the rendered figures.

No third-party dependency: Chromium (Debian's ``chromium``, which .ci/run installs) is driven over the Chrome DevTools
Protocol through ``--remote-debugging-pipe`` (fd 3 = commands in, fd 4 = events and results out, NUL-terminated
JSON). Errors are uncaught exceptions, ``console.error``/``console.assert`` calls and error log entries (a resource
that failed to load). Every host name fails to resolve, so a report that needs a CDN fails here as it would offline.

    errors, facts = load("report.html")
    assert errors == []
    assert facts["plotly_unrendered"] == [] and facts["images_broken"] == []

For many pages reuse one browser (about 1 s start-up each time otherwise):

    with Browser() as b:
        errors, facts = b.load("a.html")
"""
from __future__ import annotations

import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import tempfile
import time

__all__ = ["Browser", "load", "find_chromium", "CDPError"]

# Facts about figures, evaluated in the page after load + settle.  Lazy images are
# forced eager and awaited so naturalWidth is meaningful.
FACTS_JS = r"""
(async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await Promise.all(imgs.filter(i => !i.complete).map(i => new Promise(r => {
    i.addEventListener('load', r, {once: true});
    i.addEventListener('error', r, {once: true});
    setTimeout(r, 5000);
  })));
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const plotInfo = plots.map((p, k) => ({
    id: p.id || String(k),
    main_svgs: p.querySelectorAll('.main-svg').length,
    traces: (p._fullData || []).length,
    trace_nodes: p.querySelectorAll('.trace, .gl-container canvas').length,
  }));
  const svgs = [...document.querySelectorAll('svg')].filter(s => !s.closest('.js-plotly-plot')
      && s.id !== 'js-plotly-tester' && !(s.parentElement && s.parentElement.closest('svg')));
  const svgInfo = svgs.map(s => { const r = s.getBoundingClientRect();
    return {width: r.width, height: r.height, children: s.childElementCount}; });
  const imgInfo = imgs.map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                 naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}));
  return {
    title: document.title,
    ready_state: document.readyState,
    plotly_loaded: typeof window.Plotly !== 'undefined',
    plotly_plots: plots.length,
    plotly_main_svgs: document.querySelectorAll('.js-plotly-plot .main-svg').length,
    plotly: plotInfo,
    plotly_unrendered: plotInfo.filter(p => p.main_svgs === 0 || p.traces === 0).map(p => p.id),
    plotly_divs_without_plot: [...document.querySelectorAll('div.plotly-graph-div')]
        .filter(d => !d.classList.contains('js-plotly-plot')).map(d => d.id),
    images: imgInfo,
    images_broken: imgInfo.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    inline_svgs: svgInfo,
    inline_svgs_empty: svgInfo.filter(s => s.children === 0 || s.width === 0 || s.height === 0).length,
    canvases: document.querySelectorAll('canvas').length,
  };
})()
"""

SETTLE_JS = """new Promise(r => setTimeout(() => requestAnimationFrame(() =>
    requestAnimationFrame(() => r(true))), %d))"""


class CDPError(RuntimeError):
    pass


def find_chromium() -> str:
    env = os.environ.get("CHROMIUM_BIN")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    raise FileNotFoundError("no chromium binary; apt-get install -y chromium (or set CHROMIUM_BIN)")


class Browser:
    """One headless Chromium process; each load() uses a fresh tab (target)."""

    def __init__(self, binary: str | None = None, offline: bool = True,
                 timeout: float = 30.0, extra_args: tuple[str, ...] = ()):
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self._events: list[dict] = []
        self._profile = tempfile.mkdtemp(prefix="headless-chromium-")
        args = [
            binary or find_chromium(),
            "--headless", "--remote-debugging-pipe",
            "--no-sandbox",              # root / containers: the setuid/userns sandbox is unavailable
            "--disable-gpu", "--disable-dev-shm-usage",   # small /dev/shm in docker (64 MB)
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--mute-audio", "--hide-scrollbars",
            "--enable-unsafe-swiftshader",  # software WebGL (plotly scattergl/3d) without GPU
            "--window-size=1280,1024",
            f"--user-data-dir={self._profile}",
        ]
        if offline:
            # Every host name fails to resolve: a report that needs a CDN fails the same
            # way on a laptop with internet as in an offline CI runner.
            args.append("--host-resolver-rules=MAP * ~NOTFOUND")
        args += list(extra_args)
        args.append("about:blank")
        cmd_r, self._cmd_w = os.pipe()   # we write -> chromium fd 3
        self._res_r, res_w = os.pipe()   # chromium fd 4 -> we read

        def _child_fds():                # runs in the child before exec
            a, b = os.dup(cmd_r), os.dup(res_w)   # avoid clobbering if already 3/4
            os.dup2(a, 3)
            os.dup2(b, 4)                          # dup2 => inheritable

        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=_child_fds,
            # crashpad database / caches go to the temp profile, not ~/.config/chromium
            env={**os.environ, "XDG_CONFIG_HOME": self._profile, "XDG_CACHE_HOME": self._profile},
            start_new_session=True)      # own process group: killpg reaps zygote/renderers
        os.close(cmd_r)
        os.close(res_w)
        try:
            self.send("Browser.getVersion")
        except Exception:
            self.close()
            raise

    # --- protocol plumbing -------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise CDPError(f"chromium exited (rc={self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise CDPError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._events.append(m)

    def _wait_event(self, method: str, session: str, deadline: float) -> dict:
        while True:
            for i, e in enumerate(self._events):
                if e.get("method") == method and e.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    # --- public API --------------------------------------------------------
    def load(self, path, settle_ms: int = 300, timeout: float | None = None):
        """Open a file (path or URL); return (console_errors, dom_facts)."""
        timeout = timeout or self.timeout
        url = str(path) if "://" in str(path) else pathlib.Path(path).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for dom in ("Runtime", "Log", "Page"):
                self.send(f"{dom}.enable", session=s)
            deadline = time.monotonic() + timeout
            nav = self.send("Page.navigate", {"url": url}, session=s)
            if nav.get("errorText"):
                return [f"navigation failed: {nav['errorText']} {url}"], {}
            self._wait_event("Page.loadEventFired", s, deadline)
            self.send("Runtime.evaluate", {"expression": SETTLE_JS % settle_ms,
                                           "awaitPromise": True}, session=s,
                      timeout=max(1.0, deadline - time.monotonic()))
            r = self.send("Runtime.evaluate", {"expression": FACTS_JS, "awaitPromise": True,
                                               "returnByValue": True}, session=s,
                          timeout=max(1.0, deadline - time.monotonic()))
            if "exceptionDetails" in r:
                raise CDPError(f"facts script failed: {r['exceptionDetails']}")
            facts = r["result"]["value"]
            # drain anything already delivered (late errors during settle)
            while select.select([self._res_r], [], [], 0)[0] or b"\0" in self._buf:
                self._events.append(self._read_message(time.monotonic() + 1))
            errors = self._errors(s)
        finally:
            try:
                self.send("Target.closeTarget", {"targetId": target}, timeout=5)
            except Exception:
                pass
            self._events = []            # one tab at a time: nothing left worth keeping
        return errors, facts

    def _errors(self, session: str) -> list[str]:
        out = []
        for e in self._events:
            if e.get("sessionId") != session:
                continue
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                desc = (d.get("exception") or {}).get("description") or d.get("text")
                out.append(f"{d.get('text', 'Uncaught')} {desc.splitlines()[0] if desc else ''} "
                           f"({d.get('url', '')}:{d.get('lineNumber', 0) + 1})")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                out.append(f"console.{p['type']}: {text}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                en = p["entry"]
                out.append(f"log[{en.get('source')}]: {en.get('text')} {en.get('url', '')}".rstrip())
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                os.write(self._cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self.proc.wait(timeout=5)
            except Exception:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()                  # reap: no zombie
        else:                                 # browser gone; kill any stray children
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(path, **kw):
    """One-shot: start Chromium, load `path`, return (console_errors, dom_facts)."""
    settle = {k: kw.pop(k) for k in ("settle_ms", "timeout") if k in kw}
    with Browser(**kw) as b:
        return b.load(path, **settle)

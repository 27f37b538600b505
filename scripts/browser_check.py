#!/usr/bin/env python3
"""Open notebooks in JupyterLab in headless Chromium, run all cells, check what rendered.

    .venv/bin/python scripts/browser_check.py NOTEBOOK [NOTEBOOK ...] [--screenshots DIR]

For each notebook: start JupyterLab on 127.0.0.1 (a free port, a token, a
temporary copy of the notebooks' directories and fresh settings), open the
notebook in Debian's Chromium driven by the ``playwright`` package, wait for
the kernel ("... | Idle" in the status bar), Run > Run All Cells, wait until
no cell is queued or running, save, and check:

- no cell errored (an error output in the saved notebook, a traceback on
  stderr, or a rendered traceback on the page);
- every figure the notebook displayed (a plotly output in the saved
  notebook) rendered as a plotly plot on the page, and a notebook that builds
  figures displayed at least one;
- every widget it displayed rendered as ipywidgets, not as text;
- clicking *Next* in a :class:`tft_lab.widgets.TraceStepper` advances it
  (its position text changes).

Exit status 0 if all notebooks pass, 1 if one fails, 2 if a requirement is
missing. ``tests/browser/test_notebooks_in_browser.py`` runs this under pytest.

Facts this relies on (JupyterLab 4.6, Chromium 14x-15x, seen here): the
toolbar's idle indicator says idle before the kernel is ready, the status
bar's "Python 3 (ipykernel) | Idle" does not; "Run All Cells" is
``[data-command="runmenu:run-all"]``; playwright's own browser download cannot
work here, so ``executable_path`` points at the Debian package's launcher.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Seconds to wait for JupyterLab to answer, the kernel to be idle, a notebook to run.
SERVER_TIMEOUT = 60
KERNEL_TIMEOUT = 120
RUN_TIMEOUT = 300

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Source that builds a figure: a notebook with such code must display one.
MAKES_FIGURE = re.compile(r"\b(epoch_timeline|signal_deferral|side_by_side|overhead|go\.Figure|px\.\w+)\s*\(")
MAKES_STEPPER = re.compile(r"\bTraceStepper\s*\(")
# An output area holding a plotly plot that drew its SVG (the plotly mime
# renderer puts js-plotly-plot on the output element itself), and one holding
# an ipywidgets view (not the "Loading widget..." or text fallback).
RENDERED_FIGURE = ".jp-OutputArea-output:is(.js-plotly-plot, :has(.js-plotly-plot)):has(svg.main-svg)"
RENDERED_WIDGET = ".jp-OutputArea-output:has(> .jupyter-widgets)"

# JupyterLab settings for a reproducible page: every cell in the DOM (no
# windowing, so every output can be found), no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False, "fetchNews": "false"},
}

# The notebook on show (a fresh workspace per notebook opens only that one).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# Queued and running cells show "[*]:". Running All has started once a cell
# shows it (or all have run already); it has finished once the kernel is idle
# and none shows it: a cell that raised clears the queue, the cells after it
# keep "[ ]:".
_PROMPTS_JS = f"""[...document.querySelectorAll('{PANEL} .jp-CodeCell .jp-InputPrompt')]
      .map(e => e.textContent.trim())"""
RUN_STARTED_JS = f"""() => {{
  const prompts = {_PROMPTS_JS};
  return prompts.some(p => p.includes('*')) || prompts.every(p => /\\[\\d+\\]/.test(p));
}}"""
RUN_FINISHED_JS = f"""() => {{
  const idle = [...document.querySelectorAll('#jp-main-statusbar *')]
      .some(e => e.children.length === 0 && /\\| Idle$/.test(e.textContent.trim()));
  return idle && !{_PROMPTS_JS}.some(p => p.includes('*'));
}}"""


def missing_requirements() -> str | None:
    """Why the browser check cannot run here, or None if it can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found: apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install playwright (never 'playwright install')"
    try:
        import jupyterlab  # noqa: F401
        import ipykernel  # noqa: F401
    except ImportError as e:
        return f"{e.name} is missing: pip install jupyterlab ipykernel"
    return None


@dataclass
class NotebookResult:
    """What the check found for one notebook."""

    notebook: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    figures_expected: int = 0
    figures_rendered: int = 0
    widgets_expected: int = 0
    widgets_rendered: int = 0
    stepper_before: str | None = None
    stepper_after: str | None = None
    console_errors: list[str] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        line = (f"{status} {self.notebook}  {self.seconds:.1f} s  figures {self.figures_rendered}/"
                f"{self.figures_expected}  widgets {self.widgets_rendered}/{self.widgets_expected}")
        if self.stepper_before is not None:
            line += f"  stepper {self.stepper_before!r} -> {self.stepper_after!r}"
        return line + "".join(f"\n     - {p}" for p in self.problems)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on loopback over a directory, stopped (with its kernels) on exit."""

    def __init__(self, root: Path, state: Path):
        self.root, self.state = root, state
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = state / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def _api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def __enter__(self) -> "JupyterLab":
        settings = self.state / "settings"
        for rel, value in LAB_SETTINGS.items():
            p = settings / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                         ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")):
            env[var] = str(self.state / sub)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
        ]
        self._log = open(self.log_path, "wb")
        # Its own session: stopping it cannot touch the caller's process group.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self._api("GET", "status")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"JupyterLab did not answer in {SERVER_TIMEOUT} s:\n{tail}") from None
                time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        # Kernels run in sessions of their own: shut them down through the
        # server, then stop the server.
        try:
            for k in self._api("GET", "kernels") or []:
                self._api("DELETE", f"kernels/{k['id']}")
        except OSError:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stage(notebooks: list[Path], root: Path) -> list[str]:
    """Copy each notebook's directory under ``root`` at its path relative to the
    notebooks' common parent, and link that parent's other entries beside them
    (so ``../datasets`` still resolves). Returns the notebooks' paths in ``root``."""
    notebooks = [n.resolve() for n in notebooks]
    base = Path(os.path.commonpath([n.parent for n in notebooks]))
    for d in sorted({n.parent for n in notebooks}):
        shutil.copytree(d, root / d.relative_to(base), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for entry in base.iterdir():
        if not entry.name.startswith(".") and not (root / entry.name).exists():
            (root / entry.name).symlink_to(entry)
    return [n.relative_to(base).as_posix() for n in notebooks]


def _saved_outputs(path: Path) -> tuple[int, int, list[str], bool, bool]:
    """(plotly outputs, widget outputs, problems, builds figures, builds a stepper) of a saved notebook."""
    nb = json.loads(path.read_text())
    figures = widgets = 0
    problems: list[str] = []
    makes_figure = makes_stepper = False
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", ""))
        makes_figure |= bool(MAKES_FIGURE.search(src))
        makes_stepper |= bool(MAKES_STEPPER.search(src))
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"cell {i} raised {out.get('ename')}: {out.get('evalue')}")
            elif kind == "stream" and out.get("name") == "stderr" and "Traceback" in "".join(out.get("text", "")):
                problems.append(f"cell {i} printed a traceback on stderr")
            data = out.get("data", {})
            figures += PLOTLY_MIME in data
            widgets += WIDGET_MIME in data
    return figures, widgets, problems, makes_figure, makes_stepper


def _wait_saved(path: Path, before: float, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.stat().st_mtime > before:
            time.sleep(0.3)  # let the write finish
            return
        time.sleep(0.2)
    raise TimeoutError(f"{path.name} was not saved within {timeout} s")


def _menu(page, menu: str, command: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(f'.lm-Menu [data-command="{command}"]').click()


def check_notebook(browser, lab: JupyterLab, rel: str, screenshots: Path | None = None) -> NotebookResult:
    """Open one notebook (path relative to the lab's root), run all cells, check what rendered.

    Opens it in a workspace of its own, so that no notebook checked before is
    restored beside it."""
    result = NotebookResult(rel)
    start = time.monotonic()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and result.console_errors.append(m.text))
    path = lab.root / rel
    try:
        page.goto(lab.url(f"lab/workspaces/check-{secrets.token_hex(4)}/tree/{rel}"))
        panel = page.locator(PANEL)
        idle = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$"))
        idle.first.wait_for(timeout=KERNEL_TIMEOUT * 1000)
        before = path.stat().st_mtime
        panel.locator(".jp-Cell").first.wait_for(timeout=KERNEL_TIMEOUT * 1000)
        _menu(page, "Run", "runmenu:run-all")
        page.wait_for_function(RUN_STARTED_JS, timeout=30_000, polling=100)
        page.wait_for_function(RUN_FINISHED_JS, timeout=RUN_TIMEOUT * 1000, polling=250)
        _menu(page, "File", "docmanager:save")
        _wait_saved(path, before)

        figures, widgets, problems, makes_figure, makes_stepper = _saved_outputs(path)
        result.problems += problems
        for tb in panel.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts():
            # Unless already reported from the saved notebook.
            if ("Traceback" in tb or "Error" in tb) and not problems:
                result.problems.append("an output shows an error: " + tb.strip().splitlines()[-1][:200])
        result.figures_expected = figures
        result.figures_rendered = panel.locator(RENDERED_FIGURE).count()
        if result.figures_rendered < figures:
            result.problems.append(f"{figures} figure(s) displayed but {result.figures_rendered} rendered")
        if makes_figure and figures == 0:
            result.problems.append("the notebook builds a figure but displays none")
        result.widgets_expected = widgets
        result.widgets_rendered = panel.locator(RENDERED_WIDGET).count()
        if result.widgets_rendered < widgets:
            result.problems.append(f"{widgets} widget(s) displayed but {result.widgets_rendered} rendered")

        steppers = panel.locator(".tft-stepper")
        if makes_stepper and steppers.count() == 0:
            result.problems.append("the notebook builds a TraceStepper but none rendered")
        if steppers.count():
            stepper = steppers.first
            stepper.scroll_into_view_if_needed()
            position = stepper.locator(".tft-stepper-position")
            result.stepper_before = position.inner_text().strip()
            stepper.locator("button.widget-button", has_text=re.compile(r"^\s*Next\s*$")).click()
            try:
                page.wait_for_function(
                    "([el, old]) => el.innerText.trim() !== old",
                    arg=[position.element_handle(), result.stepper_before], timeout=10_000)
            except Exception:  # playwright's TimeoutError; reported below
                pass
            result.stepper_after = position.inner_text().strip()
            if result.stepper_after == result.stepper_before:
                result.problems.append(f"clicking Next left the stepper at {result.stepper_before!r}")
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            stem = Path(rel).stem
            plot = panel.locator(RENDERED_FIGURE)
            if plot.count():
                plot.first.scroll_into_view_if_needed()
                shot = screenshots / f"{stem}-figure.png"
                plot.first.screenshot(path=str(shot))
                result.screenshots.append(str(shot))
            if steppers.count():
                steppers.first.scroll_into_view_if_needed()
            shot = screenshots / f"{stem}.png"
            page.screenshot(path=str(shot))
            result.screenshots.append(str(shot))
    except Exception as e:  # a timeout or a missing element: report it with the page's state
        result.problems.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            shot = screenshots / f"{Path(rel).stem}-failed.png"
            page.screenshot(path=str(shot))
            result.screenshots.append(str(shot))
    finally:
        context.close()
        result.seconds = time.monotonic() - start
    return result


def check_notebooks(notebooks: list[Path], screenshots: Path | None = None) -> list[NotebookResult]:
    """Run the check on each notebook in one JupyterLab and one browser; see the module doc."""
    reason = missing_requirements()
    if reason:
        raise RuntimeError(reason)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tft-browser-") as tmp:
        root, state = Path(tmp) / "root", Path(tmp) / "state"
        root.mkdir()
        state.mkdir()
        rels = _stage(notebooks, root)
        with JupyterLab(root, state) as lab, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                results = [check_notebook(browser, lab, rel, screenshots) for rel in rels]
            finally:
                browser.close()
            for r in results:
                if not r.ok:
                    r.problems.append("JupyterLab log (last lines):\n" + lab.log_tail(15))
                    break
        return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--screenshots", type=Path, help="save a screenshot of each notebook into this directory")
    args = ap.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"browser check: cannot run: {reason}", file=sys.stderr)
        return 2
    for nb in args.notebooks:
        if not nb.is_file():
            ap.error(f"no such notebook: {nb}")
    results = check_notebooks(args.notebooks, args.screenshots)
    for r in results:
        print(r.summary())
        for c in r.console_errors[:5]:
            print(f"     (console) {c[:200]}")
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""A course notebook's *live* stepper, in JupyterLab in headless Chromium: its buttons drive a real program.

``test_notebooks_in_browser.py`` runs every notebook and clicks the recorded-trace
stepper's Next. This test opens the notebook whose last cell leaves a
:class:`tft_lab.widgets.LiveStepper` paused at the first event of a real run
(``%tft step``), runs all its cells, then clicks **Next** (the position moves on
to the next paused event, ``#1`` to ``#2``) and **Run to end** (the program
finishes and the stepper says so). Same requirements as the other browser test;
``TFT_BROWSER_SCREENSHOTS=DIR`` keeps a screenshot of the stepper.
"""
import importlib.util
import os
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_syscalls_and_nondeterminism.ipynb"

_spec = importlib.util.spec_from_file_location("browser_check", ROOT / "scripts" / "browser_check.py")
browser_check = sys.modules.setdefault("browser_check", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(browser_check)

pytestmark = pytest.mark.browser
_missing = browser_check.missing_requirements()
if _missing:
    pytest.skip(f"browser check cannot run here: {_missing}", allow_module_level=True)

ENABLED = "button.widget-button:not([disabled])"


def _run_all(page, lab, rel: str) -> None:
    bc = browser_check
    page.goto(lab.url(f"lab/workspaces/live-{secrets.token_hex(4)}/tree/{rel}"))
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$")).first.wait_for(
        timeout=bc.KERNEL_TIMEOUT * 1000)
    page.locator(bc.PANEL).locator(".jp-Cell").first.wait_for(timeout=bc.KERNEL_TIMEOUT * 1000)
    bc._menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(bc.RUN_STARTED_JS, timeout=30_000, polling=100)
    page.wait_for_function(bc.RUN_FINISHED_JS, timeout=bc.RUN_TIMEOUT * 1000, polling=250)


def _wait_text_change(page, locator, old: str, timeout_ms: int = 30_000) -> str:
    try:
        page.wait_for_function("([el, old]) => el.innerText.trim() !== old",
                               arg=[locator.element_handle(), old], timeout=timeout_ms)
    except Exception:  # playwright's TimeoutError: the assertion below reports it
        pass
    return locator.inner_text().strip()


def test_the_live_steppers_buttons_drive_the_paused_program():
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tft-browser-live-") as tmp:
        root, state = Path(tmp) / "root", Path(tmp) / "state"
        root.mkdir()
        state.mkdir()
        (rel,) = browser_check._stage([NOTEBOOK], root)
        with browser_check.JupyterLab(root, state) as lab, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_check.CHROMIUM, args=browser_check.CHROMIUM_ARGS,
                                        headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            try:
                _run_all(page, lab, rel)
                # The stepper still paused: those the notebook finished have their buttons disabled.
                steppers = page.locator(browser_check.PANEL).locator(".tft-live-stepper")
                paused = [i for i in range(steppers.count()) if steppers.nth(i).locator(ENABLED).count()]
                assert paused, f"no paused live stepper among {steppers.count()} live steppers"
                stepper = steppers.nth(paused[-1])
                stepper.scroll_into_view_if_needed()
                position = stepper.locator(".tft-live-position")
                view = stepper.locator(".tft-stepper-view")
                before = position.inner_text().strip()
                assert before.startswith("#1 ·"), before
                assert "execve" in view.inner_text() and "backup" in view.inner_text()

                stepper.locator("button.widget-button", has_text=re.compile(r"^\s*Next\s*$")).click()
                after = _wait_text_change(page, position, before)
                assert after.startswith("#2 ·"), f"Next left the live stepper at {before!r} -> {after!r}"

                shots = os.environ.get("TFT_BROWSER_SCREENSHOTS")
                if shots:
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    stepper.screenshot(path=str(Path(shots) / "live-stepper.png"))

                stepper.locator("button.widget-button", has_text=re.compile(r"^\s*Run to end\s*$")).click()
                done = _wait_text_change(page, position, after, timeout_ms=60_000)
                assert "finished: exit status 0" in done, done
                assert "exit status" in stepper.locator(".tft-live-result").inner_text()
                time.sleep(0.5)
                assert stepper.locator(ENABLED).count() == 0
            finally:
                context.close()
                browser.close()

"""End to end: `searche1 view` on a small real run, opened in headless Chromium (Debian's package, driven by
Playwright): the per-phase table and a figure, the trajectory browser's filter, one trajectory turn by turn with
its retrieved documents collapsed, and one OFSD pair with the student's tokens coloured by KL and the privileged
prompt on demand. A screenshot of each view is saved under the test's temp dir."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the flags a closed network needs: no background connections, no component updates, no first-run work
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make test` installs it (scripts/ensure-chromium.sh)")
        pytest.skip("chromium is not installed (apt-get install chromium; `make test` does it as root)")
    pytest.importorskip("playwright", reason="playwright is in the [dev] extra")
    return CHROMIUM


@pytest.fixture
def viewer(small_evolve_run, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "viewer.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "searche1.cli", "--threads", "1", "view", str(small_evolve_run),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/run", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the viewer did not start: {(tmp_path / 'viewer.log').read_text()}")
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_viewer_in_chromium(chromium, viewer, small_evolve_run, tmp_path):
    from playwright.sync_api import sync_playwright

    pairs = [json.loads(line) for line in (small_evolve_run / "phases" / "02-ofsd-r1" / "pairs.jsonl").open()]
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))

        def ready(view: str):
            page.wait_for_selector(f"main[data-ready='{view}']", timeout=60_000)
            assert not page.locator("main .error").count(), page.locator("main").inner_text()

        # overview: the per-phase table and the EM figure
        page.goto(viewer + "/")
        ready("overview")
        phases = page.locator("#em-table tbody tr td:first-child").all_inner_texts()
        assert phases == ["base", "grpo-r1", "ofsd-r1"]
        page.wait_for_function("document.querySelector('#fig-em_by_phase')?.naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "viewer-overview.png"), full_page=True)

        # the trajectory browser: every phase's greedy evaluation, then only the incorrect answers
        page.click("#nav-trajectories")
        ready("trajectories")
        total = page.locator("#traj-table tbody tr").count()
        assert total > 0
        page.select_option("#f-correct", "false")
        page.wait_for_function("location.hash.includes('correct=false')")  # the route runs after hashchange
        ready("trajectories")
        assert set(page.locator("#traj-table tbody tr td:nth-child(7)").all_inner_texts()) == {"0.0"}

        # one trajectory, turn by turn: model text apart from the engine's (collapsed) documents
        first = page.locator("#traj-table tbody tr").first
        question = first.locator("td:nth-child(3)").inner_text()
        first.click()
        ready("trajectory")
        assert page.locator(".question").inner_text() == f"Question: {question}"
        turns = page.locator(".turn")
        assert turns.count() >= 1 and "<think>" in turns.first.locator(".model-text").inner_text()
        observation = page.locator(".observation").first
        assert observation.count() and not observation.evaluate("d => d.open")
        assert not observation.locator(".doc").first.is_visible()  # collapsed
        observation.locator("summary").click()
        assert observation.locator(".doc").first.is_visible()
        assert observation.locator(".doc").first.inner_text().startswith("Doc 1(Title:")
        styles = [page.evaluate(f"getComputedStyle(document.querySelector('{sel}')).{prop}")
                  for sel in (".model-text", ".observation") for prop in ("fontStyle", "backgroundColor")]
        assert styles[:2] != styles[2:] and styles[2] == "italic"  # inserted text looks different
        assert page.locator(".answer-box .gold").inner_text()
        page.screenshot(path=str(tmp_path / "viewer-trajectory.png"), full_page=True)

        # an OFSD pair: reference and student side by side, the student's tokens coloured by their KL
        page.click("#nav-pairs")
        ready("pairs")
        assert page.locator("#pairs-list tbody tr").count() == len(pairs)
        page.locator("#pairs-list tbody tr").first.click()
        ready("pair")
        assert page.locator(".pair-reference .card").count() == 1 == page.locator(".pair-student .card").count()
        tokens = page.locator(".pair-student .tok")
        assert tokens.count() == len(pairs[0]["student_token_kl"])
        shown_kl = [float(t.split()[1]) for t in tokens.evaluate_all("ts => ts.map(t => t.title)")]
        assert shown_kl == pytest.approx(pairs[0]["student_token_kl"], abs=1e-4)
        assert page.locator(".pair-reference .tok").count() == 0  # the reference is plain text
        prompt = page.locator("#privileged-prompt")
        assert not prompt.is_visible()
        page.click("#show-privileged")
        assert prompt.is_visible() and "=== worked solution ===" in prompt.inner_text()
        assert pairs[0]["question"] in prompt.inner_text()
        page.screenshot(path=str(tmp_path / "viewer-pair.png"), full_page=True)
        browser.close()
    assert not errors, errors
    for name in ("overview", "trajectory", "pair"):
        assert (tmp_path / f"viewer-{name}.png").read_bytes()[:4] == b"\x89PNG"

"""A real browser (Debian's headless Chromium, driven by Playwright) opens a rater's minted link and rates on the
served page.

Chromium comes from the system (`apt-get install -y chromium`); nothing is downloaded. Without it this test
fails with that instruction, because the page's video playback is only checked here.
"""

import json
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from lightning_svd.preference.app import create_app
from lightning_svd.preference.raters import mint
from lightning_svd.preference.server import StudyServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
BOTH_PLAYABLE = """() => {
  const videos = [...document.querySelectorAll('#task video')];
  const failed = videos.find((v) => v.error);
  if (failed) return 'error ' + failed.error.code + ': ' + failed.error.message;
  return videos.length === 2 && videos.every((v) => v.readyState >= 3) ? 'playable' : false;
}"""


@pytest.mark.slow
def test_a_rater_votes_in_headless_chromium(open_study):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium with `apt-get install -y chromium` "
                    "(the browser test needs it; CI installs it)")
    study = open_study(attention_check_rate=0.0)
    with StudyServer(create_app(study), "127.0.0.1", 0) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            console_errors = []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error"
                    else None)
            page.goto(server.url + "/")
            page.fill("#rater", "a-free-name")
            page.click("#rater-form button[type=submit]")
            page.wait_for_function("() => document.querySelector('#error').textContent.includes('personal link')",
                                   timeout=10_000)
            link, owner_line = mint(study.store, ["browser-rater"], server.url)
            owner = {"Authorization": "Bearer " + owner_line.rsplit(": ", 1)[1]}
            page.goto(link.split("\t")[1])
            state = page.wait_for_function(BOTH_PLAYABLE, timeout=30_000).json_value()
            assert state == "playable", f"Chromium could not play the pack's H.264 videos: {state}"
            page.wait_for_selector("#vote-left:enabled", timeout=10_000)
            prompt = page.text_content("#prompt")
            assert prompt in [p.text for p in study.pack.prompts]
            assert page.text_content("#question") in (
                "Which video follows the prompt better?",
                "Which video has the better visual quality? (sharpness, smooth and realistic motion, no artefacts)")
            ARTIFACTS.mkdir(exist_ok=True)
            screenshot = ARTIFACTS / "preference_study_page.png"
            page.screenshot(path=str(screenshot))
            print(f"screenshot: {screenshot}")
            assert "token" not in page.url, "the token leaves the address bar"
            assert page.text_content("#progress").startswith("browser-rater: 0 answered")
            sources = page.eval_on_selector_all("#task video", "videos => videos.map((v) => v.currentSrc)")
            assert not [arm for arm in study.pack.arms for src in sources if arm in src], "URLs hide the arm"
            page.click("#vote-left")
            exported = ""
            for _ in range(100):
                export = urllib.request.Request(server.url + "/api/export", headers=owner)
                with urllib.request.urlopen(export, timeout=10) as response:
                    exported = response.read().decode()
                if "browser-rater" in exported:
                    break
                time.sleep(0.1)
            rows = [line.split(",") for line in exported.splitlines()[1:]]
            assert len(rows) == 1 and rows[0][0] == "browser-rater" and rows[0][5] == "left"
            page.wait_for_function("() => document.querySelector('#progress').textContent.includes('1 answered')",
                                   timeout=30_000)
            assert page.wait_for_function(BOTH_PLAYABLE, timeout=30_000).json_value() == "playable"
            page.wait_for_selector("#vote-right:enabled", timeout=30_000)
            page.keyboard.press("ArrowRight")
            page.wait_for_function("() => document.querySelector('#progress').textContent.includes('2 answered')",
                                   timeout=30_000)
            page.reload()
            page.wait_for_function("() => document.querySelector('#progress').textContent.includes('2 answered')",
                                   timeout=30_000)
            results = urllib.request.Request(server.url + "/api/results", headers=owner)
            with urllib.request.urlopen(results, timeout=30) as response:
                results = json.loads(response.read())
            assert results["votes"]["total"] == 2
            assert results["raters"]["browser-rater"]["identity"] == "link"
            assert [error for error in console_errors if "401" not in error] == []
        finally:
            browser.close()

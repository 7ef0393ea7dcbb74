"""The web page in headless Chromium (Debian's package) driven by Playwright: type a prompt, generate, watch the
queue, and see the MP4 actually play in the browser's gallery."""

import os
import shutil
import threading

import pytest

from cinegen.server.app import ModelSpec, ServerSettings
from cinegen.server.worker import Worker
from tests.conftest import Server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_generate_from_the_page_and_play_the_result(tmp_path, tiny_model_dir):
    models = {"cinegen-default": ModelSpec(tiny_model_dir, sizes=("64x64", "32x32"), seconds=("1", "2"))}
    server = Server(ServerSettings(data_dir=tmp_path, models=models))
    stop = threading.Event()
    worker = threading.Thread(target=Worker(tmp_path, {"cinegen-default": tiny_model_dir}, steps=2).run_forever,
                              kwargs={"poll": 0.1, "stop": stop}, daemon=True)
    worker.start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(server.url + "/")
            page.fill("#prompt", "a large red ball bounces on a black background")
            page.select_option("#seconds", "1")
            page.click("#generate")
            page.wait_for_selector(".card[data-status='completed'] video", timeout=120_000)
            # readyState >= 2: the browser decoded the first frame of our H.264 MP4
            page.wait_for_function("document.querySelector('.card video').readyState >= 2", timeout=30_000)
            size = page.evaluate("[document.querySelector('.card video').videoWidth, "
                                 "document.querySelector('.card video').videoHeight]")
            assert size == [64, 64]
            assert page.locator(".card button", has_text="Remix").count() == 1
            page.screenshot(path=str(tmp_path / "page.png"))
            if os.environ.get("CINEGEN_SCREENSHOT"):
                page.screenshot(path=os.environ["CINEGEN_SCREENSHOT"])
            browser.close()
    finally:
        stop.set()
        worker.join(timeout=30)
        server.stop()

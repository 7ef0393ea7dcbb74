"""The web page in headless Chromium (Debian's package) driven by Playwright: type a prompt, generate, watch the
queue, and see the MP4 actually play in the browser's gallery."""

import os
import shutil
import threading
from contextlib import contextmanager

import pytest

from cinegen.server.app import ModelSpec, ServerSettings
from cinegen.server.worker import Worker
from tests.conftest import Server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def service(data, model_dir, seconds=("1", "2"), **settings):
    """A server and one render worker thread on the tiny model; yields the server."""
    models = {"cinegen-default": ModelSpec(model_dir, sizes=("64x64", "32x32"), seconds=seconds)}
    server = Server(ServerSettings(data_dir=data, models=models, **settings))
    stop = threading.Event()
    worker = threading.Thread(target=Worker(data, {"cinegen-default": model_dir}, steps=2).run_forever,
                              kwargs={"poll": 0.1, "stop": stop}, daemon=True)
    worker.start()
    try:
        yield server
    finally:
        stop.set()
        worker.join(timeout=30)
        server.stop()


def test_generate_from_the_page_and_play_the_result(tmp_path, tiny_model_dir):
    with service(tmp_path, tiny_model_dir) as server:
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


@pytest.mark.slow
def test_a_clip_plays_to_its_end_while_other_jobs_complete(tmp_path, tiny_model_dir):
    """The gallery updates in place: the <video> of a finished clip is the same element, still playing, after
    other jobs finish around it; the key survives a reload; a still animates; a card's Delete removes it."""
    import numpy as np
    from PIL import Image

    still = tmp_path / "still.png"
    Image.fromarray(np.full((64, 64, 3), (20, 160, 220), np.uint8)).save(still)
    with service(tmp_path, tiny_model_dir, ("1", "2", "4", "8"), api_keys={"page-key": "studio"}) as server:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(server.url + "/")
            page.fill("#apikey", "page-key")
            page.reload()                                          # the key is remembered locally
            assert page.input_value("#apikey") == "page-key"
            page.select_option("#size", "64x64")
            page.select_option("#seconds", "8")
            page.click("#generate")
            page.wait_for_selector(".card[data-status='completed'] video", timeout=120_000)
            page.wait_for_function("document.querySelector('.card video').readyState >= 2", timeout=30_000)
            # a marker on this very element, then play it at half speed: 65 frames at 8 fps take 16 s
            page.evaluate("(() => { const v = document.querySelector('.card video'); v.marked = true;"
                          " v.playbackRate = 0.5; return v.play(); })()")
            page.select_option("#seconds", "1")
            page.set_input_files("#still", str(still))              # the next two jobs animate the still
            for _ in range(2):
                page.click("#generate")
            page.wait_for_function("document.querySelectorAll(\".card[data-status='completed']\").length >= 3",
                                   timeout=120_000)
            state = page.evaluate("(() => { const v = [...document.querySelectorAll('video')].find(x => x.marked);"
                                  " return v && [v.paused, v.ended, v.currentTime]; })()")
            assert state is not None, "the playing clip's element was replaced"
            assert state[0] is False and state[1] is False and state[2] > 0      # still playing, not restarted
            page.wait_for_function("[...document.querySelectorAll('video')].find(x => x.marked).ended",
                                   timeout=60_000)                   # and it plays through to its end
            page.on("dialog", lambda dialog: dialog.accept("a large blue ball bounces on a black background"))
            cards = page.locator(".card").count()
            for action in ("Remix", "Extend", "Edit"):               # each asks for a prompt, then queues a job
                page.locator(".card[data-status='completed']").first.get_by_role("button", name=action).click()
                cards += 1
                page.wait_for_function(f"document.querySelectorAll('.card').length === {cards}", timeout=10_000)
            page.locator(".card").first.get_by_role("button", name="Delete").click()
            page.wait_for_function(f"document.querySelectorAll('.card').length === {cards - 1}", timeout=10_000)
            assert page.locator(".card a", has_text="Download").count() >= 1
            browser.close()

"""Prompt understanding that tells the truth (issue 35): words a model never trained on and prompts past the text
encoder's window are warned about, in the pipeline, the CLI and the server's video object; training captions
(paraphrases included) are not."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cinegen.pipeline import WEIGHTS_DIR
from cinegen.toyworld.source import ToyWorld, ToyWorldConfig
from cinegen.toyworld.world import canonical_caption, caption_vocabulary, paraphrase_caption, random_scene
from cinegen.vocabulary import VOCABULARY_FILE, prompt_warnings, read_vocabulary, unknown_words, write_vocabulary
from tests.test_cli import ENV

SHIPPED = read_vocabulary(WEIGHTS_DIR, {})


def test_the_shipped_vocabulary_is_the_worlds_captions():
    """The file beside the shipped weights holds exactly the words the world's captions can hold: a caption change
    without `python tools/write_vocabulary.py` fails here."""
    assert SHIPPED == frozenset(caption_vocabulary())
    assert {"red", "ball", "bounces", "slides", "disc", "collide", "pans"} <= SHIPPED and "cat" not in SHIPPED


def test_training_captions_and_their_paraphrases_raise_no_warning():
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = random_scene(rng)
        for caption in (canonical_caption(scene), paraphrase_caption(scene, rng)):
            assert unknown_words(caption, SHIPPED) == [], caption


@pytest.mark.parametrize("prompt, unknown", [
    ("a cat walks on a beach at sunset", ["cat", "walks", "beach", "sunset"]),
    ("une balle rouge rebondit", ["une", "balle", "rouge", "rebondit"]),
    ("a red star", ["star"]),
    ("The big red ball is bouncing!", ["big", "bouncing"]),        # stop words and case are not words to learn
    ("3 red balls", ["3", "balls"]),
])
def test_unknown_words_are_named_in_order(prompt, unknown):
    assert unknown_words(prompt, SHIPPED) == unknown
    (warning,) = prompt_warnings(prompt, SHIPPED)
    assert all(f"'{w}'" in warning for w in unknown) and "never saw in training" in warning


def test_a_close_trained_word_is_suggested_and_an_unknown_vocabulary_warns_nothing():
    (warning,) = prompt_warnings("a red ball bouncing", SHIPPED)
    assert "'bouncing' (trained: 'bounces'?)" in warning
    (warning,) = prompt_warnings("a red ball walks", SHIPPED)
    assert "'walks';" in warning                                   # "wall" shares too little to be its meaning
    assert prompt_warnings("a cat", None) == []                     # a model that names no vocabulary


def test_a_prompt_past_the_window_is_warned_with_its_length_and_the_lost_words(text_encoder):
    short = "a large red ball bounces on a black background"
    assert text_encoder.overflow(short) == (len(text_encoder.tokenizer(short)["input_ids"]), "")
    long = short + (" and a small blue box moves left and a large green ring spins, camera pans left, they collide,"
                    " passing behind a wall, zebra")
    tokens, ignored = text_encoder.overflow(long)
    assert tokens > text_encoder.cfg.max_tokens and long.endswith(ignored) and ignored.endswith("zebra")
    kept = long[: len(long) - len(ignored)]                   # what the window holds whole: it fits, one word more not
    assert text_encoder.overflow(kept)[0] <= text_encoder.cfg.max_tokens
    assert text_encoder.overflow(kept + ignored.split()[0])[0] > text_encoder.cfg.max_tokens
    unknown, warning = prompt_warnings(long, SHIPPED, tokens, text_encoder.cfg.max_tokens, ignored)
    assert "'zebra'" in unknown and "zebra" in warning
    assert f"prompt is {tokens} tokens" in warning and f"reads {text_encoder.cfg.max_tokens}" in warning
    # what encode() keeps is exactly the window, so the words named as ignored really are
    _, mask = text_encoder.encode([long])
    assert int(mask.sum()) == text_encoder.cfg.max_tokens


def test_a_trained_model_keeps_its_vocabulary_and_the_file_is_the_fallback(tmp_path):
    assert ToyWorld(ToyWorldConfig()).facts()["vocabulary"] == list(caption_vocabulary())
    write_vocabulary(tmp_path / VOCABULARY_FILE, ["red", "Ball"], "test")
    assert read_vocabulary(tmp_path, {}) == {"red", "ball"}
    assert read_vocabulary(tmp_path, {"vocabulary": ["blue"]}) == {"blue"}          # the DiT's own metadata first
    assert read_vocabulary(tmp_path / "none", {}) is None
    (tmp_path / VOCABULARY_FILE).write_text("[1]")
    with pytest.raises(ValueError, match="not a vocabulary file"):
        read_vocabulary(tmp_path, {})


@pytest.fixture(scope="module")
def model_with_vocabulary(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab_model")
    for f in tiny_model_dir.iterdir():
        shutil.copy(f, folder / f.name)
    write_vocabulary(folder / VOCABULARY_FILE, caption_vocabulary(), "test")
    return folder


def test_pipeline_backend_and_cli_warn_and_still_render(model_with_vocabulary, tmp_path):
    from cinegen import requests as R
    from cinegen.backends import load_backend
    from cinegen.config import SampleConfig
    backend = load_backend(model_with_vocabulary, device="cpu")
    assert backend.warnings(R.Text(prompt="a large red ball bounces on a black background", sample=SampleConfig())) == []
    (w,) = backend.warnings(R.Loop(prompt="a cat", video=np.zeros((9, 32, 32, 3), np.uint8), sample=SampleConfig()))
    assert "'cat'" in w
    out = tmp_path / "cat.mp4"
    r = subprocess.run([sys.executable, "-m", "cinegen.cli", "generate", "a cat walks on a beach", "--model",
                        str(model_with_vocabulary), "--seconds", "1", "--size", "32x32", "--steps", "1", "-o", str(out)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and out.is_file(), r.stderr
    assert "warning:" in r.stderr and "'cat', 'walks', 'beach'" in r.stderr


def test_the_server_video_object_carries_the_warnings(model_with_vocabulary, tmp_path):
    from cinegen.server.store import JobStore, video_object
    from cinegen.server.worker import Worker
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("local", "m", "a red star bounces on a black background", "1", "32x32", "create", {})
    assert "warnings" not in video_object(job)                 # not read by a model yet: unknown, not "none"
    ok = store.create("local", "m", "a red ball bounces on a black background", "1", "32x32", "create", {})
    worker = Worker(tmp_path, {"m": model_with_vocabulary}, steps=1)
    assert worker.run_once() and not worker.run_once()         # both in one batch, each with its own warnings
    done, clean = video_object(store.get(job["id"])), video_object(store.get(ok["id"]))
    assert done["status"] == "completed" and len(done["warnings"]) == 1 and "'star'" in done["warnings"][0]
    assert clean["warnings"] == [] and json.loads(store.get(ok["id"])["params"]) == {"warnings": []}

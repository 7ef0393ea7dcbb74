"""What a model was trained to read, and the warnings a prompt gets when it asks for more (issue 35).

A model knows the words of the captions its text side was trained with: its *vocabulary*, saved with the model
(a DiT trained by a recipe keeps it in its metadata, `extra["vocabulary"]`, from its data source's facts; a model
made before that ships it as `vocabulary.json` beside the weights, written by tools/write_vocabulary.py). A word
outside it (and outside STOP_WORDS) reaches the DiT only as whatever the frozen text encoder makes of it: the
model never learnt what it looks like, so the prompt is warned about, naming the words. Paraphrases the training
captions held ("slides to the left", "disc") are in the vocabulary; inflections are not ("bouncing" is warned,
with the trained word it is closest to).

A prompt longer than the text encoder's token window is cut to the window; the cut is warned about, with the
count, the window and the words left out.

The one place the CLI, the server and the backends get these warnings: `prompt_warnings` (through
TextToVideo.prompt_warnings and a backend's `warnings(request)`). Nothing here imports the toy world.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cinegen.io.files import atomic_write

VOCABULARY_FILE = "vocabulary.json"
# function words that name nothing to draw: a prompt may hold them whether or not the captions did
STOP_WORDS = frozenset("""
a an the this that these those some one of to and or but with without in on at by for from into onto over under
is are be being it its it's there here then while as very really just
""".split())
SUGGEST_PREFIX = 4             # letters a trained word must share with the start of an unknown one to be suggested


def prompt_words(prompt: str) -> list[str]:
    """The prompt's words, lower-cased, in order: runs of letters (any script) or digits."""
    return re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+", prompt.lower())


def unknown_words(prompt: str, vocabulary: frozenset[str]) -> list[str]:
    """The prompt's words outside `vocabulary` and STOP_WORDS, each once, in the order they appear."""
    return list(dict.fromkeys(w for w in prompt_words(prompt) if w not in vocabulary and w not in STOP_WORDS))


def prompt_warnings(prompt: str, vocabulary: frozenset[str] | None, tokens: int | None = None,
                    window: int | None = None, ignored: str = "") -> list[str]:
    """One-line warnings about a prompt: words the model never trained on (when its vocabulary is known), and a
    prompt of `tokens` tokens cut to the encoder's `window` (`ignored`: the prompt from the word it cuts)."""
    out = []
    unknown = unknown_words(prompt, vocabulary) if vocabulary else []
    if unknown:
        named = ", ".join(_with_suggestion(w, vocabulary) for w in unknown)
        out.append(f"words this model never saw in training: {named}; it has not learnt them, so they are likely "
                   "to have no effect (or a wrong one)")
    if tokens is not None and window is not None and tokens > window:
        cut = f'; from "{ignored}" on, it is cut off' if ignored else ""
        out.append(f"prompt is {tokens} tokens; the text encoder reads {window} (its window){cut}")
    return out


def _with_suggestion(word: str, vocabulary: frozenset[str]) -> str:
    """The word, with the trained word of the same stem when there is one ("bouncing" -> "bounces"): the longest
    common start, of at least SUGGEST_PREFIX letters and 60% of the shorter word (so "walks" is not "wall")."""
    def shared(v):
        return len(os.path.commonprefix([word, v]))
    best = max(sorted(vocabulary), key=shared, default="")
    n = shared(best) if best else 0
    close = n >= SUGGEST_PREFIX and n >= 0.6 * min(len(word), len(best))
    return f"'{word}' (trained: '{best}'?)" if close else f"'{word}'"


def read_vocabulary(folder: str | Path | None, extra: dict) -> frozenset[str] | None:
    """A model's vocabulary: its DiT metadata's (`extra`), else `folder`/vocabulary.json, else None (unknown)."""
    words = extra.get("vocabulary")
    path = Path(folder) / VOCABULARY_FILE if folder is not None else None
    if words is None and path is not None and path.is_file():
        try:
            words = json.loads(path.read_text())["words"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a vocabulary file ({{\"words\": [...]}}): {e!r}") from None
    return None if words is None else frozenset(str(w).lower() for w in words)


def write_vocabulary(path: str | Path, words, source: str) -> None:
    """Writes {"source", "words"} (sorted) atomically; `source` says where the words came from."""
    body = json.dumps({"source": source, "words": sorted(set(words))}, indent=1) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(body))

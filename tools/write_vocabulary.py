"""Writes a model folder's vocabulary.json: the words of the toy world's training captions (issue 35).

    python tools/write_vocabulary.py [MODEL_FOLDER]        # default: the shipped model, src/cinegen/weights

For a model trained before its DiT kept the vocabulary in its own metadata (the data source's facts do that now):
the shipped default model. The inference path reads the file (cinegen.vocabulary.read_vocabulary) and never
imports the world, so the world's words travel as data. tests/test_vocabulary.py checks the shipped file against
the world, so a caption change that forgets to rewrite it fails there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cinegen.toyworld.world import WORLD_VERSION, caption_vocabulary
from cinegen.vocabulary import VOCABULARY_FILE, write_vocabulary

SHIPPED = Path(__file__).resolve().parent.parent / "src" / "cinegen" / "weights"


def main(folder: Path = SHIPPED) -> Path:
    path = Path(folder) / VOCABULARY_FILE
    write_vocabulary(path, caption_vocabulary(), f"toy world {WORLD_VERSION} captions (tools/write_vocabulary.py)")
    return path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED))

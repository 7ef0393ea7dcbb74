"""Storyboards to films: the studio extra (pip install 'cinegen[studio]').

Checked on import, before anything renders: `cinegen storyboard` without it is one line naming the extra, not
a traceback after the shots are drawn. espeak-ng (voice-over) is a system package, checked where it is used."""

from cinegen.extras import require

for _module in ("yaml", "pydantic", "pysubs2", "opentimelineio", "otio_cmx3600_adapter"):
    require(_module, "studio", "cinegen storyboard")

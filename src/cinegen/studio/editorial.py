"""What an editor receives: subtitles (SRT and WebVTT via pysubs2) in a timed-text style, and the timeline as
OpenTimelineIO (.otio), a CMX 3600 EDL, and, through OTIO's own adapters, FCPXML, FCP7 XML and AAF.

Every time here is a whole frame of the film's delivery rate (`rate`, a Fraction: 24000/1001 for 23.976), so the
film, the timelines, the subtitles and render.json agree to the frame. Voice clips are placed in samples of
voice.SAMPLE_RATE, at the same sample the film's audio has them. The timeline starts at 01:00:00:00 (the
broadcast convention), references media by paths relative to the film folder (the folder can be moved), and
names each clip by its shot and prompt with prompt, seed, model and shot id in its metadata.

Connect bridges are OTIO Transitions (SMPTE_Dissolve) where the format carries them (.otio, EDL, FCP7 XML, AAF):
the cut sits in the bridge's middle frame, in_offset/out_offset span exactly the frames the bridge has in
film.mp4, and the two shots' media hold the bridge as their handles (the outgoing shot's media ends with it, the
incoming shot's begins with it; render.py writes them). A dissolve between identical frames is those frames, so
an NLE plays the transition exactly as film.mp4 shows it, and an editor can still slip or retime it. FCPXML's
adapter writes no transitions: there the bridge is a clip of its own (and a warning says so).
"""

from __future__ import annotations

import copy
import textwrap
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from cinegen.io.files import atomic_write
from cinegen.studio.conform import drop_frame

# Timed-text style (the common broadcast/streaming rules, e.g. Netflix's English guide): 42 characters a line,
# 2 lines a cue, at most 20 characters a second of reading, 2 frames between consecutive cues.
MAX_LINE_CHARS, MAX_LINES, MAX_CPS, GAP_FRAMES = 42, 2, 20, 2
START_TIMECODE = "01:00:00:00"


@dataclass(frozen=True)
class Segment:
    """One piece of the joined film: a shot or a generated transition, in frames of the delivery rate."""
    name: str
    media: Path                # its own MP4 (at the delivery rate), under the film folder
    start: int                 # first frame in the film
    frames: int                # frames it shows in the film
    rate: Fraction
    available: int = 0         # frames its media holds (more than `frames`: handles after the out point)
    kind: str = "shot"         # "shot" or "transition"
    line: str | None = None    # dialogue/narration shown as a subtitle and spoken
    voice_media: Path | None = None
    voice_start: int = 0       # the voice WAV's first sample in the film
    voice_samples: int = 0     # its length in samples
    head: int = 0              # frames its media holds before its first film frame (an incoming bridge)
    metadata: dict = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.frames

    @property
    def seconds(self) -> float:
        return float(self.frames / self.rate)

    @property
    def start_seconds(self) -> float:
        return float(self.start / self.rate)


# --- subtitles ---

def subtitle_cues(segments: list[Segment], rate: Fraction) -> tuple[list[tuple[int, int, str]], list[str]]:
    """(start frame, end frame, text) cues: each line wrapped at MAX_LINE_CHARS, split into cues of at most
    MAX_LINES lines over its shot (time shared by characters), GAP_FRAMES between cues; and a warning for each line
    that cannot be read at MAX_CPS in the time its shot shows it."""
    cues, warnings = [], []
    for seg in segments:
        if not seg.line:
            continue
        lines = textwrap.wrap(seg.line, MAX_LINE_CHARS, break_long_words=True, break_on_hyphens=False)
        chunks = ["\n".join(lines[i:i + MAX_LINES]) for i in range(0, len(lines), MAX_LINES)]
        weights = [len(c.replace("\n", "")) for c in chunks]
        total, cum, bounds = sum(weights), 0, [seg.start]
        for w in weights:
            cum += w
            bounds.append(seg.start + round(seg.frames * cum / total))
        for text, a, b in zip(chunks, bounds, bounds[1:]):
            cues.append([a, b, text])
        chars = len(seg.line)
        if chars / max(seg.seconds, 1e-9) > MAX_CPS:
            warnings.append(f"{seg.name}: its line of {chars} characters needs {chars / MAX_CPS:.1f} s at "
                            f"{MAX_CPS} characters/s but the shot shows it for {seg.seconds:.2f} s; "
                            f"shorten the line or lengthen the shot")
    for cue, nxt in zip(cues, cues[1:]):
        cue[1] = max(cue[0] + 1, min(cue[1], nxt[0] - GAP_FRAMES))
    return [tuple(c) for c in cues], warnings


def frame_ms(frame: int, rate: Fraction) -> int:
    """A frame's start in whole milliseconds (SRT/VTT precision; round(ms * rate / 1000) gives the frame back)."""
    return round(frame * 1000 / rate)


def write_subtitles(cues: list[tuple[int, int, str]], rate: Fraction, srt: Path, vtt: Path) -> None:
    import pysubs2
    subs = pysubs2.SSAFile()
    for start, end, text in cues:
        subs.append(pysubs2.SSAEvent(start=frame_ms(start, rate), end=frame_ms(end, rate), text=text.replace("\n", r"\N")))
    atomic_write(srt, lambda tmp: subs.save(tmp, format_="srt", encoding="utf-8"))
    atomic_write(vtt, lambda tmp: subs.save(tmp, format_="vtt", encoding="utf-8"))


# --- timelines ---

def start_time(rate: Fraction):
    import opentimelineio as otio
    tc = START_TIMECODE[:8] + (";" if drop_frame(rate) else ":") + START_TIMECODE[9:]
    return otio.opentime.from_timecode(tc, float(rate))


def reel_name(seg: Segment) -> str:
    """CMX 3600 reels are 8 characters: SHOT003, TRAN002 (the board's index)."""
    return f"{'SHOT' if seg.kind == 'shot' else 'TRAN'}{seg.metadata.get('index', 0):03d}"


def halves(frames: int) -> tuple[int, int]:
    """A transition's frames before and after its cut (OTIO's in_offset, out_offset): the cut is mid-bridge."""
    return frames // 2, frames - frames // 2


# Avid's Video Dissolve, what OTIO's AAF writer needs to write a Transition (it reads the same keys back)
_AAF_DISSOLVE = {"Operation": {"Identification": "89d9b67e-5584-302d-9abd-8bd330c46841", "Name": "VideoDissolve_2",
                               "Description": "", "IsTimeWarp": False, "Bypass": 1, "NumberInputs": 2,
                               "OperationCategory": "OperationCategory_Effect", "DataDefinition": {"Name": "Picture"}}}


def _transition(seg: Segment, rt, url):
    import opentimelineio as otio
    before, after = halves(seg.frames)
    return otio.schema.Transition(
        name=seg.name, transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve, in_offset=rt(before),
        out_offset=rt(after),
        metadata={"cinegen": dict(seg.metadata, kind="connect", media=url(seg.media),
                                  note="a generated bridge: both neighbours hold it as handles"),
                  "AAF": {"CutPoint": before, "OperationGroup": _AAF_DISSOLVE,
                          "PointList": [{"Value": 0, "Time": 0}, {"Value": 1, "Time": 1}]}})


def build_timeline(title: str, segments: list[Segment], rate: Fraction, folder: Path, sample_rate: int,
                   absolute: bool = False, audio_in_frames: bool = False, transitions: bool = True):
    """V1: the segments' media (source range = what the film shows, available range = the whole media, so the
    frames a shot was rendered beyond its cut are handles); A1: each voice WAV at its film sample, gaps between.
    absolute: file:// URLs (for adapters whose readers need them) instead of paths relative to `folder`.
    audio_in_frames: A1 in whole frames (FCP XML and AAF want one rate per timeline): each voice clip rounded to
    the nearest frame, where the .otio keeps the exact sample.
    transitions: connect bridges as Transitions over the shots' bridge handles; False: as clips of their own."""
    import opentimelineio as otio
    fr = float(rate)

    def rt(frames: int):
        return otio.opentime.RationalTime(frames, fr)

    def url(path: Path) -> str:
        return path.resolve().as_uri() if absolute else path.relative_to(folder).as_posix()

    def bridge(i: int, side: int) -> int:
        """Frames of the transition at segments[i] that the neighbouring shot covers (0: none there)."""
        ok = transitions and 0 <= i < len(segments) and segments[i].kind == "transition"
        return halves(segments[i].frames)[side] if ok else 0

    timeline = otio.schema.Timeline(name=title, global_start_time=start_time(rate))
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    cursor = 0                                                            # samples of A1 so far
    for i, seg in enumerate(segments):
        if transitions and seg.kind == "transition":
            video.append(_transition(seg, rt, url))
            continue
        lead, tail = bridge(i - 1, 1), bridge(i + 1, 0)                  # the bridge halves this clip covers
        ref = otio.schema.ExternalReference(target_url=url(seg.media),
                                            available_range=otio.opentime.TimeRange(rt(0), rt(max(seg.available, seg.frames))))
        ref.name = seg.media.name
        prompt = seg.metadata.get("prompt", "")
        clip = otio.schema.Clip(name=f"{seg.name}: {prompt}"[:80] if prompt else seg.name, media_reference=ref,
                                source_range=otio.opentime.TimeRange(rt(seg.head - lead), rt(lead + seg.frames + tail)))
        clip.metadata["cinegen"] = dict(seg.metadata, kind=seg.kind, handles=max(0, seg.available - seg.head - seg.frames))
        clip.metadata["cmx_3600"] = {"reel": reel_name(seg)}
        if seg.line:
            clip.markers.append(otio.schema.Marker(name=seg.line, marked_range=otio.opentime.TimeRange(rt(seg.head), rt(1))))
        video.append(clip)
        if seg.voice_media is not None:
            if audio_in_frames:
                st = lambda n: otio.opentime.RationalTime(round(n * rate / sample_rate), fr)
            else:
                st = lambda n: otio.opentime.RationalTime(n, sample_rate)
            if seg.voice_start > cursor:
                audio.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(st(0), st(seg.voice_start) - st(cursor))))
            rng = otio.opentime.TimeRange(st(0), st(seg.voice_samples))
            vref = otio.schema.ExternalReference(target_url=url(seg.voice_media), available_range=rng)
            audio.append(otio.schema.Clip(name=f"{seg.name} voice", media_reference=vref, source_range=rng))
            cursor = seg.voice_start + seg.voice_samples
    timeline.tracks.append(video)
    if len(audio):
        timeline.tracks.append(audio)
    return timeline


def _finish_edl(text: str, rate: Fraction) -> str:
    """OTIO's CMX writer leaves out the FCM line (it goes right after TITLE) and writes record times from
    00:00:00:00 whatever the timeline's start; both are put right here."""
    import opentimelineio as otio
    fr, start = float(rate), start_time(rate)
    fcm = f"FCM: {'DROP FRAME' if drop_frame(rate) else 'NON-DROP FRAME'}"
    out = []
    for line in text.splitlines():
        fields = line.split()
        if line[:3].isdigit() and len(fields) >= 8:          # an event: ... src in, src out, rec in, rec out
            recs = [otio.opentime.to_timecode(otio.opentime.from_timecode(tc, fr) + start, fr) for tc in fields[-2:]]
            line = " ".join([line.rsplit(None, 2)[0], *recs])        # (a source time may equal a record time)
        out.append(line)
        if line.startswith("TITLE"):
            out.append(fcm)
    if fcm not in out:
        out.insert(0, fcm)
    return "\n".join(out) + "\n"


# adapter name -> (file name, adapter options, writes transitions). The exports carry absolute file:// URLs (what
# Final Cut, Premiere, Resolve and Media Composer resolve, and relink when a folder moves); film.otio keeps
# relative paths. AAF: OTIO's writer needs a MobID per source; ours are generated media with none, so it makes them.
# FCPXML: OTIO's adapter has no transitions (it would drop them and shift every later cut), so bridges are clips.
EXPORTS = {"fcpx_xml": ("film.fcpxml", {}, False), "fcp_xml": ("film.xml", {}, True),
           "AAF": ("film.aaf", {"use_empty_mob_ids": True}, True)}


def write_timeline(title: str, segments: list[Segment], rate: Fraction, folder: Path, sample_rate: int) -> list[str]:
    """film.otio (everything), film.edl (picture), and film.fcpxml / film.xml / film.aaf through OTIO's adapters
    where they are installed and accept the timeline; returns a warning for each export that could not be made
    (or that carries connect bridges as clips)."""
    import opentimelineio as otio
    folder = Path(folder)
    timeline = build_timeline(title, segments, rate, folder, sample_rate)
    atomic_write(folder / "film.otio", lambda tmp: otio.adapters.write_to_file(timeline, tmp, adapter_name="otio_json"))
    picture = copy.deepcopy(timeline)
    del picture.tracks[1:]
    edl = _finish_edl(otio.adapters.write_to_string(picture, adapter_name="cmx_3600", rate=float(rate)), rate)
    atomic_write(folder / "film.edl", lambda tmp: Path(tmp).write_text(edl))
    warnings = []
    available = otio.adapters.available_adapter_names()
    bridges = any(s.kind == "transition" for s in segments)
    for adapter, (name, options, transitions) in EXPORTS.items():
        if adapter not in available:
            warnings.append(f"{name} not written: OTIO adapter {adapter!r} is not installed (pip install cinegen[studio])")
            continue
        tl = build_timeline(title, segments, rate, folder, sample_rate, absolute=True, audio_in_frames=True,
                            transitions=transitions)
        try:
            atomic_write(folder / name, lambda tmp, tl=tl, o=options: otio.adapters.write_to_file(tl, tmp, adapter_name=adapter, **o))
        except Exception as e:     # an adapter's own limits (OTIO raises many types): the other outputs stand
            warnings.append(f"{name} not written: OTIO's {adapter} adapter failed: {type(e).__name__}: {e}")
            continue
        if bridges and not transitions:
            warnings.append(f"{name}: connect bridges are clips, not transitions (OTIO's {adapter} adapter writes none)")
    return warnings

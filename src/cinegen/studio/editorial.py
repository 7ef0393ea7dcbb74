"""What an editor receives: subtitles (SRT and WebVTT via pysubs2) and an OpenTimelineIO timeline (.otio, plus
a CMX 3600 EDL through OTIO's adapter) that references each shot's own media file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cinegen.io.files import atomic_write


@dataclass(frozen=True)
class Segment:
    """One piece of the joined film: a shot or a generated transition."""
    name: str
    media: Path                # its own MP4
    start: float               # seconds into the film
    frames: int
    fps: float
    line: str | None = None    # dialogue/narration shown as a subtitle and spoken
    voice_media: Path | None = None

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def write_subtitles(cues: list[tuple[float, float, str]], srt: Path, vtt: Path) -> None:
    import pysubs2
    subs = pysubs2.SSAFile()
    for start, end, text in cues:
        subs.append(pysubs2.SSAEvent(start=round(start * 1000), end=round(end * 1000), text=text))
    atomic_write(srt, lambda tmp: subs.save(tmp, format_="srt", encoding="utf-8"))
    atomic_write(vtt, lambda tmp: subs.save(tmp, format_="vtt", encoding="utf-8"))


SMPTE_RATES = (23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60)


def edl_rate(fps: float) -> float:
    """EDL timecode must run at a SMPTE rate; our 8 fps clips are described on a 24 fps timebase (3 ticks a frame)."""
    return fps if fps in SMPTE_RATES else 24


def build_timeline(title: str, segments: list[Segment], fps: float, rate: float | None = None):
    """A video track of the segments' media and, where a segment speaks, an audio track of its voice line.
    Times are in frames of `rate` (default: the clips' own fps)."""
    import opentimelineio as otio
    rate = rate or fps

    def rt(frames: float):
        return otio.opentime.RationalTime(round(frames * rate / fps), rate)

    timeline = otio.schema.Timeline(name=title, global_start_time=rt(0))
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    for seg in segments:
        available = otio.opentime.TimeRange(rt(0), rt(seg.frames))
        ref = otio.schema.ExternalReference(target_url=seg.media.resolve().as_uri(), available_range=available)
        clip = otio.schema.Clip(name=seg.name, media_reference=ref, source_range=available)
        if seg.line:
            clip.markers.append(otio.schema.Marker(name=seg.line, marked_range=otio.opentime.TimeRange(rt(0), rt(1))))
        video.append(clip)
        if seg.voice_media is not None:
            vref = otio.schema.ExternalReference(target_url=seg.voice_media.resolve().as_uri(), available_range=available)
            audio.append(otio.schema.Clip(name=f"{seg.name} voice", media_reference=vref, source_range=available))
        else:
            audio.append(otio.schema.Gap(source_range=available))
    timeline.tracks.append(video)
    timeline.tracks.append(audio)
    return timeline


def write_timeline(title: str, segments: list[Segment], fps: float, otio_path: Path, edl_path: Path) -> None:
    """.otio holds everything at the clips' fps; the EDL (one picture track, SMPTE timecode) the picture only."""
    import opentimelineio as otio
    timeline = build_timeline(title, segments, fps)
    atomic_write(otio_path, lambda tmp: otio.adapters.write_to_file(timeline, tmp, adapter_name="otio_json"))
    picture = build_timeline(title, segments, fps, rate=edl_rate(fps))
    del picture.tracks[1:]
    atomic_write(edl_path, lambda tmp: otio.adapters.write_to_file(picture, tmp, adapter_name="cmx_3600"))

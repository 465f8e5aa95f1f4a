"""Optional physical clips: stream copy from a keyframe (fast, the paper's choice) or an exact re-encode.

`copy` remuxes the packets of `[start, end)` without decoding; it is exact only when the clip starts on a keyframe
(`curation.cuts.snap_to_keyframes=true`), otherwise the file starts at the keyframe before the clip; it keeps the
source's display rotation. `reencode` decodes exactly the clip's frames, upright, and encodes them as H.264. Both keep
the frames' presentation timestamps, so a variable-frame-rate clip plays as its source did.
"""

from fractions import Fraction
from pathlib import Path

import av

from .video_io import VideoInfo, decode_at


def copy_clip(info: VideoInfo, start_frame: int, end_frame: int, target: Path) -> Path:
    keyframe = max((k for k in info.keyframes if k <= start_frame), default=0)
    first_pts, end_pts = info.frame_pts(keyframe), info.frame_pts(end_frame)
    partial = target.with_name(target.name + ".partial.mp4")
    with av.open(info.path) as source, av.open(str(partial), mode="w") as sink:
        in_stream = source.streams.video[0]
        out_stream = sink.add_stream_from_template(in_stream)
        if info.turns:
            out_stream.set_display_rotation(90 * info.turns)
        source.seek(first_pts, stream=in_stream, backward=True, any_frame=False)
        for packet in source.demux(in_stream):
            if packet.pts is None or packet.dts is None:
                continue
            if packet.pts >= end_pts and packet.is_keyframe:
                break
            if not first_pts <= packet.pts < end_pts:
                continue
            packet.pts -= first_pts
            packet.dts -= first_pts
            packet.stream = out_stream
            sink.mux(packet)
    partial.replace(target)
    return target


def reencode_clip(info: VideoInfo, start_frame: int, end_frame: int, target: Path, crf: int = 18) -> Path:
    frames = decode_at(info, list(range(start_frame, end_frame)))
    rate = Fraction(info.fps).limit_denominator(1001)
    partial = target.with_name(target.name + ".partial.mp4")
    with av.open(str(partial), mode="w") as sink:
        stream = sink.add_stream("libx264", rate=rate)
        stream.width, stream.height = info.width - info.width % 2, info.height - info.height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = info.time_base
        stream.options = {"crf": str(crf)}
        for index in range(start_frame, end_frame):
            frame = av.VideoFrame.from_ndarray(frames[index][: stream.height, : stream.width], format="rgb24")
            frame.pts, frame.time_base = info.frame_pts(index) - info.frame_pts(start_frame), info.time_base
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode(None))
    partial.replace(target)
    return target


SPLITTERS = {"copy": copy_clip, "reencode": reencode_clip}

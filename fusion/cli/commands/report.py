"""``vocalfusion report``: a self-contained HTML report of one session, or of a speaker's sessions.

::

    vocalfusion report session.wav -o session.html              # analyse, then render
    vocalfusion report out/session.json -o session.html         # render a saved analysis
    vocalfusion report session.wav --embed-audio -o session.html
    vocalfusion report sessions/*.json --speaker P01 -o trend.html

A single input gives a session report. Several inputs, or ``--speaker``, give a longitudinal
report; its inputs must be saved analyses (``vocalfusion analyze`` writes them).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path
from typing import Any

from rich.markup import escape

from features.errors import AudioError, ParameterError
from fusion.cli.commands._common import add_config_args, config_from_args, console, err_console
from fusion.files import atomic_write_text

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="write a self-contained HTML report (one session, or sessions over time)",
        description="Write a self-contained HTML report. One audio file is analysed and "
                    "reported; one result JSON is reported without loading any model. Several "
                    "result JSONs (or --speaker) give a longitudinal report of one speaker "
                    "against their own baseline. The page loads nothing from the network.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="AUDIO_OR_JSON",
                   help="an audio file, a result JSON, or several result JSONs")
    p.add_argument("-o", "--out", type=Path, default=None, metavar="HTML",
                   help="output file (default: <input stem>.html, or trend.html for several "
                        "sessions, in the current folder); a folder puts it there")
    g = p.add_argument_group("session report")
    g.add_argument("--embed-audio", action="store_true",
                   help="put the audio inside the page (16 kHz mono; Ogg/Opus 24 kbit/s when "
                        "ffmpeg can, else WAV); clicking a segment plays it")
    g.add_argument("--audio", type=Path, default=None, metavar="FILE",
                   help="audio to embed for a result JSON (default: the file named in the "
                        "JSON); must be the analysed file (sha256 checked)")
    g.add_argument("--audio-codec", choices=["auto", "opus", "wav"], default="auto",
                   help="codec of the embedded audio (default: auto)")
    t = p.add_argument_group("longitudinal report")
    t.add_argument("--speaker", default=None, metavar="ID",
                   help="the speaker whose sessions to report; results naming another "
                        "speaker_id are left out")
    t.add_argument("--baseline-sessions", type=int, default=1, metavar="N",
                   help="baseline = mean of the first N sessions by date (default 1; 0 = mean "
                        "of all sessions)")
    t.add_argument("--dates", choices=["auto", "name", "analysed"], default="auto",
                   help="session dates: from a YYYY-MM-DD/YYYYMMDD date in the file name, "
                        "falling back to the analysis time (auto, default); names only; or "
                        "analysis time only")
    add_config_args(p)
    p.set_defaults(func=run)


def _expand(inputs: list[Path]) -> list[Path]:
    """Inputs as given; a pattern the shell did not expand (e.g. on Windows) is globbed."""
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        if not item.exists() and any(c in text for c in "*?["):
            matches = sorted(glob.glob(text))
            if not matches:
                raise ParameterError(f"{text}: no file matches this pattern")
            out.extend(Path(m) for m in matches)
        else:
            out.append(item)
    return out


def _out_path(args: argparse.Namespace, default_name: str) -> Path:
    out: Path | None = args.out
    if out is None:
        return Path(default_name)
    if out.is_dir() or str(out).endswith(("/", "\\")):
        return out / default_name
    return out


def run(args: argparse.Namespace) -> int:
    from fusion.report.trend import looks_like_result_json

    inputs = _expand(args.inputs)
    for p in inputs:
        if not p.exists():
            raise ParameterError(f"{p}: file not found")
        if p.is_dir():
            raise ParameterError(f"{p}: is a folder; give the files (e.g. {p}/*.json)")
    if args.baseline_sessions < 0:
        raise ParameterError(f"--baseline-sessions {args.baseline_sessions} must be ≥ 0")
    if len(inputs) > 1 or args.speaker is not None:
        audio_inputs = [p for p in inputs if not looks_like_result_json(p)]
        if audio_inputs:
            raise ParameterError(
                f"{audio_inputs[0]}: a longitudinal report reads saved results (JSON); run "
                "`vocalfusion analyze` on the audio first")
        if args.embed_audio:
            raise ParameterError("--embed-audio works for a single-session report only")
        return _trend(args, inputs)
    return _session(args, inputs[0])


def _session(args: argparse.Namespace, path: Path) -> int:
    from fusion.report.audio import encode_audio
    from fusion.report.render import render_session
    from fusion.report.trend import load_result, looks_like_result_json

    audio = None
    if looks_like_result_json(path):
        result = load_result(path)
        if args.embed_audio:
            audio = _audio_for_result(args, result)
    else:
        from features.audio.load import load_audio
        from fusion.engine.analyzer import Analyzer

        cfg = config_from_args(args)
        try:
            loaded = load_audio(path, max_duration_s=cfg.audio.max_duration_s,
                                timeout_s=cfg.audio.decode_timeout_s)
        except AudioError as exc:
            err_console.print(f"[red]error:[/] {escape(str(exc))}")
            return 3
        result = Analyzer(cfg).load().process_audio(loaded)
        if args.embed_audio:
            audio = loaded
    embedded = encode_audio(audio, codec=args.audio_codec) if audio is not None else None
    html = render_session(result, audio=embedded)
    out = _out_path(args, f"{path.stem}.html")
    atomic_write_text(out, html)
    size = len(html.encode("utf-8"))
    extra = f", audio: {embedded.note}" if embedded else ""
    console.print(f"wrote {escape(str(out))} ({size / 1e6:.2f} MB{escape(extra)})")
    return 0


def _audio_for_result(args: argparse.Namespace, result: Any) -> Any:
    from features.audio.load import load_audio

    cfg = config_from_args(args)
    path = args.audio if args.audio is not None else Path(result.source.path)
    if not path.exists():
        raise ParameterError(f"{path}: the analysed audio file is not here; pass it with "
                             "--audio FILE to embed it")
    audio = load_audio(path, max_duration_s=cfg.audio.max_duration_s,
                       timeout_s=cfg.audio.decode_timeout_s)
    want, got = result.source.sha256, audio.source.sha256
    if want and got and want != got:
        raise ParameterError(f"{path}: this is not the analysed file (sha256 {got[:12]}…, the "
                             f"result was made from {want[:12]}…)")
    return audio


def _trend(args: argparse.Namespace, inputs: list[Path]) -> int:
    from fusion.report.trend import load_sessions, render_trend

    kept, left_out = load_sessions(inputs, speaker=args.speaker)
    for p, why in left_out:
        err_console.print(f"[yellow]left out:[/] {escape(p)} ({escape(why)})")
    if not kept:
        raise ParameterError(f"no session of speaker {args.speaker!r} among the "
                             f"{len(inputs)} result(s)")
    html = render_trend(kept, speaker=args.speaker, baseline_n=args.baseline_sessions,
                        dates=args.dates, left_out=left_out)
    out = _out_path(args, "trend.html")
    atomic_write_text(out, html)
    console.print(f"wrote {escape(str(out))} ({len(kept)} sessions, "
                  f"{len(html.encode('utf-8')) / 1e6:.2f} MB)")
    return 0

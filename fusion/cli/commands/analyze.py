"""``vocalfusion analyze FILE_OR_DIR ... -o OUT/``: one JSON per file and a terminal summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from rich.markup import escape
from rich.table import Table

from features.audio.load import STDIN_PATH
from features.errors import AudioError
from fusion.cli.commands._common import add_config_args, config_from_args, console, err_console
from fusion.files import atomic_write_bytes, atomic_write_text, find_audio_files, iter_unique_stems
from fusion.schema import SessionResult, segment_table_csv

__all__ = ["register", "expand_inputs", "write_result", "write_contours", "check_out_dir"]


def register(sub: Any) -> None:
    p = sub.add_parser("analyze", help="analyse audio files; write one JSON per file",
                       description="Analyse audio files (or folders of them) and write one "
                                   "JSON result per file into OUT, plus an optional segment "
                                   "table.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR",
                   help="audio files or folders; `-` reads one file from standard input "
                        "(written as stdin.json; its table's file value is `-`)")
    p.add_argument("-o", "--out", type=Path, default=Path("out"), metavar="OUT",
                   help="output folder (default: ./out)")
    p.add_argument("--format", choices=["json", "csv", "parquet"], default="json",
                   help="also write the segment table as CSV or Parquet (JSON is always written)")
    p.add_argument("--embeddings", choices=["npy", "parquet"], default=None,
                   help="write emotion embeddings beside the JSON (needs the emotion stream)")
    p.add_argument("--contours", choices=["parquet", "csv"], default=None,
                   help="also write the frame contours (F0, intensity, HNR, F1–F3 on a 10-ms "
                        "grid; MultiIndex file, time) as STEM.contours.parquet|csv")
    p.add_argument("-q", "--quiet", action="store_true", help="no tables, only errors")
    p.add_argument("--speakers", choices=["off", "auto", "channels"], default=None,
                   help="who is talking: off (one speaker), auto (find the speakers by voice), "
                        "channels (one speaker per channel); same as --set speakers.mode=")
    p.add_argument("--num-speakers", type=int, default=None, metavar="N",
                   help="fix the speaker count (speakers.num_speakers)")
    p.add_argument("--speaker-id", action="append", default=[], metavar="[LABEL=]ID",
                   help="name the focus speaker (P01) or one speaker (S2=P01); repeatable")
    add_config_args(p)
    p.set_defaults(func=run)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders expanded to the audio files they contain (sorted)."""
    files: list[Path] = []
    for item in inputs:
        files.extend(find_audio_files(item) if item.is_dir() else [item])
    return files


def _stem(path: Path, stem: str) -> str:
    """The output stem; ``stdin`` for the input ``-``."""
    return "stdin" if str(path) == STDIN_PATH else stem


def check_out_dir(out_dir: Path) -> str | None:
    """Create ``out_dir`` and check that it takes files; the problem in one line, or None."""
    import tempfile

    if out_dir.exists() and not out_dir.is_dir():
        return f"-o {out_dir}: exists and is not a folder; name a folder for the results"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        return f"cannot write to the output folder {out_dir}: {exc.strerror or exc}"
    return None


def write_result(result: SessionResult, out_dir: Path, stem: str, fmt: str) -> list[Path]:
    """Write ``stem.json`` (and ``stem.segments.csv|parquet``) atomically; return the paths.

    All or nothing: when one file cannot be written (``OSError``: full disk, read-only
    folder), the files this call had already written are removed before the error propagates.
    """
    written: list[Path] = []
    try:
        path = out_dir / f"{stem}.json"
        atomic_write_text(path, result.to_json())
        written.append(path)
        if fmt in ("csv", "parquet"):
            # the one table shape: MultiIndex (file, start, end), Timedelta in Parquet, seconds
            # in CSV (read either back with fusion.schema.read_segment_table)
            df = result.to_dataframe()
            path = out_dir / f"{stem}.segments.{fmt}"
            if fmt == "csv":
                atomic_write_text(path, segment_table_csv(df))
            else:
                import io

                buf = io.BytesIO()
                df.to_parquet(buf, index=True)
                atomic_write_bytes(path, buf.getvalue())
            written.append(path)
    except BaseException:
        for done in written:
            done.unlink(missing_ok=True)
        raise
    return written


def write_contours(result: SessionResult, out_dir: Path, stem: str, fmt: str) -> Path:
    """Write ``stem.contours.parquet`` (Timedelta ``time``) or ``.csv`` (``time`` in s)."""
    df = result.contours()
    path = out_dir / f"{stem}.contours.{fmt}"
    if fmt == "csv":
        flat = df.reset_index()
        flat["time"] = flat["time"].dt.total_seconds()
        atomic_write_text(path, str(flat.to_csv(index=False)))
    else:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=True)
        atomic_write_bytes(path, buf.getvalue())
    return path


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def print_session(result: SessionResult) -> None:
    """A readable per-segment table and session line for one result."""
    title = f"{escape(result.source.path)}  ·  {result.source.duration_s:.1f} s  ·  {result.status}"
    table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for col in ("#", "start", "end", "F0 Hz", "syl/s", "pause", "emotion", "sentiment",
                "stress", "depr.", "text"):
        table.add_column(col, overflow="ellipsis", no_wrap=col != "text",
                         justify="right" if col not in ("emotion", "sentiment", "text") else "left")
    for seg in result.segments:
        pr, em, tr, se, sc = seg.prosody, seg.emotion, seg.transcript, seg.sentiment, seg.scores
        table.add_row(
            str(seg.index), f"{seg.start_s:.2f}", f"{seg.end_s:.2f}",
            _fmt(pr.f0_mean_hz if pr else None, ".0f"),
            _fmt(pr.speech_rate_syl_per_s if pr else None, ".1f"),
            _fmt(pr.pause_ratio if pr else None, ".2f"),
            escape(em.top_label or "—") if em else "—",
            escape(se.label) if se else "—",
            _fmt(sc.stress.value if sc else None),
            _fmt(sc.depression.value if sc else None),
            escape((tr.text[:60] + "…") if tr and len(tr.text) > 60 else (tr.text if tr else "")),
        )
    console.print(table)
    streams = ", ".join(f"{k}: {v.status}" for k, v in result.streams.items())
    console.print(f"  streams: {escape(streams)}")
    for name, info in result.streams.items():
        if info.reason:
            console.print(f"  [yellow]{escape(name)}[/]: {escape(str(info.status))} — "
                          f"{escape(info.reason)}")
    if len(result.speakers) > 1:
        who = ", ".join(f"{sp.speaker_id or sp.label} {sp.speech_s:.0f} s"
                        + (" (focus)" if sp.focus else "") for sp in result.speakers)
        console.print(f"  speakers: {escape(who)}")
    if result.summary and result.summary.stress and result.summary.depression:
        s, d = result.summary.stress, result.summary.depression
        console.print(f"  session: stress mean {_fmt(s.mean)} (peak {_fmt(s.peak)}), "
                      f"depression probability mean {_fmt(d.mean)} "
                      f"(confidence {_fmt(d.mean_confidence)})")
    if result.fusion:
        console.print(f"  fusion model: {escape(result.fusion.model_name)} — "
                      f"[bold]{escape(result.fusion.calibration_status)}[/]")
    for w in result.warnings:
        console.print(f"  [yellow]warning:[/] {escape(w)}")


def run(args: argparse.Namespace) -> int:
    from fusion.engine.analyzer import Analyzer

    files = expand_inputs(args.inputs)
    if not files:
        err_console.print("error: no audio files found in the given inputs")
        return 2
    if sum(str(f) == STDIN_PATH for f in files) > 1:
        err_console.print("error: `-` (standard input) can be given only once")
        return 2
    from fusion.engine.speakers import parse_speaker_ids

    cfg = config_from_args(args)
    problem = check_out_dir(args.out)
    if problem:
        err_console.print(f"[bold red]error:[/] {escape(problem)}")
        return 2
    speaker_ids = parse_speaker_ids(args.speaker_id) or None
    if args.speakers or args.num_speakers is not None:
        cfg = cfg.with_overrides(
            {k: v for k, v in (("speakers.mode", args.speakers),
                               ("speakers.num_speakers", args.num_speakers)) if v is not None})
    if args.embeddings:
        cfg = cfg.with_overrides({"emotion.embeddings": True})
    analyzer = Analyzer(cfg).load()
    failed = 0
    for path, file_stem in iter_unique_stems(files):
        stem = _stem(path, file_stem)
        try:
            run_ = analyzer.run_file(path, contours=args.contours is not None,
                                     speaker_ids=speaker_ids)
            result = run_.result
        except AudioError as exc:
            failed += 1
            err_console.print(f"[red]error:[/] {escape(str(exc))}")
            continue
        try:
            written = write_result(result, args.out, stem, args.format)
            try:
                if args.contours and result.has_contours:
                    written.append(write_contours(result, args.out, stem, args.contours))
                if args.embeddings:
                    written.extend(_write_embeddings(run_.embeddings.get("emotion"), result,
                                                     args.out, stem, args.embeddings))
            except BaseException:
                for done in written:
                    done.unlink(missing_ok=True)
                raise
        except OSError as exc:  # full disk, folder made read-only meanwhile: this file only
            failed += 1
            err_console.print(f"[red]error:[/] {escape(str(path))}: cannot write its result "
                              f"to {escape(str(args.out))}: {escape(exc.strerror or str(exc))}")
            continue
        if not args.quiet:
            print_session(result)
            console.print("  wrote " + ", ".join(escape(str(p)) for p in written) + "\n")
    if failed == len(files):
        return 3
    return 1 if failed else 0


def _write_embeddings(emb: Any, result: SessionResult, out_dir: Path, stem: str,
                      fmt: Literal["npy", "parquet"]) -> list[Path]:
    if emb is None:
        err_console.print("[yellow]warning:[/] no embeddings: the emotion stream did not run")
        return []
    from features.emotion.stream import save_embeddings
    from features.segments.vad import Segment

    path = out_dir / f"{stem}.embeddings.{fmt}"
    segments = [Segment(s.start_s, s.end_s) for s in result.segments]
    save_embeddings(path, emb, segments, fmt=fmt)
    return [path]

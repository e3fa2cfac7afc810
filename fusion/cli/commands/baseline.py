"""``vocalfusion baseline build sessions/*.json -o speaker.json``: a speaker's own baseline.

The profile holds, per feature, the median and robust scale (1.4826·MAD, floored) of the
speaker's segments pooled over the given sessions — ideally recordings made in a calm,
typical state. Scoring with it (``--set fusion.speaker_profile=speaker.json``) z-scores stress
markers against that baseline instead of against the session being scored, which keeps a
whole-session shift (a stressful day) visible. Speaker personalisation is the largest known
gain in speech-based stress recognition (see docs/scores.md).

Given audio files (or analysis JSONs whose speakers carry voiceprints, from
``--set speakers.voiceprints=true``), the profile also stores the speaker's voiceprint (the
mean speaker embedding: biometric data), so that a multi-speaker session scored with the
profile finds that speaker. ``--speaker LABEL`` picks one speaker of multi-speaker sessions
(default: the only one, else the focus speaker).

With ``--norms`` the same command measures population norms (mean and SD over all segments)
from a reference corpus of many speakers instead, in the format of
``configs/population_norms.json`` (use with ``--set fusion.population_norms=norms.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fusion.cli.commands._common import add_config_args, config_from_args, console

__all__ = ["register", "func"]


def register(sub: Any) -> None:
    p = sub.add_parser("baseline", help="build a speaker baseline profile (or population norms)",
                       description="Speaker baselines for the stress score.")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION")
    b = bsub.add_parser(
        "build", help="pool saved analyses of one speaker into a baseline profile JSON",
        description="Pool the segments of saved analysis JSONs (`vocalfusion analyze`) of one "
                    "speaker into a baseline profile (median and 1.4826·MAD per feature).")
    b.add_argument("sessions", nargs="+", type=Path, metavar="SESSION.json|AUDIO",
                   help="saved analyses, or audio files (analysed here, with voiceprints)")
    b.add_argument("-o", "--out", type=Path, required=True, metavar="PROFILE.json")
    b.add_argument("--speaker-id", default=None, help="speaker id to record (default: the "
                   "sessions' speaker_id, if they agree)")
    b.add_argument("--speaker", default=None, metavar="LABEL",
                   help="the speaker of multi-speaker sessions to pool (a label such as S2, "
                        "or a speaker_id); default: the only or the focus speaker")
    b.add_argument("--sex", choices=["female", "male"], default=None,
                   help="selects sex-specific population norms when scoring with this profile")
    b.add_argument("--norms", action="store_true",
                   help="build population norms from a multi-speaker reference corpus instead")
    add_config_args(b)
    b.set_defaults(func=func)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def func(args: argparse.Namespace) -> int:
    from features.errors import ParameterError
    from fusion._jsonio import MAX_RESULT_BYTES, read_json_bytes
    from fusion.files import atomic_write_text
    from fusion.schema import SessionResult
    from fusion.scoring.baseline import build_norms, build_profile, save_profile
    from fusion.scoring.head import load_model_file, load_prior

    cfg = config_from_args(args)
    spec = load_prior() if cfg.fusion.model == "prior" else load_model_file(cfg.fusion.model)
    sessions = []
    audio = [p for p in args.sessions if p.suffix.lower() != ".json"]
    analyzer = None
    if audio and not args.norms:
        from fusion.engine.analyzer import Analyzer

        analyzer = Analyzer(cfg.with_overrides(["speakers.voiceprints=true"])).load()
    for path in args.sessions:
        if path.suffix.lower() != ".json":
            if analyzer is None:
                raise ParameterError(f"{path}: baseline build --norms reads saved analysis "
                                     "JSON files (from `vocalfusion analyze`), not audio")
            sessions.append(analyzer.process_file(path))
            continue
        data = read_json_bytes(path, what="analysis JSON", max_bytes=MAX_RESULT_BYTES)
        try:
            sessions.append(SessionResult.from_json(data))
        except ValueError as exc:
            raise ParameterError(f"{path}: not a vocalfusion analysis JSON: "
                                 f"{str(exc).splitlines()[0]}") from None
    sources = [str(p) for p in args.sessions]
    if args.norms:
        doc = build_norms(sessions, spec.normalisation, name=args.out.stem, sources=sources)
        atomic_write_text(args.out, json.dumps(doc, indent=2, allow_nan=False))
        console.print(f"wrote population norms {args.out}: {len(doc['features'])} features "
                      f"from {len(sessions)} sessions")
        return 0
    from fusion.scoring.baseline import one_speaker_sessions

    picked, voiceprint, picked_id = one_speaker_sessions(sessions, args.speaker)
    profile = build_profile(picked, spec.normalisation, speaker_id=args.speaker_id or picked_id,
                            sex=args.sex, sources=sources)
    if voiceprint is not None:
        profile = profile.model_copy(update={"voiceprint": voiceprint})
    save_profile(profile, args.out)
    console.print(f"wrote speaker profile {args.out}: {len(profile.features)} features from "
                  f"{profile.n_segments} segments ({profile.speech_s:.1f} s) in "
                  f"{profile.n_sessions} sessions")
    if voiceprint is None:
        console.print("[yellow]note:[/] no voiceprint (the sessions carry none: give audio "
                      "files, or analyse with --set speakers.voiceprints=true); this profile "
                      "cannot pick its speaker out of a multi-speaker session")
    if profile.n_segments < 10:
        console.print("[yellow]note:[/] fewer than 10 segments: the baseline is imprecise")
    return 0

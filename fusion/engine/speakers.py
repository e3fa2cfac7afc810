"""The speakers stage of the engine: who speaks when, who they are, whose scores lead.

Between segmentation and the streams, :func:`find_speakers` labels every speech segment
(``speakers.mode``: ``off`` → one speaker ``S1``; ``auto`` → diarization by voice;
``channels`` → one speaker per channel) and :func:`split_at_turns` splits the segments where
the speaker changes, so that no segment straddles two voices. After fusion,
:func:`identify` names the speakers (a speaker profile's voiceprint, ``--speaker-id``) and
:func:`speaker_summaries` gives each speaker their own session summary, the focus speaker
first (``speakers.focus``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from features.errors import ModelUnavailable, ParameterError
from features.segments.vad import Segment
from features.speakers.config import SpeakersConfig
from features.speakers.diarize import diarize, single_speaker
from features.speakers.encoder import SpeakerEncoder
from features.speakers.result import SpeakersResult, voiceprint_similarity
from fusion.schema import SegmentResult, SessionSummary, SpeakerSummary

__all__ = ["FOCUS_KEY", "parse_speaker_ids", "Identities", "find_speakers", "split_at_turns",
           "identify", "focus_label", "speaker_summaries", "load_encoder"]

log = logging.getLogger("vocalfusion")

#: key of ``speaker_ids`` that names the focus speaker (``--speaker-id P01``)
FOCUS_KEY = ""


def parse_speaker_ids(values: Sequence[str]) -> dict[str, str]:
    """``["P01"]`` → ``{"": "P01"}`` (the focus speaker); ``["S2=P01", "S1=INT"]`` →
    ``{"S2": "P01", "S1": "INT"}``.

    Raises
    ------
    ParameterError
        An empty id or label, a label given twice, or two bare ids.
    """
    out: dict[str, str] = {}
    for raw in values:
        label, sep, ident = raw.partition("=")
        if not sep:
            label, ident = FOCUS_KEY, raw
        label, ident = label.strip(), ident.strip()
        if not ident or (sep and not label):
            raise ParameterError(f"--speaker-id {raw!r}: give ID (the focus speaker) or "
                                 "LABEL=ID (e.g. S2=P01)")
        if label in out:
            raise ParameterError(f"--speaker-id names {'the focus speaker' if not label else label}"
                                 " twice")
        out[label] = ident
    return out


def load_encoder(cfg: SpeakersConfig, num_threads: int | None = None, *,
                 need_voiceprints: bool = False) -> tuple[SpeakerEncoder | None, str | None]:
    """The loaded GE2E encoder for ``mode = "auto"`` (backend resemblyzer) or for voiceprints,
    or ``None`` and the one-line reason it is unavailable (then the engine carries on with one
    speaker and no voiceprints)."""
    wanted = (cfg.mode == "auto" and cfg.backend == "resemblyzer") or need_voiceprints
    if not wanted:
        return None, None
    try:
        return SpeakerEncoder(num_threads=num_threads).load(), None
    except ModelUnavailable as exc:
        return None, (f"speakers.mode = 'auto' needs the resemblyzer package's encoder "
                      f"weights ({exc}); carried on with one speaker "
                      "(`pip install --no-deps resemblyzer`)")


def find_speakers(y: np.ndarray, segments: Sequence[Segment], cfg: SpeakersConfig, *,
                  encoder: SpeakerEncoder | None = None, unavailable: str | None = None,
                  channels: np.ndarray | None = None, voiceprints: bool = False
                  ) -> SpeakersResult:
    """Who speaks when, under ``cfg`` (never raises for bad input: one speaker + a warning).

    Parameters
    ----------
    y : np.ndarray
        The 16 kHz mono mix-down.
    segments : sequence of Segment
    cfg : SpeakersConfig
    encoder : SpeakerEncoder, optional
        The loaded encoder (``auto``).
    unavailable : str, optional
        Why the encoder is missing; the result is one speaker with this warning.
    channels : np.ndarray, optional
        The un-mixed 16 kHz channels, shape (n, channels) (``channels`` mode).
    voiceprints : bool
        Compute each speaker's voiceprint (``auto`` only).
    """
    segs = sorted(segments)
    if cfg.mode == "off":
        if voiceprints and encoder is not None and segs:
            # one speaker by definition; the encoder only gives the voiceprint
            one = cfg.model_copy(update={"mode": "auto", "num_speakers": 1})
            try:
                res = diarize(y, segs, one, encoder=encoder, voiceprints=True)
            except (ParameterError, ModelUnavailable) as exc:
                return single_speaker(segs, warnings=[f"speakers: no voiceprint: {exc}"])
            base = single_speaker(segs)
            vp = res.speakers[0].voiceprint if res.speakers else None
            return base.model_copy(update={"speakers": [
                sp.model_copy(update={"voiceprint": vp}) for sp in base.speakers]})
        return single_speaker(segs)
    if cfg.mode == "channels":
        from features.speakers.channels import diarize_channels

        n_ch = 1 if channels is None or channels.ndim == 1 else int(channels.shape[1])
        try:
            if channels is None or n_ch < 2:
                raise ParameterError(
                    "speakers.mode = 'channels' needs a multi-channel file (one speaker per "
                    f"channel); this one has {n_ch} channel: use speakers.mode = 'auto'")
            if not segs:
                return single_speaker(segs, mode="channels", backend="channels",
                                      reason="no speech was found")
            return diarize_channels(channels, segs, cfg)
        except ParameterError as exc:
            return single_speaker(segs, mode="channels", backend="channels",
                                  reason=f"{exc}; all speech is one speaker, S1",
                                  warnings=[f"speakers: {exc}; one speaker assumed"])
    if unavailable is not None:
        return single_speaker(segs, mode="auto", backend="none",
                              reason="the speaker encoder is unavailable; all speech is one "
                                     "speaker, S1", warnings=[f"speakers: {unavailable}"])
    try:
        return diarize(y, segs, cfg, encoder=encoder, voiceprints=voiceprints)
    except (ParameterError, ModelUnavailable) as exc:
        return single_speaker(segs, mode="auto", backend="none",
                              reason=f"diarization failed ({exc}); all speech is one speaker",
                              warnings=[f"speakers: {exc}; one speaker assumed"])


def split_at_turns(result: SpeakersResult) -> tuple[list[Segment], list[str], list[bool]]:
    """The segments cut at the speaker turns: segments, their labels, their overlap flags."""
    segs, labels, overlap = [], [], []
    for turn in sorted(result.turns, key=lambda t: t.start_s):
        if turn.end_s <= turn.start_s:
            continue
        segs.append(Segment(turn.start_s, turn.end_s))
        labels.append(turn.speaker)
        overlap.append(turn.overlap)
    return segs, labels, overlap


@dataclass
class Identities:
    """Who the speakers are: ``names`` maps label → speaker_id (known ones only)."""

    names: dict[str, str] = field(default_factory=dict)
    profile_label: str | None = None
    similarity: dict[str, float] = field(default_factory=dict)
    profile_applies_to_all: bool = True
    warnings: list[str] = field(default_factory=list)


def identify(result: SpeakersResult, *, profile_voiceprint: Sequence[float] | None,
             profile_id: str | None, has_profile: bool, profile_path: str | None,
             cfg: SpeakersConfig, speaker_ids: Mapping[str, str] | None = None
             ) -> Identities:
    """Match the speakers to the profile's voiceprint and apply ``speaker_ids``.

    A speaker whose voiceprint has a cosine above ``cfg.match_similarity`` with the profile's
    (the best one, if several) is the profile's speaker: scored against the profile and
    named by its ``speaker_id``. With one speaker and a profile without a voiceprint, the
    profile applies as it always did; with several speakers such a profile cannot pick one
    and is used for none (warning). ``speaker_ids``: label → id; the key ``""`` names the
    focus speaker (resolved by the caller).
    """
    ids = Identities()
    labels = [s.label for s in result.speakers]
    if has_profile and len(labels) > 1:
        ids.profile_applies_to_all = False
        if profile_voiceprint is None:
            ids.warnings.append(
                f"speakers: the speaker profile {profile_path} has no voiceprint (built "
                "before voiceprints, or from results without them), so it cannot tell which "
                f"of the {len(labels)} speakers it describes; it was used for none. Rebuild it "
                "with `vocalfusion baseline build` from the audio files")
        else:
            for spk in result.speakers:
                if spk.voiceprint is not None:
                    ids.similarity[spk.label] = round(
                        voiceprint_similarity(spk.voiceprint, profile_voiceprint), 4)
            best = max(ids.similarity, key=lambda k: ids.similarity[k], default=None)
            if best is not None and ids.similarity[best] >= cfg.match_similarity:
                ids.profile_label = best
                if profile_id:
                    ids.names[best] = profile_id
            else:
                top = f"{ids.similarity[best]:.2f}" if best is not None else "none"
                ids.warnings.append(
                    f"speakers: no speaker matches the speaker profile {profile_path} "
                    f"(best cosine {top} < speakers.match_similarity "
                    f"{cfg.match_similarity:.2f}); every speaker was scored against their "
                    "own session")
    elif has_profile and len(labels) == 1:
        ids.profile_label = labels[0]
        if profile_voiceprint is not None and result.speakers[0].voiceprint is not None:
            sim = voiceprint_similarity(result.speakers[0].voiceprint, profile_voiceprint)
            ids.similarity[labels[0]] = round(sim, 4)
            if sim < cfg.match_similarity:
                ids.warnings.append(
                    f"speakers: the only speaker does not match the speaker profile "
                    f"{profile_path} (cosine {sim:.2f} < {cfg.match_similarity:.2f}); it was "
                    "still scored against the profile")
        if profile_id:
            ids.names[labels[0]] = profile_id
    for key, value in (speaker_ids or {}).items():
        if key == FOCUS_KEY:
            continue
        if key not in labels:
            ids.warnings.append(f"speakers: --speaker-id {key}={value}: there is no speaker "
                                f"{key} (speakers: {', '.join(labels) or 'none'})")
            continue
        ids.names[key] = value
    return ids


def focus_label(result: SpeakersResult, cfg: SpeakersConfig, ids: Identities) -> str | None:
    """The focus speaker's label (``None`` for ``focus = "all"`` or no speakers)."""
    if cfg.focus == "all" or not result.speakers:
        return None
    if cfg.focus == "profile" and ids.profile_label is not None:
        return ids.profile_label
    return max(result.speakers, key=lambda s: s.speech_s).label


def speaker_summaries(result: SpeakersResult, segments: Sequence[SegmentResult],
                      summarize: Callable[[Sequence[SegmentResult]], SessionSummary], *,
                      focus: str | None, ids: Identities,
                      keep_voiceprints: bool) -> list[SpeakerSummary]:
    """One :class:`SpeakerSummary` per speaker (overlap segments left out), focus first.

    ``summarize`` gives the summary of one speaker's segments.
    """
    out = []
    for spk in result.speakers:
        name = ids.names.get(spk.label, spk.label)
        mine = [s for s in segments if s.speaker == name and not s.overlap]
        summary = summarize(mine)
        out.append(SpeakerSummary(
            label=spk.label, speaker_id=ids.names.get(spk.label),
            speech_s=round(spk.speech_s, 6), n_segments=len(mine),
            focus=spk.label == focus,
            profile_similarity=ids.similarity.get(spk.label),
            matches_profile=(None if not ids.similarity else spk.label == ids.profile_label),
            voiceprint=spk.voiceprint if keep_voiceprints else None,
            summary=summary))
    out.sort(key=lambda s: (not s.focus, -s.speech_s))
    return out

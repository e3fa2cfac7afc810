"""Speakers through the whole engine (issue 16, items 3–6): modes end to end, per-speaker
pitch range, the target speaker, the stress reference, surfaces and bad input.

Real voices: LibriSpeech 1688 (M), 2033 (M), 367 (F), 533 (F) in /work/shared/data (see its
README). The prosody stream only (transcript and emotion off) keeps these fast.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fusion.config import load_config
from fusion.engine.analyzer import Analyzer
from fusion.schema import SessionResult

DATA = Path("/work/shared/data/librispeech")
SR = 16_000
GAP = np.zeros(SR // 2, dtype=np.float32)

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared LibriSpeech voices absent")


def utts(speaker: str, idx: list[int]) -> list[np.ndarray]:
    files = sorted(glob.glob(str(DATA / speaker / "*.flac")))
    return [sf.read(files[i], dtype="float32")[0] for i in idx]


def turns(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate([x for p in parts for x in (p, GAP)])


def analyzer(*overrides: str) -> Analyzer:
    cfg = load_config().with_overrides(
        ["transcript.enabled=false", "emotion.enabled=false", *overrides])
    return Analyzer(cfg).load()


@pytest.fixture(scope="module")
def two_voices() -> np.ndarray:
    m, f = utts("1688", [0, 1, 2]), utts("367", [0, 1, 2])
    return turns(m[0], f[0], m[1], f[1], m[2], f[2])


@pytest.fixture(scope="module")
def auto_result(two_voices: np.ndarray) -> SessionResult:
    return analyzer("speakers.mode=auto").process_signal(two_voices, SR, name="two.wav")


# ------------------------------------------------------------------ modes end to end
def test_auto_two_voices_end_to_end(auto_result: SessionResult) -> None:
    r = auto_result
    assert r.diarization is not None and r.diarization.mode == "auto"
    assert [s.label for s in sorted(r.speakers, key=lambda s: s.label)] == ["S1", "S2"]
    assert all(seg.speaker in ("S1", "S2") for seg in r.segments)
    # the turns alternate M F M F M F: S1 first, every change of voice is a change of label
    firsts = [seg.speaker for seg in r.segments]
    assert firsts[0] == "S1" and "S2" in firsts
    # focus first, the longest speaker; each speaker has their own summary
    assert r.speakers[0].focus and r.speakers[0].speech_s == max(s.speech_s for s in r.speakers)
    for spk in r.speakers:
        assert spk.summary is not None and spk.summary.n_segments == spk.n_segments > 0
        assert spk.voiceprint is None  # biometric: only when asked
    # the session summary is the focus speaker's
    assert r.summary == r.speakers[0].summary
    df = r.to_dataframe()
    assert set(df["speaker"]) == {"S1", "S2"}
    back = SessionResult.from_json(r.to_json())
    assert [s.speaker for s in back.segments] == [s.speaker for s in r.segments]
    assert json.loads(r.to_json())["schema_version"] == "1.2.0"


def test_off_is_one_speaker(two_voices: np.ndarray) -> None:
    r = analyzer().process_signal(two_voices, SR)
    assert r.config["speakers"]["mode"] == "off"  # the default
    assert {seg.speaker for seg in r.segments} == {"S1"}
    assert len(r.speakers) == 1 and r.speakers[0].focus
    assert r.diarization is not None and r.diarization.backend == "none"


def test_channels_on_a_stereo_file(tmp_path: Path) -> None:
    a, b = utts("2033", [0, 1]), utts("533", [0, 1])
    left = turns(a[0], np.zeros_like(b[0]), a[1], np.zeros_like(b[1]))
    right = turns(np.zeros_like(a[0]), b[0], np.zeros_like(a[1]), b[1])
    x = np.stack([left + 10 ** (-30 / 20) * right, right + 10 ** (-30 / 20) * left], axis=1)
    path = tmp_path / "call.flac"
    sf.write(path, x, SR)
    r = analyzer("speakers.mode=channels").process_file(path)
    assert r.diarization is not None and r.diarization.mode == "channels"
    assert {s.label for s in r.speakers} == {"ch0", "ch1"}
    # every segment lies inside one channel's turns: the left voice's are ch0
    t_a0 = len(a[0]) / SR
    assert all(seg.speaker == "ch0" for seg in r.segments if seg.end_s <= t_a0)
    assert "channel" in r.diarization.policy


# ------------------------------------------------------------------ per-speaker pitch range
def test_high_voice_keeps_its_f0_beside_a_low_voice() -> None:
    low, high = utts("2033", [0, 1, 2, 3]), utts("367", [4])
    mix = turns(low[0], low[1], high[0], low[2], low[3])
    alone = analyzer().process_signal(turns(high[0]), SR)
    # the count is given: this test is about the pitch range, not the count estimate
    r = analyzer("speakers.mode=auto", "speakers.num_speakers=2").process_signal(mix, SR)
    t0 = (len(low[0]) + len(low[1])) / SR + 2 * len(GAP) / SR
    t1 = t0 + len(high[0]) / SR
    hi = [s for s in r.segments if s.start_s >= t0 - 0.3 and s.end_s <= t1 + 0.3
          and s.prosody is not None and s.prosody.f0_mean_hz is not None]
    assert hi, "the high voice's segment was not found"
    ref = [s.prosody.f0_mean_hz for s in alone.segments if s.prosody and s.prosody.f0_mean_hz]
    assert len({s.speaker for s in r.segments}) == 2
    ranges = r.streams["prosody"].session["pitch_range_by_speaker"]
    assert len(ranges) == 2
    for seg in hi:
        assert seg.prosody is not None and seg.prosody.f0_mean_hz is not None
        assert seg.prosody.f0_mean_hz == pytest.approx(float(np.mean(ref)), rel=0.05)


# ------------------------------------------------------------------ target speaker
@pytest.fixture(scope="module")
def profile_367(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fusion.scoring.baseline import one_speaker_sessions, profile_from_segments, save_profile
    from fusion.scoring.head import load_prior

    y = turns(*utts("367", [5, 6, 7, 8]))
    an = analyzer("speakers.voiceprints=true")
    s = an.process_signal(y, SR)
    picked, vp, _ = one_speaker_sessions([s])
    assert vp is not None and len(vp) == 256
    prof = profile_from_segments(picked[0].segments, load_prior().normalisation,
                                 speaker_id="P01", voiceprint=vp)
    path = tmp_path_factory.mktemp("prof") / "p01.json"
    save_profile(prof, path)
    return path


def test_target_speaker_matches_profile(two_voices: np.ndarray, profile_367: Path) -> None:
    r = analyzer("speakers.mode=auto", "speakers.focus=profile",
                 f"fusion.speaker_profile={profile_367}").process_signal(two_voices, SR)
    target = r.speakers[0]
    assert target.focus and target.matches_profile and target.speaker_id == "P01"
    assert r.speaker_id == "P01"
    other = r.speakers[1]
    assert other.matches_profile is False and other.speaker_id is None
    assert target.profile_similarity is not None and other.profile_similarity is not None
    assert target.profile_similarity > other.profile_similarity
    mine = [s for s in r.segments if s.speaker == "P01" and s.scores is not None]
    assert mine and all(s.scores.stress.reference == "profile" for s in mine
                        if s.scores.stress.value is not None)
    theirs = [s for s in r.segments if s.speaker == other.label and s.scores is not None]
    assert all(s.scores.stress.reference in ("session", "population") for s in theirs
               if s.scores.stress.value is not None)


def test_target_speaker_non_match(profile_367: Path) -> None:
    y = turns(*utts("1688", [3, 4]), *utts("2033", [5, 6]))
    r = analyzer("speakers.mode=auto", f"fusion.speaker_profile={profile_367}"
                 ).process_signal(y, SR)
    assert all(not s.matches_profile for s in r.speakers)
    assert any("no speaker matches the speaker profile" in w for w in r.warnings)
    assert r.speaker_id is None


def test_profile_without_voiceprint_is_said(two_voices: np.ndarray, profile_367: Path,
                                            tmp_path: Path) -> None:
    data = json.loads(profile_367.read_text())
    data.pop("voiceprint")  # an older profile file
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    r = analyzer("speakers.mode=auto", f"fusion.speaker_profile={old}"
                 ).process_signal(two_voices, SR)
    assert any("has no voiceprint" in w for w in r.warnings)
    assert all(s.scores is None or s.scores.stress.reference != "profile" for s in r.segments)


def test_speaker_id_names_focus_and_labels(two_voices: np.ndarray) -> None:
    an = analyzer("speakers.mode=auto")
    r = an.process_signal(two_voices, SR, speaker_ids={"": "P07"})
    assert r.speaker_id == "P07" and r.speakers[0].speaker_id == "P07"
    other = r.speakers[1].label
    r2 = an.process_signal(two_voices, SR, speaker_ids={other: "INT"})
    assert "INT" in {s.speaker for s in r2.segments}
    assert r2.speaker_id is None


# ------------------------------------------------------------------ reference
def test_reference_fields(auto_result: SessionResult) -> None:
    refs = {s.scores.stress.reference for s in auto_result.segments
            if s.scores is not None and s.scores.stress.value is not None}
    assert refs and refs <= {"session", "population"}
    st = auto_result.summary.stress if auto_result.summary else None
    assert st is not None and st.reference in ("session", "population")
    # "fraction above threshold" only against a profile or population reference
    assert (st.fraction_above_threshold is None) == (st.reference == "session")


# ------------------------------------------------------------------ report
def test_report_shows_speakers(auto_result: SessionResult, tmp_path: Path) -> None:
    from fusion.report import render_session

    html = render_session(auto_result)
    assert "speaker-card" in html and "S1" in html and "S2" in html
    # the header's detected speech is the whole recording's, not the focus speaker's share
    import re

    total = sum(seg.duration_s for seg in auto_result.segments)
    assert auto_result.summary is not None and auto_result.summary.speech_s < total - 1.0
    header = re.search(r"<dt>Detected speech</dt><dd>([0-9.]+) s", html)
    assert header is not None and float(header.group(1)) == round(total, 1)


# ------------------------------------------------------------------ bad input
def test_one_segment_and_silence_and_eight_channels(tmp_path: Path) -> None:
    an = analyzer("speakers.mode=auto")
    one = an.process_signal(utts("533", [0])[0][: 2 * SR], SR)
    assert len(one.speakers) == 1
    silent = an.process_signal(np.zeros(3 * SR, dtype=np.float32), SR)
    assert silent.segments == [] and silent.speakers == []
    y = utts("1688", [0])[0][: 3 * SR]
    x = np.zeros((len(y), 8), np.float32)
    x[:, 0] = y
    r = analyzer("speakers.mode=channels").process_signal(x, SR)
    assert len(r.speakers) == 1
    assert any("needs at least 2 channels with sound" in w for w in r.warnings)


# ------------------------------------------------------------------ surfaces: flags and options
def test_speaker_id_flags_parse() -> None:
    from features.errors import ParameterError
    from fusion.engine.speakers import parse_speaker_ids

    assert parse_speaker_ids(["P01"]) == {"": "P01"}
    assert parse_speaker_ids(["S2=P01", "S1=INT"]) == {"S2": "P01", "S1": "INT"}
    for bad in (["=P01"], ["S2="], ["P01", "P02"], ["S1=A", "S1=B"]):
        with pytest.raises(ParameterError):
            parse_speaker_ids(bad)


def test_server_speaker_options() -> None:
    from fusion.server.api_models import OPTION_FIELDS, AnalyzeOptions

    assert {"speakers_mode", "num_speakers", "speaker_id"} <= OPTION_FIELDS
    opts = AnalyzeOptions(speakers_mode="auto", num_speakers=2, speaker_id="S2=P01")
    assert opts.overrides() == {"speakers.mode": "auto", "speakers.num_speakers": 2}

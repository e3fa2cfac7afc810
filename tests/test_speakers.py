"""Speaker diarization (features.speakers): encoder, clustering with an estimated count,
channels mode, bad input.

Real voices: LibriSpeech test-other utterances in /work/shared/data/librispeech (1688 M,
2033 M, 367 F, 533 F; CC BY 4.0), concatenated into turns with known truth. Synthetic voices:
espeak-ng.
"""

from __future__ import annotations

import glob
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from features.errors import ModelUnavailable, ParameterError
from features.segments.vad import Segment, SegmentsConfig, segment_audio
from features.speakers.channels import diarize_channels
from features.speakers.config import SpeakersConfig
from features.speakers.diarize import diarize, speech_windows
from features.speakers.encoder import (
    EMBEDDING_DIM,
    SpeakerEncoder,
    mel_frames,
    resemblyzer_weights_path,
)
from features.speakers.result import SpeakersResult, voiceprint_similarity

SR = 16_000
LIBRI = Path("/work/shared/data/librispeech")

pytestmark = pytest.mark.skipif(
    not LIBRI.is_dir() or importlib.util.find_spec("resemblyzer") is None,
    reason="needs the shared LibriSpeech voices and resemblyzer "
           "(pip install --no-deps resemblyzer)")


def utt(speaker: str, i: int) -> np.ndarray:
    y, sr = sf.read(sorted(glob.glob(str(LIBRI / speaker / "*.flac")))[i], dtype="float32")
    assert sr == SR
    return y


def concat(turns: list[tuple[str, int]], gap_s: float = 0.4
           ) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    gap = np.zeros(int(gap_s * SR), np.float32)
    parts, truth, t = [gap], [], gap_s
    for spk, i in turns:
        u = utt(spk, i)
        parts += [u, gap]
        truth.append((t, t + len(u) / SR, spk))
        t += len(u) / SR + gap_s
    return np.concatenate(parts), truth


def labelled_accuracy(res: SpeakersResult, truth: list[tuple[float, float, str]]) -> float:
    """Share of labelled true speech whose label maps (majority mapping) to the true speaker."""
    from scipy.optimize import linear_sum_assignment

    names = sorted({s for *_, s in truth})
    est = sorted({t.speaker for t in res.turns})
    conf = np.zeros((len(names), len(est)))
    for a, b, s in truth:
        for ts in np.arange(a, b, 0.02):
            lab = res.speaker_at(float(ts))
            if lab is not None:
                conf[names.index(s), est.index(lab)] += 1
    r, c = linear_sum_assignment(-conf)
    return float(conf[r, c].sum() / conf.sum())


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder().load()


def vad(y: np.ndarray) -> list[Segment]:
    return segment_audio(y, SR, SegmentsConfig())


# ------------------------------------------------------------------------------- encoder

def test_mel_front_end_matches_librosa() -> None:
    import librosa

    y = utt("367", 0)[: 3 * SR]
    ours = mel_frames(y)
    ref = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) <= 1e-5 * np.max(ref)


def test_encoder_output_is_unit_norm_non_negative(encoder: SpeakerEncoder) -> None:
    mel = mel_frames(utt("1688", 0))
    emb = encoder.embed_windows(mel, np.array([0, 50, 100]), 120)
    assert emb.shape == (3, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert (emb >= 0).all()
    with pytest.raises(ParameterError, match="mono"):
        mel_frames(np.zeros((100, 2), np.float32))


def test_same_voice_close_different_voices_far(encoder: SpeakerEncoder) -> None:
    a0, a1 = encoder.embed_utterance(utt("1688", 0)), encoder.embed_utterance(utt("1688", 1))
    b0 = encoder.embed_utterance(utt("367", 0))
    c0 = encoder.embed_utterance(utt("2033", 0))
    same = voiceprint_similarity(a0, a1)
    assert same > 0.85
    assert voiceprint_similarity(a0, b0) < same - 0.2  # opposite sex
    assert voiceprint_similarity(a0, c0) < same - 0.2  # same sex


def test_missing_weights_are_a_clear_model_unavailable(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelUnavailable, match="not found"):
        SpeakerEncoder(tmp_path / "nope.pt").load()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="safe loader"):
        SpeakerEncoder(bad).load()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer"
                        else real_find_spec(name, *a))
    with pytest.raises(ModelUnavailable, match="pip install --no-deps resemblyzer"):
        resemblyzer_weights_path()


# ------------------------------------------------------------------------- auto mode

def test_two_real_voices_counted_and_labelled(encoder: SpeakerEncoder) -> None:
    y, truth = concat([("1688", 0), ("367", 0), ("1688", 1), ("367", 1), ("1688", 2),
                       ("367", 2)])
    res = diarize(y, vad(y), SpeakersConfig(), encoder=encoder, voiceprints=True)
    assert res.num_speakers == 2 and res.count_estimated
    assert [s.label for s in res.speakers] == ["S1", "S2"]
    assert labelled_accuracy(res, truth) >= 0.95
    assert all(s.voiceprint is not None and len(s.voiceprint) == EMBEDDING_DIM
               for s in res.speakers)
    assert voiceprint_similarity(res.speakers[0].voiceprint, res.speakers[1].voiceprint) < 0.8
    # turns are sorted and never overlap one another
    for a, b in zip(res.turns, res.turns[1:], strict=False):
        assert a.end_s <= b.start_s + 1e-9


def test_segment_spanning_a_speaker_change_is_split(encoder: SpeakerEncoder) -> None:
    # 0.1 s between turns: VAD merges them, diarization must split the segment
    y, truth = concat([("2033", 0), ("533", 0), ("2033", 1), ("533", 1)], gap_s=0.1)
    segs = vad(y)
    res = diarize(y, segs, SpeakersConfig(), encoder=encoder)
    assert res.num_speakers == 2
    assert len(res.turns) > len(segs)
    assert labelled_accuracy(res, truth) >= 0.95


def test_single_real_voice_stays_one_speaker(encoder: SpeakerEncoder) -> None:
    y, _ = concat([("2033", i) for i in range(4)])
    res = diarize(y, vad(y), SpeakersConfig(), encoder=encoder)
    assert res.num_speakers == 1
    assert {t.speaker for t in res.turns} == {"S1"}


def test_fixed_count_is_obeyed_and_off_keeps_one(encoder: SpeakerEncoder) -> None:
    y, _ = concat([("1688", 0), ("367", 0), ("1688", 1)])
    segs = vad(y)
    res = diarize(y, segs, SpeakersConfig(num_speakers=2), encoder=encoder)
    assert res.num_speakers == 2 and not res.count_estimated
    off = diarize(y, segs, SpeakersConfig(mode="off"))
    assert off.num_speakers == 1 and len(off.turns) == len(segs)


def test_speech_windows_cover_each_segment_exactly() -> None:
    segs = [Segment(0.5, 1.2), Segment(2.0, 7.33)]
    wins = speech_windows(segs, 1.2, 1.0)
    assert wins[0].t0_s == 0.5 and wins[0].t1_s == 1.2
    rest = [w for w in wins if w.seg == 1]
    assert rest[0].t0_s == 2.0 and rest[-1].t1_s == 7.33
    assert all(abs(a.t1_s - b.t0_s) < 1e-9 for a, b in zip(rest, rest[1:], strict=False))


# ----------------------------------------------------------------------- channels mode

def _stereo_with_crosstalk(crosstalk_db: float) -> tuple[np.ndarray, np.ndarray,
                                                         list[tuple[float, float, str]]]:
    y, truth = concat([("1688", 0), ("533", 0), ("1688", 1), ("533", 1)])
    left, right = np.zeros_like(y), np.zeros_like(y)
    for a, b, spk in truth:
        i0, i1 = int(a * SR), int(b * SR)
        (left if spk == "1688" else right)[i0:i1] = y[i0:i1]
    g = np.float32(10 ** (crosstalk_db / 20))
    return y, np.stack([left + g * right, right + g * left], axis=1), truth


def test_channels_mode_ignores_crosstalk() -> None:
    y, stereo, truth = _stereo_with_crosstalk(-30.0)
    res = diarize_channels(stereo, vad(y), SpeakersConfig(mode="channels"))
    assert res.mode == "channels" and res.num_speakers == 2
    assert {s.label for s in res.speakers} == {"ch0", "ch1"}
    assert not any(t.overlap for t in res.turns)
    assert labelled_accuracy(res, truth) >= 0.95
    for a, b, spk in truth:  # the channel is the speaker, with no mapping needed
        assert res.speaker_at((a + b) / 2) == ("ch0" if spk == "1688" else "ch1")
    assert "loudest channel" in res.policy


def test_channels_mode_marks_two_voices_at_once_as_overlap() -> None:
    a, b = utt("1688", 0), utt("533", 1)
    n = min(len(a), len(b), 4 * SR)
    assert n == 4 * SR
    stereo = np.stack([a[:n], b[:n]], axis=1)
    res = diarize_channels(stereo, [Segment(0.0, 4.0)], SpeakersConfig(mode="channels"))
    overlap_s = sum(t.duration_s for t in res.turns if t.overlap)
    assert overlap_s > 0.5


def test_load_channels_keeps_channels_apart(tmp_path: Path) -> None:
    from features.audio.load import load_audio, load_channels

    a, b = utt("1688", 0)[:SR], utt("533", 0)[:SR]
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([a, 0.5 * b], axis=1), SR)
    ch = load_channels(path)
    assert ch.shape == (SR, 2)
    assert np.allclose(ch[:, 0], a, atol=1e-4) and np.allclose(ch[:, 1], 0.5 * b, atol=1e-4)
    assert len(load_audio(path).y) == len(ch)


# ------------------------------------------------------------------------------ bad input

def test_all_silence_gives_no_speaker_and_says_so() -> None:
    y = np.zeros(5 * SR, np.float32)
    res = diarize(y, vad(y), SpeakersConfig())
    assert res.num_speakers == 0 and res.turns == []
    assert any("no speech" in w for w in res.warnings)


def test_one_short_segment_is_one_speaker_with_a_warning() -> None:
    y = utt("367", 0)[: 2 * SR]
    res = diarize(y, [Segment(0.0, 2.0)], SpeakersConfig())
    assert res.num_speakers == 1 and res.turns[0].speaker == "S1"
    assert any("one speaker assumed" in w for w in res.warnings)


def test_one_long_segment_works(encoder: SpeakerEncoder) -> None:
    y = utt("533", 1)
    res = diarize(y, [Segment(0.0, len(y) / SR)], SpeakersConfig(), encoder=encoder)
    assert res.num_speakers == 1


def test_eight_channels_accepted_nine_refused_mono_refused() -> None:
    y = utt("1688", 0)[: 3 * SR]
    eight = np.zeros((len(y), 8), np.float32)
    eight[:, 0], eight[:, 5] = y, 0.03 * y
    res = diarize_channels(eight, [Segment(0.0, 3.0)])
    assert res.speakers[0].label == "ch0"
    assert any("digital silence" in w and "1" in w for w in res.warnings)
    with pytest.raises(ParameterError, match="2 to 8 channels"):
        diarize_channels(np.zeros((SR, 9), np.float32) + 0.1, [Segment(0.0, 1.0)])
    with pytest.raises(ParameterError, match="1 channel"):
        diarize_channels(y[:, None], [Segment(0.0, 1.0)])
    with pytest.raises(ParameterError, match="at least 2 channels with sound"):
        diarize_channels(np.stack([y, np.zeros_like(y)], 1), [Segment(0.0, 1.0)])
    with pytest.raises(ParameterError, match="channels"):
        diarize(eight, [Segment(0.0, 1.0)], SpeakersConfig())


def test_config_and_voiceprint_errors() -> None:
    with pytest.raises(ValidationError, match="hop_s"):
        SpeakersConfig(window_s=1.0, hop_s=2.0)
    with pytest.raises(ValidationError):
        SpeakersConfig(mode="magic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="speakers.model"):
        SpeakersConfig(backend="pyannote")
    assert SpeakersConfig(num_speakers=9).max_speakers == 9
    with pytest.raises(ParameterError, match="zeros"):
        voiceprint_similarity(np.zeros(4), np.ones(4))
    with pytest.raises(ParameterError, match="same"):
        voiceprint_similarity(np.ones(3), np.ones(4))


@pytest.mark.skipif(importlib.util.find_spec("pyannote") is not None,
                    reason="pyannote is installed here")
def test_pyannote_backend_without_pyannote_says_what_to_install() -> None:
    y = utt("367", 0)
    cfg = SpeakersConfig(backend="pyannote", model="pyannote/speaker-diarization-3.1")
    with pytest.raises(ModelUnavailable, match="pip install pyannote.audio"):
        diarize(y, [Segment(0.0, 5.0)], cfg)

"""HTML report: content, escaping, self-containment, CLI, and the page in headless Chromium.

Results are built two ways: directly as ``SessionResult`` objects (complete ones with scores,
emotion, transcript, sentiment and prosody; hand-chosen values, not model output) and by the
real pipeline on the bundled example (examples/jfk.flac, real speech).

Browser tests drive Debian's ``/usr/bin/chromium`` (or ``$VOCALFUSION_CHROMIUM``) through
playwright's Python package; they skip only when no Chromium binary exists. Screenshots and
pages land in ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import html as html_lib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.emotion.stream import EmotionMeasures
from features.errors import ParameterError
from features.prosody.stream import ProsodyMeasures
from features.sentiment.stream import SentimentMeasures
from features.stream import Provenance
from features.transcript.stream import SegmentTranscript, Word
from fusion.report import render_session, render_trend
from fusion.report.render import content_security_policy, page_assets
from fusion.report.trend import load_result, load_sessions, looks_like_result_json, session_date
from fusion.schema import (
    FusionInfo,
    ScoreDetail,
    ScoreSummary,
    SegmentResult,
    SegmentScores,
    SessionResult,
    SessionSummary,
    SourceInfo,
    StreamInfo,
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
WORDS = ["so", "I", "have", "been", "sleeping", "badly", "and", "I", "always", "feel", "tired",
         "at", "work", "but", "the", "weekend", "was", "good", "we", "walked", "by", "the",
         "river", "and", "talked", "about", "nothing"]
HOSTILE_TEXT = ('<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> '
                '</script><script>window.__pwned=3</script> & "quotes" \'single\'')
HOSTILE_NAME = 'rec/"><svg onload=window.__pwned=4><script>window.__pwned=5</script>.wav'


# ------------------------------------------------------------------------------ builders
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _detail(rng: np.random.Generator, base: float, confidence: float,
            streams: tuple[str, ...]) -> ScoreDetail:
    contrib = {"intercept": round(-0.4 + base, 6)}
    feats: dict[str, float] = {}
    if "prosody" in streams:
        p = float(rng.normal(0.3, 0.4))
        feats.update({"speaker_z.f0_mean_st": 0.6 * p, "speaker_z.speech_rate_syl_per_s": 0.3 * p,
                      "population_z.pause_ratio": 0.1 * p})
        contrib["prosody"] = math.fsum([0.6 * p, 0.3 * p, 0.1 * p])
    if "emotion" in streams:
        e = float(rng.normal(0.0, 0.3))
        feats.update({"speaker_z.emotion_sad": 0.7 * e, "speaker_z.emotion_angry": 0.3 * e})
        contrib["emotion"] = math.fsum([0.7 * e, 0.3 * e])
    if "sentiment" in streams:
        s = float(rng.normal(0.0, 0.3))
        feats["population_z.sentiment_negative"] = s
        contrib["sentiment"] = s
    logit = math.fsum(contrib.values())
    return ScoreDetail(value=_sigmoid(logit), logit=logit, confidence=confidence,
                       contributions=contrib, feature_contributions=feats)


def build_result(*, n_segments: int = 12, seg_s: float = 4.0, gap_s: float = 0.6, seed: int = 0,
                 skip: tuple[str, ...] = (), text: str | None = None,
                 path: str = "sessions/2024-03-05_p01.wav", speaker_id: str | None = None,
                 warnings: tuple[str, ...] = (), stress_shift: float = 0.0,
                 emotion_labels: list[str] | None = None, scores: bool = True,
                 analysed_at: datetime | None = None) -> SessionResult:
    """A complete session result with every stream (hand-chosen values, not model output).

    ``skip`` names streams to mark skipped; ``text`` replaces segment 1's transcript;
    ``scores=False`` leaves out fusion (scores ``None``, no fusion info).
    """
    rng = np.random.default_rng(seed)
    labels = emotion_labels or LABELS
    segs = []
    t = 0.4
    for i in range(n_segments):
        start = round(t, 3)
        end = round(t + seg_s * rng.uniform(0.6, 1.4), 3)
        t = end + gap_s * rng.uniform(0.5, 1.5)
        f0 = 120 + 25 * math.sin(i / 3) + rng.normal(0, 5)
        pros = ProsodyMeasures(
            f0_mean_hz=f0, f0_median_hz=f0 - 2, f0_sd_hz=18 + rng.normal(0, 3),
            f0_mean_st=12 * math.log2(f0 / 100), f0_sd_st=2.1, f0_p5_hz=f0 - 30,
            f0_p95_hz=f0 + 35, f0_range_st=7.5, jitter_local_pct=1.2 + rng.normal(0, .2),
            jitter_rap_pct=.6, jitter_ppq5_pct=.7, shimmer_local_pct=6.5, shimmer_local_db=.6,
            shimmer_apq3_pct=3.1, shimmer_apq5_pct=3.9, hnr_db=14 + rng.normal(0, 1.5),
            cpps_db=18 + rng.normal(0, 1), intensity_mean_db=65 + rng.normal(0, 2),
            intensity_sd_db=7.2, voiced_fraction=.55, syllable_count=int(rng.integers(10, 25)),
            speech_rate_syl_per_s=3.8 + rng.normal(0, .5),
            articulation_rate_syl_per_s=4.6 + rng.normal(0, .4),
            pause_count=int(rng.integers(0, 4)),
            pause_ratio=float(np.clip(.18 + rng.normal(0, .07), 0, 1)), mean_pause_s=.42,
            pitch_floor_hz=75.0, pitch_ceiling_hz=300.0)
        if i == 3:
            why = "too few voiced periods (12 < 30)"
            pros = pros.model_copy(update={"jitter_local_pct": None, "shimmer_local_pct": None,
                                           "missing": {"jitter_local_pct": why,
                                                       "shimmer_local_pct": why}})
        p = rng.dirichlet(np.ones(len(labels)) * 0.7)
        emo = EmotionMeasures(probabilities={lab: float(v) for lab, v in zip(labels, p,
                                                                              strict=True)},
                              top_label=labels[int(np.argmax(p))],
                              entropy_bits=float(-(p * np.log2(p + 1e-12)).sum()), n_windows=1)
        n_words = int(rng.integers(5, 14))
        seg_text = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(n_words))
        if text is not None and i == 1:
            seg_text = text
        toks = seg_text.split()
        words = [Word(text=w, start_s=start + k * (end - start) / len(toks),
                      end_s=start + (k + 1) * (end - start) / len(toks), probability=.9)
                 for k, w in enumerate(toks)]
        tr = SegmentTranscript(text=seg_text, words=words, word_count=len(words),
                               words_per_min=len(words) / (end - start) * 60)
        neg = float(rng.uniform(0, .5))
        pos = float(rng.uniform(0, 1 - neg))
        label = "negative" if neg > pos and neg > .25 else ("positive" if pos > .3 else "neutral")
        sent = SentimentMeasures(negative=neg, positive=pos, neutral=1 - neg - pos, label=label,
                                 compound=pos - neg, word_count=len(words),
                                 first_person_singular_rate=.08, absolutist_rate=.02,
                                 negative_emotion_word_rate=.03)
        used = tuple(s for s in ("prosody", "emotion", "sentiment") if s not in skip)
        sc = None
        if scores:
            sc = SegmentScores(
                stress=_detail(rng, stress_shift + .3 * math.sin(i / 2),
                               float(rng.uniform(.35, .95)), used),
                depression=_detail(rng, -.5, float(rng.uniform(.3, .8)), used))
        segs.append(SegmentResult(index=i, start_s=start, end_s=end, prosody=pros,
                                  emotion=None if "emotion" in skip else emo, transcript=tr,
                                  sentiment=sent, scores=sc))
    duration = round(t + 0.5, 3)

    def summary(key: str) -> ScoreSummary:
        vals = np.array([getattr(s.scores, key).value for s in segs])
        w = np.array([s.duration_s for s in segs])
        return ScoreSummary(
            mean=float((vals * w).sum() / w.sum()), p90=float(np.percentile(vals, 90)),
            peak=float(vals.max()), peak_segment=int(vals.argmax()),
            fraction_above_threshold=float(w[vals >= .5].sum() / w.sum()), threshold=.5,
            trend_per_min=0.01,
            mean_confidence=float(np.mean([getattr(s.scores, key).confidence for s in segs])))

    streams = {
        "prosody": StreamInfo(status="ok", elapsed_s=1.2, provenance=Provenance(
            backend="parselmouth", library_version="0.4.5")),
        "emotion": StreamInfo(status="ok", elapsed_s=3.4, provenance=Provenance(
            backend="transformers", model_id="superb/wav2vec2-base-superb-er",
            revision="abc1234", library_version="4.46.0")),
        "transcript": StreamInfo(status="ok", elapsed_s=2.0, session={"language": "en"},
                                 provenance=Provenance(backend="faster-whisper",
                                                       model_id="bundled:tiny.en")),
        "sentiment": StreamInfo(status="ok", elapsed_s=0.01,
                                provenance=Provenance(backend="vader")),
    }
    if "emotion" in skip:
        streams["emotion"] = StreamInfo(
            status="skipped", reason="model superb/wav2vec2-base-superb-er is not in the local "
            "cache; run `vocalfusion models fetch`")
    speech = sum(s.duration_s for s in segs)
    return SessionResult(
        package_version="0.1.0",
        analysed_at=analysed_at or datetime(2024, 3, 5, 14, 30, tzinfo=UTC),
        status="ok",
        source=SourceInfo(path=path, sha256="ab" * 32, duration_s=duration, original_sr=44100,
                          channels=1, format="wav", decoder="soundfile"),
        segments=segs, streams=streams,
        fusion=FusionInfo(model_name="prior-v1", calibrated=False,
                          calibration_status="prior — not calibrated on labelled data")
        if scores else None,
        summary=SessionSummary(
            speech_s=speech, n_segments=len(segs),
            stress=summary("stress") if scores else None,
            depression=summary("depression") if scores else None,
            coverage={k: (0.0 if k in skip else 1.0) for k in streams}),
        speaker_id=speaker_id, config={"fusion": {"threshold": 0.5}},
        config_hash="0123456789abcdef", warnings=list(warnings))


def hostile_result() -> SessionResult:
    """Every free-text field carries markup that must show as text."""
    r = build_result(text=HOSTILE_TEXT, path=HOSTILE_NAME, speaker_id="<u>P01</u>",
                     warnings=("<img src=x onerror=\"window.__pwned=6\">",),
                     emotion_labels=LABELS[:7] + ['<i onmouseover="window.__pwned=7">x</i>'])
    streams = dict(r.streams)
    streams["emotion"] = streams["emotion"].model_copy(update={"warnings": ["</script><u>w</u>"]})
    streams["sentiment"] = StreamInfo(status="failed", reason='<iframe src="https://evil.test">')
    return r.model_copy(update={"streams": streams,
                                "config": {"x": "</script><script>window.__pwned=8</script>"}})


# ------------------------------------------------------------------------------ HTML checks
class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)


def parse(html: str) -> _Collect:
    c = _Collect()
    c.feed(html)
    return c


def assert_self_contained(html: str) -> None:
    c = parse(html)
    for tag, attrs in c.tags:
        for name in ("src", "href", "action", "poster", "xlink:href", "data"):
            v = attrs.get(name)
            if v is not None:
                assert v.startswith(("#", "data:")), f"<{tag} {name}={v[:60]!r}> leaves the page"
        assert not any(k.startswith("on") for k in attrs), f"<{tag}> has an event handler"
    assert tag_count(c, "script") == 1
    assert tag_count(c, "link") == 1  # the data: favicon only
    assert "@import" not in html and "url(http" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)


def tag_count(c: _Collect, tag: str) -> int:
    return sum(1 for t, _ in c.tags if t == tag)


# ------------------------------------------------------------------------------ unit tests
def test_complete_session_has_every_part() -> None:
    r = build_result()
    html = render_session(r)
    assert_self_contained(html)
    for anchor in ("summary", "timeline", "emotion", "prosody", "drivers", "transcript",
                   "segments", "provenance"):
        assert f'id="{anchor}"' in html
    c = parse(html)
    text = " ".join(c.text)
    assert "Research measurement — not a diagnosis." in text
    assert "prior — not calibrated on labelled data" in text
    assert "0123456789abcdef" in text and "parselmouth 0.4.5" in text
    assert "superb/wav2vec2-base-superb-er@abc1234" in text
    # summary cards show the summary's numbers
    assert f"{r.summary.stress.mean:.2f}" in text
    assert f"{r.summary.depression.mean_confidence:.2f}" in text
    # one scored column per segment and target, one transcript row and table row per segment
    assert html.count('class="col"') >= 2 * len(r.segments)
    assert sum(1 for t, a in c.tags if t == "tr" and "data-i" in a) == len(r.segments)
    assert sum(1 for t, a in c.tags if t == "li" and "data-i" in a) == len(r.segments)
    # threshold line and confidence shading
    assert 'class="thr"' in html
    opacities = {float(a["fill-opacity"]) for t, a in c.tags if t == "rect" and "fill-opacity" in a}
    assert len(opacities) > 3 and all(0.18 <= o <= 0.9 for o in opacities)
    # contributions are shown by name
    assert "F0 mean (semitones)" in text and "vs own baseline" in text


def _table_cells(html: str) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Column keys, and per row the (class, title) of each numeric cell of the segment table."""
    screen = html.split('id="segments"')[1].split('class="print-only"')[0]
    c = parse(screen)
    keys = [a["data-key"] for t, a in c.tags if t == "th" and "data-key" in a]
    rows: list[list[tuple[str, str]]] = []
    for t, a in c.tags:
        if t == "tr" and "data-i" in a:
            rows.append([])
        elif t == "td" and rows and (a.get("class") or "").split()[:1] == ["n"]:
            rows[-1].append((a.get("class") or "", a.get("title") or ""))
    return keys, rows


def test_table_cells_hold_the_json_numbers() -> None:
    r = build_result(n_segments=5)
    html = render_session(r)
    keys, rows = _table_cells(html)
    numeric_keys = [k for k in keys if k not in ("text", "emotion_top", "sentiment_label")]
    data = json.loads(r.to_json())
    records = r.segment_records()
    assert len(rows) == len(records)
    for rec, cells, seg_json in zip(records, rows, data["segments"], strict=True):
        assert len(cells) == len(numeric_keys)
        for key, (cls, title) in zip(numeric_keys, cells, strict=True):
            want = rec.get(key)
            if want is None or (isinstance(want, float) and math.isnan(want)):
                assert "na" in cls.split(), key
            else:
                assert json.loads(title) == want, key  # the exact value, as in the JSON
        f0 = cells[numeric_keys.index("f0_mean_hz")][1]
        assert json.loads(f0) == seg_json["prosody"]["f0_mean_hz"]
    # units are in the headers (the JSON field names)
    for k in ("f0_mean_hz", "hnr_db", "speech_rate_syl_per_s", "start_s", "jitter_local_pct"):
        assert k in keys
    # a missing measure shows its reason
    assert 'title="too few voiced periods (12 &lt; 30)"' in html


def test_hostile_strings_are_text() -> None:
    r = hostile_result()
    html = render_session(r)
    assert_self_contained(html)
    c = parse(html)
    for bad in ("<script>window", "<img", "<svg onload", "<iframe", "<i onmouseover", "<u>"):
        assert bad not in html, bad
    text = "".join(c.text)
    assert "<script>window.__pwned=1</script>" in text
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert HOSTILE_NAME.rsplit("/", 1)[1] in text
    assert '<iframe src="https://evil.test">' in text
    assert not any(t in ("img", "iframe", "i", "u") for t, _ in c.tags)
    assert "<u>P01</u>" in text and "</script><u>w</u>" in text


def test_skipped_stream_shown_as_missing_evidence() -> None:
    r = build_result(skip=("emotion",))
    html = render_session(r)
    assert 'id="missing-evidence"' in html
    text = " ".join(parse(html).text)
    assert "Acoustic emotion" in text and "not in the local cache" in text
    assert "No emotion measurements." in text
    assert 'data-stream="emotion"' in html
    # no emotion column in the table, other streams intact
    assert "emotion_sad" not in html.split('id="segments"')[1].split('id="provenance"')[0]
    assert 'data-key="f0_mean_hz"' in html


def test_result_without_scores_renders_measurements() -> None:
    r = build_result(scores=False)
    html = render_session(r)
    assert_self_contained(html)
    text = " ".join(parse(html).text)
    assert "No scores in this report" in text
    assert "the fusion step did not run" in text
    assert "no fusion scores" in text
    assert 'data-key="stress"' not in html and 'data-key="f0_mean_hz"' in html
    assert 'data-panel="pitch"' in html


def test_insufficient_speech_without_segments() -> None:
    r = build_result(scores=False, n_segments=1)
    r = r.model_copy(update={"segments": [], "status": "insufficient speech",
                             "summary": SessionSummary(speech_s=0.0, n_segments=0),
                             "warnings": ["insufficient speech: 0.0 s detected"]})
    html = render_session(r)
    text = " ".join(parse(html).text)
    assert "insufficient speech" in text and "No segments." in text
    assert "No transcript." in text and "No prosody measurements." in text


def test_ten_minute_session_is_small() -> None:
    r = build_result(n_segments=120, seg_s=4.5, gap_s=0.5)
    assert r.source.duration_s > 550
    html = render_session(r)
    assert len(html.encode("utf-8")) < 2_000_000


def test_csp_allows_exactly_our_script() -> None:
    assets = page_assets()
    html = render_session(build_result(n_segments=2))
    m = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert m is not None
    csp = html_lib.unescape(m.group(1))
    assert csp == content_security_policy(str(assets["script"]))
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1] \
        .split(";")[0]
    body = re.search(r"<script>(.*)</script>", html, re.S)
    assert body is not None and body.group(1) == str(assets["script"])


def test_emotion_dimensions_drawn_when_no_classes() -> None:
    r = build_result(n_segments=4)
    segs = [s.model_copy(update={"emotion": EmotionMeasures(arousal=0.2 + 0.1 * s.index,
                                                            valence=0.5, n_windows=1)})
            for s in r.segments]
    html = render_session(r.model_copy(update={"segments": segs}))
    assert "Arousal, valence, dominance" in html
    assert "Arousal" in html and "Dominance" not in html.split("Arousal, valence, dominance")[1]


# ------------------------------------------------------------------------------ trend
def _write_sessions(folder: Path) -> list[Path]:
    shifts = [0.0, 0.1, -0.1, 0.4]
    paths = []
    for k, day in enumerate(["2024-01-08", "2024-01-15", "2024-01-29", "2024-02-12"]):
        r = build_result(seed=k, n_segments=5, speaker_id="P01", stress_shift=shifts[k],
                         path=f"rec/{day}.wav")
        p = folder / f"p01_{day.replace('-', '')}.json"
        p.write_text(r.to_json(), encoding="utf-8")
        paths.append(p)
    other = folder / "p02_20240110.json"
    other.write_text(build_result(seed=9, n_segments=3, speaker_id="P02").to_json(),
                     encoding="utf-8")
    paths.append(other)
    return paths


def test_trend_baseline_dates_and_speaker(tmp_path: Path) -> None:
    paths = _write_sessions(tmp_path)
    kept, left_out = load_sessions(paths, speaker="P01")
    assert len(kept) == 4 and [Path(p).name for p, _ in left_out] == ["p02_20240110.json"]
    with pytest.raises(ParameterError, match="2 speakers"):
        load_sessions(paths)
    html = render_trend(kept, speaker="P01", baseline_n=2, left_out=left_out)
    assert_self_contained(html)
    text = " ".join(parse(html).text)
    means = [r.summary.stress.mean for _, r in kept]
    baseline = (means[0] + means[1]) / 2
    assert f"{baseline:.2f}" in text
    assert f"{means[3] - baseline:+.2f}" in text
    assert "2024-01-08" in text and "2024-02-12" in text and "file name" in text
    assert "p02_20240110.json" in text and "speaker 'P02', not 'P01'" in text
    assert html.count('class="pt val"') == 2 * 4


def test_session_date_rules() -> None:
    r = build_result(n_segments=1, path="x/2023-12-01T0930_visit.wav",
                     analysed_at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC))
    assert session_date(r, "out/20240102_a.json") == (datetime(2024, 1, 2), "file name")
    assert session_date(r, "out/a.json") == (datetime(2023, 12, 1, 9, 30), "audio file name")
    assert session_date(r, "out/a.json", dates="analysed") == (datetime(2024, 5, 1, 8, 0),
                                                               "analysed_at")
    r2 = build_result(n_segments=1, path="x/visit.wav",
                      analysed_at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC))
    assert session_date(r2, "out/a.json")[1] == "analysed_at"
    with pytest.raises(ParameterError, match="no date"):
        session_date(r2, "out/a.json", dates="name")
    assert session_date(r2, "out/20241399.json")[1] == "analysed_at"  # not a real date


def test_load_result_rejects_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(ParameterError, match="not a vocalfusion result JSON"):
        load_result(bad)
    good = tmp_path / "result.data"
    good.write_text(build_result(n_segments=2).to_json(), encoding="utf-8")
    assert looks_like_result_json(good) and looks_like_result_json(bad)
    assert not looks_like_result_json(ROOT / "examples" / "jfk.flac")
    assert load_result(good).segments[1].end_s == build_result(n_segments=2).segments[1].end_s


# ------------------------------------------------------------------------------ audio
def test_encode_audio_opus_and_wav() -> None:
    import io

    import soundfile as sf

    from features.audio.load import audio_from_signal
    from fusion.report import encode_audio

    rng = np.random.default_rng(0)
    audio = audio_from_signal((0.1 * rng.standard_normal(16000 * 3)).astype(np.float32), 16000,
                              name="noise")
    wav = encode_audio(audio, codec="wav")
    y, sr = sf.read(io.BytesIO(wav.data), dtype="float32")
    assert sr == 16000 and len(y) == len(audio.y)
    assert np.max(np.abs(y - audio.y)) < 1.0 / 32767 + 1e-6
    assert wav.data_uri.startswith("data:audio/wav;base64,")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: Opus encoding not testable")
    opus = encode_audio(audio, codec="auto")
    assert opus.mime == "audio/ogg" and opus.data.startswith(b"OggS")
    assert len(opus.data) < len(wav.data) / 4
    with pytest.raises(ParameterError):
        encode_audio(audio, codec="mp3")


# ------------------------------------------------------------------------------ real pipeline
@pytest.fixture(scope="module")
def jfk_result(jfk_path: Path) -> SessionResult:
    """The real pipeline on real speech (default config; offline, so a model that is not
    cached here is skipped at once and shown as missing evidence)."""
    from fusion.engine.analyzer import analyze

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return analyze(jfk_path)


def test_real_analysis_report(jfk_result: SessionResult) -> None:
    r = jfk_result
    html = render_session(r)
    assert_self_contained(html)
    c = parse(html)
    text = " ".join(c.text)
    assert "jfk.flac" in text
    assert sum(1 for t, a in c.tags if t == "tr" and "data-i" in a) == len(r.segments) > 0
    words = " ".join(s.transcript.text for s in r.segments if s.transcript)
    assert "country" in words.lower()
    for seg in r.segments:
        if seg.transcript and seg.transcript.text.strip():
            assert seg.transcript.text.strip().replace("'", "&#39;") in html
    for name, info in r.streams.items():
        if str(info.status) != "ok":  # e.g. the emotion model is not cached here
            assert 'id="missing-evidence"' in html and f'data-stream="{name}"' in html
    if r.fusion is not None:
        assert r.fusion.calibration_status in text
    if r.summary and r.summary.stress and r.summary.stress.mean is not None:
        assert f"{r.summary.stress.mean:.2f}" in text
    # every number in the table is the JSON's
    keys, rows = _table_cells(html)
    numeric_keys = [k for k in keys if k not in ("text", "emotion_top", "sentiment_label")]
    data = json.loads(r.to_json())
    for seg_json, cells in zip(data["segments"], rows, strict=True):
        pr = seg_json["prosody"]
        if pr and pr["f0_mean_hz"] is not None:
            assert json.loads(cells[numeric_keys.index("f0_mean_hz")][1]) == pr["f0_mean_hz"]
        sc = seg_json["scores"]
        if sc and sc["stress"]["value"] is not None:
            assert json.loads(cells[numeric_keys.index("stress")][1]) == sc["stress"]["value"]


# ------------------------------------------------------------------------------ CLI
def test_cli_renders_saved_json_without_models(tmp_path: Path) -> None:
    src = tmp_path / "s.json"
    src.write_text(build_result(n_segments=4).to_json(), encoding="utf-8")
    out = tmp_path / "s.html"
    code = ("import sys; from fusion.cli.main import main; rc = main(['report', sys.argv[1], '-o', "
            "sys.argv[2]]); heavy = [m for m in ('torch', 'faster_whisper', 'transformers', "
            "'ctranslate2') if m in sys.modules]; print('HEAVY', heavy); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(out)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "wrote" in proc.stdout
    html = out.read_text(encoding="utf-8")
    assert "2024-03-05_p01.wav" in html


def test_cli_trend_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fusion.cli.main import main

    paths = _write_sessions(tmp_path)
    out = tmp_path / "trend.html"
    assert main(["report", *map(str, paths), "--speaker", "P01", "-o", str(out),
                 "--baseline-sessions", "2"]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.count('class="pt val"') == 8 and "Speaker P01" in html
    # a pattern the shell did not expand is globbed
    out2 = tmp_path / "sub"
    out2.mkdir()
    assert main(["report", str(tmp_path / "p01_*.json"), "-o", str(out2) + "/"]) == 0
    assert (out2 / "trend.html").exists()
    # audio in a longitudinal report, several speakers, bad baseline: clear usage errors
    assert main(["report", str(paths[0]), str(ROOT / "examples" / "jfk.flac")]) == 2
    assert main(["report", *map(str, paths), "-o", str(out)]) == 2
    assert main(["report", str(paths[0]), "--baseline-sessions", "-1"]) == 2
    err = capsys.readouterr().err
    assert "run `vocalfusion analyze`" in err and "--speaker" in err


def test_cli_embeds_audio_of_saved_json(tmp_path: Path, jfk_result: SessionResult) -> None:
    from fusion.cli.main import main

    js = tmp_path / "jfk.json"
    js.write_text(jfk_result.to_json(), encoding="utf-8")
    out = tmp_path / "jfk.html"
    # the audio is found through source.path; its sha256 must be the analysed file's
    assert main(["report", str(js), "--embed-audio", "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert re.search(r'<audio id="player"[^>]* src="data:audio/(?:ogg|wav);base64,', html)
    assert len(html.encode()) < 2_000_000  # 11 s of compressed audio is small
    other = tmp_path / "other.wav"
    import soundfile as sf

    sf.write(other, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["report", str(js), "--embed-audio", "--audio", str(other),
                 "-o", str(tmp_path / "j3.html")]) == 2
    assert not (tmp_path / "j3.html").exists()
    moved = jfk_result.model_copy(update={"source": jfk_result.source.model_copy(
        update={"path": str(tmp_path / "gone.flac")})})
    js.write_text(moved.to_json(), encoding="utf-8")
    assert main(["report", str(js), "--embed-audio", "-o", str(tmp_path / "j4.html")]) == 2


@pytest.mark.slow
def test_cli_analyses_audio_and_embeds_it(tmp_path: Path, jfk_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``vocalfusion report AUDIO --embed-audio``: loads the models, analyses, renders."""
    from fusion.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "jfk.html"
    assert main(["report", str(jfk_path), "--embed-audio", "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert 'id="player"' in html and "country" in html.lower()
    assert 'data-key="f0_mean_hz"' in html


# ------------------------------------------------------------------------------ browser
def _chromium() -> str | None:
    for cand in (os.environ.get("VOCALFUSION_CHROMIUM"), "/usr/bin/chromium",
                 shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (install Debian's `chromium` or set "
                             "VOCALFUSION_CHROMIUM); the browser tests need one")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # test dependency: pip install playwright

    with tempfile.TemporaryDirectory(prefix="vf-chromium-") as profile, \
            sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900}, offline=True)
        try:
            yield ctx
        finally:
            ctx.close()


class Opened:
    """A report opened in the browser, with everything it tried to do."""

    def __init__(self, ctx: Any, html_path: Path) -> None:
        self.url = html_path.resolve().as_uri()
        self.page = ctx.new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.route("**/*", self._route)
        self.page.goto(self.url, wait_until="load")

    def _dialog(self, d: Any) -> None:
        self.dialogs.append(d.message)
        d.dismiss()

    def _route(self, route: Any) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def assert_clean(self) -> None:
        bad = [m for m in self.console if m.startswith(("error", "warning"))]
        assert not bad, bad
        assert not self.errors, self.errors
        assert not self.dialogs, self.dialogs
        assert not self.blocked, self.blocked
        others = [u for u in self.requests if u != self.url and not u.startswith("data:")]
        assert not others, others

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _write(tmp_path: Path, name: str, html: str) -> Path:
    p = tmp_path / name
    p.write_text(html, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(p, ARTIFACTS / name)
    return p


@needs_chromium
def test_browser_real_analysis(browser_context: Any, jfk_result: SessionResult,
                               tmp_path: Path) -> None:
    page_file = _write(tmp_path, "report-jfk.html", render_session(jfk_result))
    o = Opened(browser_context, page_file)
    try:
        o.assert_clean()
        page = o.page
        assert page.locator("#summary .card").count() == 4
        n = len(jfk_result.segments)
        assert page.locator("#segments .table-wrap tbody tr").count() == n
        assert not page.locator("#segments .print-only").is_visible()
        page.emulate_media(media="print")  # the printed page has the compact table instead
        assert page.locator("#segments .print-only tbody tr").count() == n
        assert not page.locator("#segments .table-wrap").is_visible()
        page.emulate_media(media="screen")
        assert page.locator("#timeline .seg").count() >= len(jfk_result.segments)
        assert "country" in page.locator("#transcript").inner_text().lower()
        # focusing a segment shows its values in the read-out (keyboard users)
        seg = page.locator("#timeline .seg").first
        seg.focus()
        readout = page.locator("#timeline .readout").inner_text()
        assert readout and readout == seg.locator("title").text_content()
        assert page.evaluate("document.activeElement.getAttribute('tabindex')") == "0"
        o.screenshot("report-jfk.png")
        # the CSP is in force: an injected external image is refused, not fetched
        page.evaluate("""() => { const i = document.createElement('img');
                                 i.src = 'https://example.invalid/x.png';
                                 document.body.appendChild(i); }""")
        page.wait_for_timeout(200)
        assert any("Content Security Policy" in m for m in o.console), o.console
        # the browser refused it before the network layer: routing never saw it
        assert not o.blocked, o.blocked
    finally:
        o.page.close()


@needs_chromium
def test_browser_hostile_content(browser_context: Any, tmp_path: Path) -> None:
    page_file = _write(tmp_path, "report-hostile.html", render_session(hostile_result()))
    o = Opened(browser_context, page_file)
    try:
        o.assert_clean()
        page = o.page
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.scripts.length") == 1
        assert page.evaluate("document.querySelectorAll('img, iframe, i, u').length") == 0
        handlers = page.evaluate("""() => [...document.querySelectorAll('*')].filter(
            e => [...e.attributes].some(a => a.name.startsWith('on'))).length""")
        assert handlers == 0
        body = page.locator("body").inner_text()
        assert "<script>window.__pwned=1</script>" in body
        assert '<img src=x onerror="window.__pwned=2">' in body
        assert '<iframe src="https://evil.test">' in body
        assert "</script><u>w</u>" in body
        # hovering the segment with the hostile label still only shows text
        page.locator("#emotion .seg").first.hover()
        assert page.evaluate("window.__pwned") is None
        o.screenshot("report-hostile.png")
    finally:
        o.page.close()


@needs_chromium
def test_browser_skipped_stream_and_print(browser_context: Any, tmp_path: Path) -> None:
    page_file = _write(tmp_path, "report-skipped.html",
                       render_session(build_result(skip=("emotion",), n_segments=20)))
    o = Opened(browser_context, page_file)
    try:
        o.assert_clean()
        page = o.page
        assert page.locator("#missing-evidence").is_visible()
        assert "not in the local cache" in page.locator("#missing-evidence").inner_text()
        assert page.locator("#emotion .empty").is_visible()
        page.emulate_media(media="print")
        assert not page.locator("nav.toc").is_visible()
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        page.emulate_media(media="screen")
        o.screenshot("report-skipped.png")
    finally:
        o.page.close()


@needs_chromium
def test_browser_embedded_audio_plays_segment(browser_context: Any, tmp_path: Path,
                                              jfk_result: SessionResult, jfk_path: Path) -> None:
    from features.audio.load import load_audio
    from fusion.report import encode_audio

    res = jfk_result
    assert len(res.segments) >= 2
    jfk = jfk_path
    html = render_session(res, audio=encode_audio(load_audio(jfk)))
    o = Opened(browser_context, _write(tmp_path, "report-jfk-audio.html", html))
    try:
        o.assert_clean()
        page = o.page
        page.wait_for_function("document.getElementById('player').readyState >= 1",
                               timeout=10_000)
        assert page.evaluate("document.getElementById('player').error") is None
        seg = res.segments[1]
        page.locator(f'#transcript button.ts[data-i="{seg.index}"]').click()
        page.wait_for_function(
            f"Math.abs(document.getElementById('player').currentTime - {seg.start_s}) < 0.3 "
            "|| document.getElementById('player').currentTime > " + str(seg.start_s),
            timeout=5_000)
        t = page.evaluate("document.getElementById('player').currentTime")
        assert seg.start_s - 0.3 <= t <= seg.end_s + 0.5
    finally:
        o.page.close()


@needs_chromium
def test_browser_trend(browser_context: Any, tmp_path: Path) -> None:
    kept, left_out = load_sessions(_write_sessions(tmp_path), speaker="P01")
    page_file = _write(tmp_path, "report-trend.html",
                       render_trend(kept, speaker="P01", baseline_n=2, left_out=left_out))
    o = Opened(browser_context, page_file)
    try:
        o.assert_clean()
        assert o.page.locator("#trend .seg").count() == 8
        assert o.page.locator("#sessions tbody tr").count() == 4
        o.screenshot("report-trend.png")
    finally:
        o.page.close()

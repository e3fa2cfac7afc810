"""Issue 18, classes 1, 2, 3, 4 and 8: inputs and numbers.

1. a VBR MP3 without a Xing/Info header is decoded to its true end (and a length the container
   states wrongly is reported);
2. the channel axis of an in-memory signal follows one documented rule, and shapes the rule
   cannot decide are refused;
3. non-finite and absurd numbers are refused wherever a number is read (model, prior,
   profile, norms, config file, overrides), and JSON output is strict JSON;
4. special files (FIFO, device, symlink to a device, unreadable file) are refused wherever a
   path is accepted, without hanging, one error per path;
8. deeply nested or huge JSON is a ConfigError (exit status 2), never a RecursionError.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from features.audio.load import audio_from_signal, file_sha256, load_audio
from features.errors import (
    AudioError,
    ConfigError,
    NotAudioError,
    ParameterError,
)
from fusion._jsonio import read_json_file
from fusion.config import Config, config_dir, load_config

HAVE_FFMPEG = shutil.which("ffmpeg") is not None
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT = Path(__file__).resolve().parents[1]
PRIOR = config_dir() / "fusion_prior.json"
NORMS = config_dir() / "population_norms.json"


def _run_isolated(code: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python with 2 GiB of address space, so that a hang or a read of
    /dev/zero fails the test instead of the machine."""
    import resource

    def limit() -> None:  # pragma: no cover - runs in the child
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    try:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout_s, preexec_fn=limit, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for more than {timeout_s:.0f} s")


# ============================================================ class 1: silent truncation
def _vbr_mp3(tmp_path: Path, *, xing: bool, speech: bool = False) -> tuple[Path, float]:
    """An MP3 whose first seconds cost many bits (noise) and the rest few (a quiet tone), so
    that libsndfile's length estimate from the first frames is far too short."""
    sr = 44100
    rng = np.random.default_rng(7)
    head = rng.uniform(-0.5, 0.5, 3 * sr)
    if speech:
        y, fsr = sf.read("/work/shared/data/jfk.flac", dtype="float32", always_2d=True)
        assert fsr == sr
        tail = np.tile(y.mean(axis=1), 3)
    else:
        t = np.arange(30 * sr) / sr
        tail = 0.05 * np.sin(2 * np.pi * 220 * t)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.concatenate([head, tail]).astype(np.float32), sr)
    out = tmp_path / ("xing.mp3" if xing else "noxing.mp3")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), "-c:a", "libmp3lame",
                    "-q:a", "4", "-write_xing", "1" if xing else "0", str(out)], check=True)
    return out, (len(head) + len(tail)) / sr


@pytest.mark.skipif(not HAVE_FFMPEG, reason="needs ffmpeg (libmp3lame) to make the MP3")
@pytest.mark.parametrize("isolate", [False, True])
def test_vbr_mp3_without_xing_is_decoded_to_its_true_end(tmp_path: Path, isolate: bool) -> None:
    mp3, true_s = _vbr_mp3(tmp_path, xing=False)
    a = load_audio(mp3, isolate=isolate)
    # MP3 adds at most an encoder delay + padding of ~2 frames (≈ 0.05 s)
    assert abs(a.duration_s - true_s) < 0.1, (a.duration_s, true_s)
    assert any("length" in w for w in a.warnings), a.warnings


@pytest.mark.skipif(not HAVE_FFMPEG, reason="needs ffmpeg (libmp3lame) to make the MP3")
def test_vbr_mp3_without_xing_real_speech(tmp_path: Path) -> None:
    mp3, true_s = _vbr_mp3(tmp_path, xing=False, speech=True)
    a = load_audio(mp3)
    assert abs(a.duration_s - true_s) < 0.1, (a.duration_s, true_s)


@pytest.mark.skipif(not HAVE_FFMPEG, reason="needs ffmpeg (libmp3lame) to make the MP3")
def test_vbr_mp3_with_xing_is_read_whole_without_a_length_warning(tmp_path: Path) -> None:
    mp3, true_s = _vbr_mp3(tmp_path, xing=True)
    a = load_audio(mp3)
    assert abs(a.duration_s - true_s) < 0.1
    assert not any("length" in w for w in a.warnings), a.warnings


# ============================================================ class 2: ambiguous arrays
@pytest.mark.parametrize("shape", [(9, 32000), (32000, 9), (2, 16000), (16000, 2),
                                   (1, 16000), (16000, 1), (32, 16000)])
def test_channel_axis_is_the_short_axis(shape: tuple[int, int]) -> None:
    y = np.zeros(shape, dtype=np.float32)
    y[..., 0] = 0.1
    a = audio_from_signal(y, 16000)
    n_channels = min(shape)
    assert a.source.channels == n_channels
    assert a.duration_s == pytest.approx(max(shape) / 16000)


@pytest.mark.parametrize("shape", [(40, 40), (20, 32), (100, 3000), (64, 64), (8, 8),
                                   (1, 1)])
def test_shapes_the_rule_cannot_decide_are_refused(shape: tuple[int, int]) -> None:
    with pytest.raises(ParameterError, match="channel"):
        audio_from_signal(np.zeros(shape, dtype=np.float32), 16000)


def test_process_signal_uses_the_rule() -> None:
    from fusion.engine.analyzer import Analyzer

    cfg = Config().with_overrides({"emotion.enabled": False, "transcript.enabled": False,
                                   "sentiment.enabled": False, "prosody.enabled": False})
    analyzer = Analyzer(cfg)
    with pytest.raises(ParameterError, match="channel axis"):
        analyzer.process_signal(np.zeros((100, 3000), dtype=np.float32), 16000)


def test_three_dimensional_array_is_refused() -> None:
    with pytest.raises(ParameterError):
        audio_from_signal(np.zeros((2, 3, 16000), dtype=np.float32), 16000)


# ============================================================ class 3: numbers
def _prior_doc() -> dict:
    return json.loads(PRIOR.read_text(encoding="utf-8"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_prior_with_non_finite_coefficient_is_refused(tmp_path: Path, bad: str) -> None:
    from fusion.scoring.head import load_model_file

    doc = _prior_doc()
    doc["heads"]["depression"]["coefficients"][0]["beta"] = 12345.5
    text = json.dumps(doc).replace("12345.5", bad)
    with pytest.raises(ConfigError, match="beta"):
        load_model_file(_write(tmp_path / "m.json", text))


def test_absurd_coefficient_is_refused_with_its_key(tmp_path: Path) -> None:
    from fusion.scoring.head import load_prior

    doc = _prior_doc()
    doc["heads"]["stress"]["coefficients"][1]["beta"] = 1e300
    with pytest.raises(ConfigError, match=r"beta.*1e\+300|1e\+300.*beta"):
        load_prior(_write(tmp_path / "p.json", json.dumps(doc)))


def test_fitted_head_with_infinite_weight_or_center_is_refused() -> None:
    from fusion.scoring.head import LinearHead

    good = {"target": "stress", "kind": "logistic", "intercept": 0.0, "z_clip": 3.0,
            "features": [{"name": "speaker_z.f0_mean_st", "weight": 0.5, "center": 0.0,
                          "scale": 1.0}]}
    LinearHead.from_dict(good)
    for key, value in [("weight", math.inf), ("center", math.nan), ("weight", 1e200)]:
        bad = json.loads(json.dumps(good))
        bad["features"][0][key] = value
        with pytest.raises(ConfigError, match=key):
            LinearHead.from_dict(bad)
    for key, value in [("intercept", math.inf), ("z_clip", math.nan), ("z_clip", 1e9)]:
        bad = {**good, key: value}
        with pytest.raises(ConfigError, match=key):
            LinearHead.from_dict(bad)


def test_norms_with_infinite_sd_are_refused(tmp_path: Path) -> None:
    from fusion.scoring.baseline import load_norms

    doc = json.loads(NORMS.read_text(encoding="utf-8"))
    feat = next(iter(doc["features"]))
    doc["features"][feat]["all"]["sd"] = 0.123456
    text = json.dumps(doc).replace("0.123456", "Infinity")
    with pytest.raises(ConfigError, match="sd"):
        load_norms(_write(tmp_path / "n.json", text))


def test_profile_with_nan_median_is_refused(tmp_path: Path) -> None:
    from fusion.scoring.baseline import load_profile

    doc = {"format": "vocalfusion-speaker-profile", "format_version": 1,
           "created_at": "2026-01-01T00:00:00Z", "package_version": "0", "n_sessions": 1,
           "n_segments": 5, "speech_s": 20.0,
           "features": {"f0_mean_st": {"median": 777.25, "scale": 1.0, "n_segments": 5}}}
    text = json.dumps(doc).replace("777.25", "NaN")
    with pytest.raises(ConfigError, match="median"):
        load_profile(_write(tmp_path / "prof.json", text))


@pytest.mark.parametrize("override", [
    "audio.max_duration_s=inf", "audio.decode_timeout_s=1e300", "segments.window_s=1e-6",
    "segments.max_segment_s=nan", "audio.min_speech_s=-inf", "segments.hop_s=1e-9",
    "prosody.min_pause_s=1e300", "segments.min_silence_ms=999999999999",
])
def test_absurd_overrides_are_refused_naming_the_key(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Config().with_overrides([override])


def test_config_file_with_infinite_value_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "c.toml", "[audio]\nmax_duration_s = inf\n")
    with pytest.raises(ConfigError, match=r"audio\.max_duration_s"):
        load_config(p)


def test_ordinary_overrides_still_accepted() -> None:
    cfg = Config().with_overrides(["segments.window_s=2.5", "audio.max_duration_s=60",
                                   "audio.decode_timeout_s=5"])
    assert cfg.segments.window_s == 2.5


def _strict_loads(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_result_json_is_strict_and_keeps_infinity_apart_from_null() -> None:
    from datetime import UTC, datetime

    from fusion.schema import SessionResult, SessionStatus, SourceInfo
    from tests._fusion_factory import make_segment

    seg = make_segment(0, prosody={"mean_pause_s": math.inf, "hnr_db": -math.inf})
    res = SessionResult(package_version="test", analysed_at=datetime.now(UTC),
                        status=SessionStatus.OK,
                        source=SourceInfo(path="x.wav", duration_s=60.0, original_sr=16000,
                                          channels=1, format="wav", decoder="test"),
                        segments=[seg], streams={}, config={}, config_hash="x")
    text = res.to_json()
    doc = _strict_loads(text)
    assert isinstance(doc, dict)
    prosody = doc["segments"][0]["prosody"]
    assert prosody["mean_pause_s"] == "Infinity"  # not null: null means "not measured"
    assert prosody["hnr_db"] == "-Infinity"
    assert _strict_loads(json.dumps(res.to_dict())) == doc
    back = SessionResult.from_json(text)
    assert back.segments[0].prosody is not None
    assert math.isinf(back.segments[0].prosody.mean_pause_s)


def test_manifest_writer_is_strict() -> None:
    from fusion.schema import dumps_strict

    text = dumps_strict({"config": {"audio": {"max_duration_s": math.inf}}, "n": [math.nan]})
    doc = _strict_loads(text)
    assert doc == {"config": {"audio": {"max_duration_s": "Infinity"}}, "n": ["NaN"]}


# ============================================================ class 4: special files
@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "pipe.json"
    os.mkfifo(p)
    return p


@pytest.fixture()
def zero_link(tmp_path: Path) -> Path:
    p = tmp_path / "zero.json"
    p.symlink_to("/dev/zero")
    return p


@pytest.mark.parametrize("which", ["fifo", "zero_link"])
def test_json_reader_refuses_special_files_without_hanging(which: str, request, tmp_path) -> None:
    path = request.getfixturevalue(which)
    proc = _run_isolated(
        "from fusion._jsonio import read_json_file\n"
        "from features.errors import ConfigError\n"
        f"try:\n    read_json_file({str(path)!r}, what='fusion model')\n"
        "except ConfigError as e:\n    print('REFUSED', e)\n", timeout_s=30)
    assert "REFUSED" in proc.stdout and "regular" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("which", ["fifo", "zero_link"])
def test_config_file_that_is_a_special_file_is_refused(which: str, request, tmp_path) -> None:
    path = request.getfixturevalue(which).rename(tmp_path / f"{which}.toml")
    proc = _run_isolated(
        "from fusion.config import load_config\n"
        "from features.errors import ConfigError\n"
        f"try:\n    load_config({str(path)!r})\n"
        "except ConfigError as e:\n    print('REFUSED', e)\n", timeout_s=30)
    assert "REFUSED" in proc.stdout and "regular" in proc.stdout, proc.stdout + proc.stderr


def test_file_hash_and_batch_resume_of_a_fifo_do_not_hang(tmp_path: Path, fifo: Path) -> None:
    jp = tmp_path / "r.json"
    jp.write_text(json.dumps({"config_hash": "h", "package_version": "v",
                              "source": {"path": str(fifo), "sha256": "ab"}}))
    proc = _run_isolated(
        "from features.audio.load import file_sha256\n"
        "from fusion.batch.runner import _up_to_date\n"
        f"try:\n    file_sha256({str(fifo)!r})\n"
        "except Exception as e:\n    print('REFUSED', type(e).__name__, e)\n"
        f"print('UP_TO_DATE', _up_to_date(__import__('pathlib').Path({str(jp)!r}), "
        f"{str(fifo)!r}, 'h', 'v'))\n", timeout_s=30)
    assert "REFUSED" in proc.stdout, proc.stdout + proc.stderr
    assert "UP_TO_DATE False" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_audio_symlink_to_device_is_refused(tmp_path: Path, target: str) -> None:
    p = tmp_path / "a.wav"
    p.symlink_to(target)
    with pytest.raises(NotAudioError, match="regular"):
        load_audio(p)


def test_audio_fifo_is_refused(fifo: Path) -> None:
    with pytest.raises(NotAudioError, match="regular"):
        load_audio(fifo)


def test_sparse_huge_json_is_refused_by_size(tmp_path: Path) -> None:
    p = tmp_path / "huge.json"
    with open(p, "wb") as fh:
        fh.truncate(200 * 1024 * 1024)
    with pytest.raises(ConfigError, match="limit"):
        read_json_file(p, what="fusion model")


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode")
def test_unreadable_audio_and_model_are_one_line_errors(tmp_path: Path) -> None:
    wav = tmp_path / "locked.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    wav.chmod(0)
    with pytest.raises(AudioError, match="permission|Permission"):
        load_audio(wav)
    model = tmp_path / "locked.json"
    model.write_text("{}")
    model.chmod(0)
    with pytest.raises(ConfigError):
        read_json_file(model, what="fusion model")


def test_unreadable_file_via_no_read_bit_is_refused_cleanly(tmp_path: Path) -> None:
    """A directory given as a model file (readable by root too): one clean error."""
    with pytest.raises(ConfigError, match="directory"):
        read_json_file(tmp_path, what="fusion model")


@pytest.mark.parametrize("which", ["fifo", "zero_link"])
def test_label_csv_path_list_and_saved_session_refuse_special_files(which: str,
                                                                    request) -> None:
    path = request.getfixturevalue(which)
    proc = _run_isolated(
        "from pathlib import Path\n"
        "from fusion.training.labels import read_label_csv\n"
        "from fusion.files import read_path_list\n"
        "from fusion.cli.main import main\n"
        "for f in (read_label_csv, read_path_list):\n"
        f"    try:\n        f(Path({str(path)!r}))\n"
        "    except Exception as e:\n        print('REFUSED', type(e).__name__, e)\n"
        f"print('EXIT', main(['baseline', 'build', {str(path)!r}, '-o', "
        f"{str(path.parent / 'p.json')!r}]))\n", timeout_s=30)
    assert proc.stdout.count("REFUSED") == 2, proc.stdout + proc.stderr
    assert "EXIT 2" in proc.stdout, proc.stdout + proc.stderr


def test_file_sha256_reads_regular_files() -> None:
    assert len(file_sha256(PRIOR)) == 64


# ============================================================ class 8: nested / huge JSON
@pytest.mark.parametrize("depth", [100_000, 2_000, 200])
def test_deeply_nested_model_is_a_config_error(tmp_path: Path, depth: int) -> None:
    p = _write(tmp_path / "deep.json", '{"a":' * depth + "1" + "}" * depth)
    with pytest.raises(ConfigError, match="nest"):
        read_json_file(p, what="fusion model")


def test_deeply_nested_list_in_profile_is_a_config_error(tmp_path: Path) -> None:
    from fusion.scoring.baseline import load_profile

    p = _write(tmp_path / "prof.json", '{"features": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(ConfigError):
        load_profile(p)


def test_ordinary_nesting_is_accepted(tmp_path: Path) -> None:
    p = _write(tmp_path / "ok.json", '{"a":' * 20 + "1" + "}" * 20)
    obj, _sha = read_json_file(p, what="fusion model")
    assert isinstance(obj, dict)


def test_cli_deep_session_json_exits_2(tmp_path: Path) -> None:
    from fusion.cli.main import main

    p = _write(tmp_path / "s.json", "[" * 100_000 + "]" * 100_000)
    assert main(["baseline", "build", str(p), "-o", str(tmp_path / "prof.json")]) == 2
    assert not (tmp_path / "prof.json").exists()


def test_cli_analyze_one_line_per_bad_path_and_the_rest_goes_on(tmp_path: Path) -> None:
    """A FIFO and a symlink to /dev/zero before a good file: one error line each, no
    traceback, the good file analysed (exit status 1: some inputs failed, per the README)."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.wav"
    zero.symlink_to("/dev/zero")
    good = tmp_path / "tone.wav"
    t = np.arange(3 * 16000) / 16000
    sf.write(good, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    out_dir = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "fusion.cli.main", "analyze", str(fifo), str(zero), str(good),
         "-o", str(out_dir), "-q", "--set", "emotion.enabled=false", "--set",
         "transcript.enabled=false", "--set", "sentiment.enabled=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert all("not a regular file" in ln for ln in errors), errors
    assert proc.returncode == 1, proc.stderr
    assert (out_dir / "tone.json").is_file()

"""Tests of the acoustic emotion stream.

The models here are TINY RANDOMLY INITIALISED wav2vec2 models built in a temp dir (hidden size
32, 2 layers), saved as safetensors with ``save_pretrained``: the real code paths (feature
extractor, ``AutoModelForAudioClassification`` loading, windowing, batching, label mapping,
embeddings) run end to end, but the numbers mean nothing about emotion. Audio is real speech
(examples/jfk.flac) and synthetic espeak-ng speech. HF_HUB_OFFLINE=1 throughout: no test
touches the network.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _no_network import NoNetwork

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from features.audio.load import audio_from_signal, load_audio  # noqa: E402
from features.emotion.stream import (  # noqa: E402
    Emotion,
    EmotionConfig,
    EmotionMeasures,
    EmotionStream,
    canonical_label,
    save_embeddings,
    window_bounds,
)
from features.errors import ModelUnavailable, UnsafeModelFileError  # noqa: E402
from features.segments.vad import Segment  # noqa: E402
from features.stream import StreamStatus  # noqa: E402

SR = 16_000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _tiny_config(labels: list[str], *, layer_norm: bool = False, **kw: object):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=16, use_weighted_layer_sum=True,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
        **kw)


def _save_classifier(path: Path, labels: list[str], *, seed: int = 0, layer_norm: bool = False,
                     bias: list[float] | None = None) -> Path:
    """A tiny RANDOM Wav2Vec2ForSequenceClassification + feature extractor, safetensors."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(_tiny_config(labels, layer_norm=layer_norm)).eval()
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(path)
    # like superb/wav2vec2-base-superb-er: no attention mask (group-norm front end)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                             do_normalize=True, return_attention_mask=layer_norm
                             ).save_pretrained(path)
    return path


def _card_model_class():
    """The audeering model card's EmotionModel, written out here independently of the
    package's loader (dense -> tanh -> dropout -> out_proj over mean-pooled hidden states)."""
    from torch import nn
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        Wav2Vec2Model,
        Wav2Vec2PreTrainedModel,
    )

    class RegressionHead(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, features):
            x = self.dropout(features)
            x = torch.tanh(self.dense(x))
            x = self.dropout(x)
            return self.out_proj(x)

    class EmotionModel(Wav2Vec2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.config = config
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values):
            hidden_states = self.wav2vec2(input_values)[0]
            hidden_states = torch.mean(hidden_states, dim=1)
            return hidden_states, self.classifier(hidden_states)

    return EmotionModel


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny_emotion_models")
    dirs = {
        "superb_like": _save_classifier(base / "superb_like", ["neu", "hap", "ang", "sad"]),
        "layer_norm": _save_classifier(base / "layer_norm", ["neu", "hap", "ang", "sad"],
                                       seed=1, layer_norm=True),
        "fru_wins": _save_classifier(base / "fru_wins", ["neu", "hap", "exc", "fru", "ang"],
                                     bias=[0.0, 1.0, 1.0, 4.0, 0.0]),
        "hap_wins": _save_classifier(base / "hap_wins", ["neu", "hap", "exc", "fru", "ang"],
                                     bias=[0.0, 2.0, 1.5, 0.0, 0.0]),
    }
    # the dimensional head, saved from the model card's own class (random encoder, fixed head)
    from transformers import Wav2Vec2FeatureExtractor

    card_cls = _card_model_class()
    cfg = _tiny_config(["arousal", "dominance", "valence"], layer_norm=True,
                       architectures=["Wav2Vec2ForSpeechClassification"])
    torch.manual_seed(2)
    dim = card_cls(cfg).eval()
    dirs["dimensional"] = base / "dimensional"
    dim.save_pretrained(dirs["dimensional"])
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True
                             ).save_pretrained(dirs["dimensional"])
    # an encoder without any head: must be refused, not given a random head
    from transformers import Wav2Vec2Model

    dirs["no_head"] = base / "no_head"
    Wav2Vec2Model(_tiny_config(["neu", "hap"])).save_pretrained(dirs["no_head"])
    Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(dirs["no_head"])
    return dirs


@pytest.fixture(scope="module")
def jfk_audio():
    return load_audio(ROOT / "examples" / "jfk.flac")


@pytest.fixture(scope="module")
def long_audio(jfk_audio):
    """About 33 s of real speech: the JFK excerpt three times."""
    return audio_from_signal(np.concatenate([jfk_audio.y] * 3), SR, name="jfk_x3")


def _stream(path: Path, **cfg: object) -> EmotionStream:
    return EmotionStream(EmotionConfig(model=str(path), **cfg), num_threads=2).load()


def _direct_logits(path: Path, y: np.ndarray) -> np.ndarray:
    """Logits straight from transformers (no vocalfusion code) for one window."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    fe = AutoFeatureExtractor.from_pretrained(path)
    model = AutoModelForAudioClassification.from_pretrained(path).eval()
    x = fe(y, sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.inference_mode():
        return model(x).logits[0].double().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


# --------------------------------------------------------------------------------------------

def test_window_bounds_merge_short_tail() -> None:
    assert window_bounds(0, SR, 8.0) == []
    assert window_bounds(SR * 3, SR, 8.0) == [(0, SR * 3)]
    assert window_bounds(SR * 20, SR, 8.0) == [(0, 8 * SR), (8 * SR, 16 * SR), (16 * SR, 20 * SR)]
    n = int(SR * 16.3)  # 0.3 s tail < 0.5 s: merged into the previous window
    assert window_bounds(n, SR, 8.0) == [(0, 8 * SR), (8 * SR, n)]
    n = int(SR * 16.6)  # 0.6 s tail: its own window
    assert window_bounds(n, SR, 8.0)[-1] == (16 * SR, n)


def test_canonical_label_table() -> None:
    assert canonical_label("neu") is Emotion.NEUTRAL
    assert canonical_label("HAP") is Emotion.HAPPY
    assert canonical_label("exc") is Emotion.HAPPY  # IEMOCAP 4-class convention
    assert canonical_label("Anger") is Emotion.ANGRY
    assert canonical_label("fea") is Emotion.FEARFUL
    assert canonical_label("dis") is Emotion.DISGUST
    assert canonical_label("sur") is Emotion.SURPRISED
    assert canonical_label("pleasant_surprise") is Emotion.SURPRISED
    assert canonical_label("fru") is None
    assert canonical_label("LABEL_0") is None
    assert canonical_label("fru", {"fru": "angry"}) is Emotion.ANGRY
    with pytest.raises(ValueError, match="not a canonical label"):
        EmotionConfig(label_map={"fru": "annoyed"})


def test_probabilities_sum_to_one_with_superb_labels(model_dirs, jfk_audio) -> None:
    stream = _stream(model_dirs["superb_like"])
    segs = [Segment(0.0, 3.0), Segment(3.0, 7.5), Segment(7.5, jfk_audio.duration_s)]
    out = stream.run(jfk_audio, segs, {})
    assert out.status is StreamStatus.OK and len(out.rows) == 3
    for row in out.rows:
        assert isinstance(row, EmotionMeasures)
        assert set(row.probabilities) == {"neutral", "happy", "angry", "sad"}
        assert sum(row.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in row.probabilities.values())
        assert row.unmapped_probability == pytest.approx(0.0, abs=1e-12)
        assert row.top_label == max(row.probabilities, key=row.probabilities.get)
        assert 0.0 <= row.entropy_bits <= 2.0 + 1e-9  # log2(4 classes)
        p = np.array(list(row.model_probabilities.values()))
        assert row.entropy_bits == pytest.approx(float(-(p * np.log2(p)).sum()), abs=1e-9)
        assert row.n_windows == 1
        assert row.arousal is None
    prov = out.provenance
    assert prov.model_id == str(model_dirs["superb_like"])
    assert prov.revision.startswith("sha256:")  # local dir: content hash of the weights
    assert prov.options["model_labels"] == ["neu", "hap", "ang", "sad"]
    assert prov.options["padded_batches"] is False
    # the same numbers as transformers itself gives for that window
    expected = _softmax(_direct_logits(model_dirs["superb_like"], jfk_audio.crop(0.0, 3.0)))
    got = [out.rows[0].model_probabilities[k] for k in ["neu", "hap", "ang", "sad"]]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_label_mapping_merges_exc_and_reports_unmapped(model_dirs, jfk_audio) -> None:
    seg = [Segment(1.0, 4.0)]
    # the head's weights are zeroed and its bias fixed, so the class distribution is known
    row = _stream(model_dirs["fru_wins"]).run(jfk_audio, seg, {}).rows[0]
    p = _softmax(np.array([0.0, 1.0, 1.0, 4.0, 0.0]))
    assert row.model_probabilities == pytest.approx(dict(zip(
        ["neu", "hap", "exc", "fru", "ang"], p, strict=True)), abs=1e-6)
    assert set(row.probabilities) == {"neutral", "happy", "angry"}
    assert row.probabilities["happy"] == pytest.approx(p[1] + p[2], abs=1e-6)
    assert row.unmapped_probability == pytest.approx(p[3], abs=1e-6)
    assert sum(row.probabilities.values()) + row.unmapped_probability == pytest.approx(1.0)
    assert row.model_top_label == "fru"
    assert row.top_label is None  # 'fru' (no canonical label) outweighs every canonical one
    row = _stream(model_dirs["hap_wins"]).run(jfk_audio, seg, {}).rows[0]
    assert row.top_label == "happy" and row.model_top_label == "hap"
    # a label_map from the config takes 'fru' onto 'angry'
    stream = _stream(model_dirs["fru_wins"], label_map={"fru": "angry"})
    row = stream.run(jfk_audio, seg, {}).rows[0]
    assert row.unmapped_probability == pytest.approx(0.0)
    assert row.probabilities["angry"] == pytest.approx(p[3] + p[4], abs=1e-6)
    assert row.top_label == "angry"


def test_long_segment_windows_are_duration_weighted(model_dirs, long_audio) -> None:
    path = model_dirs["superb_like"]
    stream = _stream(path, window_s=8.0)
    segs = [Segment(0.0, 20.3), Segment(20.5, 36.8 if long_audio.duration_s > 36.8
                                       else long_audio.duration_s)]
    out = stream.run(long_audio, segs, {})
    y = long_audio.crop(0.0, 20.3)
    bounds = window_bounds(len(y), SR, 8.0)
    assert [b - a for a, b in bounds] == [8 * SR, 8 * SR, len(y) - 16 * SR]
    logits = np.array([_direct_logits(path, y[a:b]) for a, b in bounds])
    w = np.array([b - a for a, b in bounds], dtype=float)
    expected = _softmax((w[:, None] * logits).sum(0) / w.sum())
    row = out.rows[0]
    assert row.n_windows == 3
    got = [row.model_probabilities[k] for k in ["neu", "hap", "ang", "sad"]]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # an unweighted mean would differ (the last window is about half as long)
    unweighted = _softmax(logits.mean(0))
    assert not np.allclose(unweighted, expected, atol=1e-9)
    y2 = long_audio.crop(segs[1].start_s, segs[1].end_s)
    assert out.rows[1].n_windows == len(window_bounds(len(y2), SR, 8.0))


def _varied_segments(duration_s: float) -> list[Segment]:
    """Segments with some equal and some different lengths (and one long one)."""
    starts = [0.0, 1.0, 2.5, 4.0, 5.0, 6.5, 0.3, 3.3]
    lens = [1.0, 1.5, 1.0, 1.0, 1.5, 2.0, 0.77, 9.5]
    return [Segment(s, min(s + n, duration_s)) for s, n in zip(starts, lens, strict=True)]


@pytest.mark.parametrize("which", ["superb_like", "layer_norm"])
def test_batched_equals_one_by_one(model_dirs, long_audio, which: str) -> None:
    segs = _varied_segments(long_audio.duration_s)
    batched = _stream(model_dirs[which], batch_size=8, window_s=4.0, embeddings=True)
    single = _stream(model_dirs[which], batch_size=1, window_s=4.0, embeddings=True)
    a = batched.run(long_audio, segs, {})
    b = single.run(long_audio, segs, {})
    for ra, rb in zip(a.rows, b.rows, strict=True):
        for k in ra.model_probabilities:
            assert ra.model_probabilities[k] == pytest.approx(rb.model_probabilities[k], abs=1e-4)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4)
    # how the batches were formed: no padding for the no-attention-mask model
    feats = [np.zeros(n, dtype=np.float32) for n in (16000, 24000, 16000, 16000, 32000)]
    batches = batched._batches([len(f) for f in feats])
    assert sorted(i for b_ in batches for i in b_) == [0, 1, 2, 3, 4]
    if which == "superb_like":
        assert not batched._pad_ok
        assert all(len({feats[i].shape for i in b_}) == 1 for b_ in batches)
        assert any(len(b_) > 1 for b_ in batches)  # equal lengths were batched
    else:
        assert batched._pad_ok
        assert len(batches) == 1 and batches[0][0] == 4  # longest first, padded with a mask


def _reference_outputs(path: Path, audio, segs: list[Segment], *, window_s: float,
                       quantize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The emotion stream's outputs computed the straightforward way, for comparison.

    Plain transformers, one window at a time, ``output_hidden_states=True`` and the mean over
    time of ``hidden_states[-1]`` (what the stream returned before its memory work); the
    duration-weighted mean of logits and embeddings per segment; softmax. With ``quantize``
    the model is ``quantize_dynamic``'s (copying) int8 version. Returns (probabilities,
    embeddings), one row per segment.
    """
    from torch.ao.quantization import quantize_dynamic
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    fe = AutoFeatureExtractor.from_pretrained(path)
    model = AutoModelForAudioClassification.from_pretrained(path).eval()
    if quantize:
        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    probs, embs = [], []
    for seg in segs:
        y = audio.crop(seg.start_s, seg.end_s)
        logits, pooled, weights = [], [], []
        for a, b in window_bounds(len(y), SR, window_s):
            x = fe(y[a:b], sampling_rate=SR, return_tensors="pt")["input_values"]
            with torch.inference_mode():
                res = model(x, output_hidden_states=True)
            logits.append(res.logits[0].double().numpy())
            pooled.append(res.hidden_states[-1][0].mean(dim=0).double().numpy())
            weights.append(float(b - a))
        w = np.array(weights)[:, None]
        probs.append(_softmax((w * np.array(logits)).sum(0) / w.sum()))
        embs.append((w * np.array(pooled)).sum(0) / w.sum())
    return np.array(probs), np.array(embs)


@pytest.mark.parametrize("which", ["superb_like", "layer_norm"])
@pytest.mark.parametrize("max_batch_s", [3.0, 16.0])
def test_outputs_equal_straightforward_reference(model_dirs, long_audio, which: str,
                                                 max_batch_s: float) -> None:
    """Memory work changes no number: probabilities and embeddings equal a plain one-window-
    at-a-time computation with every hidden state requested, within 1e-5 (TINY RANDOM models;
    the layer-norm one has transformers 5's pre-final-layer-norm ``hidden_states[-1]``)."""
    segs = _varied_segments(long_audio.duration_s)
    stream = _stream(model_dirs[which], window_s=4.0, embeddings=True,
                     max_batch_s=max_batch_s)
    assert stream._pool_module is not None  # the hook, not output_hidden_states, is used
    out = stream.run(long_audio, segs, {})
    probs, embs = _reference_outputs(model_dirs[which], long_audio, segs, window_s=4.0)
    got = np.array([[r.model_probabilities[k] for k in ["neu", "hap", "ang", "sad"]]
                    for r in out.rows])
    np.testing.assert_allclose(got, probs, atol=1e-5)
    np.testing.assert_allclose(out.embeddings, embs, atol=1e-5)


def test_one_stream_shared_by_threads_gives_each_its_own_embeddings(model_dirs,
                                                                     long_audio) -> None:
    """The last hidden state is captured per thread: concurrent runs of one loaded stream (the
    server's workers share one analyzer) equal sequential ones (TINY RANDOM model)."""
    from concurrent.futures import ThreadPoolExecutor

    stream = _stream(model_dirs["superb_like"], window_s=4.0, embeddings=True)
    jobs = [[Segment(t, t + 1.0 + 0.25 * k) for t in (0.0, 3.0, 7.0, 12.0)] for k in range(12)]
    sequential = [stream.run(long_audio, segs, {}).embeddings for segs in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda segs: stream.run(long_audio, segs, {})
                                   .embeddings, jobs))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_int8_outputs_equal_quantize_dynamic_reference(model_dirs, long_audio) -> None:
    """In-place quantisation gives the numbers of torch's copying ``quantize_dynamic`` (TINY
    RANDOM model). One window per batch: int8 dynamic quantisation scales activations per
    batch, so int8 numbers depend on which windows share a batch (fp32 ones do not)."""
    segs = _varied_segments(long_audio.duration_s)
    stream = _stream(model_dirs["superb_like"], window_s=4.0, embeddings=True, quantize=True,
                     batch_size=1)
    out = stream.run(long_audio, segs, {})
    probs, embs = _reference_outputs(model_dirs["superb_like"], long_audio, segs,
                                     window_s=4.0, quantize=True)
    got = np.array([[r.model_probabilities[k] for k in ["neu", "hap", "ang", "sad"]]
                    for r in out.rows])
    np.testing.assert_allclose(got, probs, atol=1e-5)
    np.testing.assert_allclose(out.embeddings, embs, atol=1e-5)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_int8_releases_the_fp32_weights_file(model_dirs) -> None:
    """After quantisation no tensor references the memory-mapped fp32 safetensors file, so
    its pages are not kept resident beside the int8 model (TINY RANDOM model)."""
    weights = str(model_dirs["superb_like"] / "model.safetensors")

    def mapped() -> bool:
        return weights in Path("/proc/self/maps").read_text()

    fp32 = _stream(model_dirs["superb_like"])
    assert fp32.loaded
    int8 = _stream(model_dirs["superb_like"], quantize=True)
    del fp32
    import gc

    gc.collect()
    assert int8.loaded and not mapped()


def test_batches_bounded_by_audio_seconds(model_dirs) -> None:
    """Batches hold at most batch_size windows and max_batch_s seconds of (padded) audio; a
    longer window runs alone; every window is in exactly one batch."""
    lengths = [8 * SR] * 5 + [2 * SR] * 9 + [SR] * 3 + [20 * SR]
    for which in ("superb_like", "layer_norm"):
        stream = _stream(model_dirs[which], batch_size=8, max_batch_s=16.0)
        batches = stream._batches(lengths)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            padded = len(b) * max(lengths[i] for i in b)
            assert len(b) <= 8 and (padded <= 16 * SR or len(b) == 1)
        assert [17] in batches  # the 20-s window alone
        if which == "superb_like":
            assert all(len({lengths[i] for i in b}) == 1 for b in batches)
            assert sorted(len(b) for b in batches if lengths[b[0]] == 8 * SR) == [1, 2, 2]
    unbounded = _stream(model_dirs["superb_like"], batch_size=8, max_batch_s=3600.0)
    assert sorted(map(len, unbounded._batches(lengths))) == [1, 1, 3, 5, 8]


def test_load_switches_off_the_onednn_cache_unless_set(model_dirs, monkeypatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    _stream(model_dirs["superb_like"])
    import os

    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "0"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    _stream(model_dirs["superb_like"])
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"


def test_embeddings_shape_nan_rows_and_files(model_dirs, jfk_audio, tmp_path) -> None:
    y = jfk_audio.y.copy()
    y[int(5.0 * SR):int(6.0 * SR)] = 0.0  # one second of digital silence
    audio = audio_from_signal(y, SR, name="jfk_with_gap")
    segs = [Segment(0.0, 2.0), Segment(2.0, 2.1), Segment(5.1, 5.9), Segment(6.0, 9.0)]
    out = _stream(model_dirs["superb_like"], embeddings=True).run(audio, segs, {})
    assert [r is None for r in out.rows] == [False, True, True, False]
    assert any("too short" in w and "segment 1" in w for w in out.warnings)
    assert any("silence" in w and "segment 2" in w for w in out.warnings)
    emb = out.embeddings
    assert emb.dtype == np.float32 and emb.shape == (4, 32)
    assert np.isnan(emb[1]).all() and np.isnan(emb[2]).all()
    assert np.isfinite(emb[0]).all() and np.isfinite(emb[3]).all()
    # embeddings stay out of the JSON rows
    assert "embedding" not in out.rows[0].model_dump_json()
    rec = np.load(save_embeddings(tmp_path / "e.npy", emb, segs))  # no pickle needed
    assert rec.dtype.names == ("segment", "start_s", "end_s", "embedding")
    assert list(rec["segment"]) == [0, 1, 2, 3] and rec["end_s"][3] == 9.0
    np.testing.assert_array_equal(rec["embedding"], emb)
    import pandas as pd

    df = pd.read_parquet(save_embeddings(tmp_path / "e.parquet", emb, segs, fmt="parquet"))
    assert list(df.columns[:3]) == ["segment", "start_s", "end_s"] and df.shape == (4, 35)
    np.testing.assert_array_equal(df.iloc[:, 3:].to_numpy(np.float32), emb)
    with pytest.raises(Exception, match="shape"):
        save_embeddings(tmp_path / "bad.npy", emb[:2], segs)
    # without the switch no embeddings are returned
    assert _stream(model_dirs["superb_like"]).run(audio, segs, {}).embeddings is None


def test_empty_segment_list(model_dirs, jfk_audio) -> None:
    out = _stream(model_dirs["superb_like"], embeddings=True).run(jfk_audio, [], {})
    assert out.rows == [] and out.embeddings.shape[0] == 0


def test_dimensional_backend_matches_model_card(model_dirs, jfk_audio) -> None:
    path = model_dirs["dimensional"]
    stream = _stream(path, backend="dimensional", embeddings=True)
    segs = [Segment(0.0, 2.5), Segment(2.5, 6.0), Segment(6.0, 8.0)]
    out = stream.run(jfk_audio, segs, {})
    # reference: the model card's own class and processing, window by window
    from transformers import Wav2Vec2FeatureExtractor

    ref = _card_model_class().from_pretrained(path).eval()
    fe = Wav2Vec2FeatureExtractor.from_pretrained(path)
    for seg, row, emb in zip(segs, out.rows, out.embeddings,
                                  strict=True):
        x = fe(jfk_audio.crop(seg.start_s, seg.end_s), sampling_rate=SR)["input_values"][0]
        with torch.inference_mode():
            pooled, values = ref(torch.from_numpy(np.asarray(x)[None]))
        a, d, v = values[0].tolist()
        assert (row.arousal, row.dominance, row.valence) == pytest.approx((a, d, v), abs=1e-5)
        np.testing.assert_allclose(emb, pooled[0].numpy(), atol=1e-5)
        assert row.probabilities == {} and row.top_label is None
    assert out.provenance.backend == "transformers-dimensional"


def test_dimensional_output_order_follows_config(model_dirs, jfk_audio, tmp_path) -> None:
    """Zero head weights + distinct biases: arousal/dominance/valence land in their fields."""
    card_cls = _card_model_class()
    model = card_cls.from_pretrained(model_dirs["dimensional"]).eval()
    with torch.no_grad():
        model.classifier.out_proj.weight.zero_()
        model.classifier.out_proj.bias.copy_(torch.tensor([0.1, 0.5, 0.9]))
    model.save_pretrained(tmp_path / "dim")
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(tmp_path / "dim")
    row = _stream(tmp_path / "dim", backend="dimensional").run(
        jfk_audio, [Segment(0.0, 3.0)], {}).rows[0]
    assert (row.arousal, row.dominance, row.valence) == pytest.approx((0.1, 0.5, 0.9), abs=1e-6)


def test_dimensional_backend_with_classifier_model_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="needs a dimensional model"):
        EmotionStream(EmotionConfig(backend="dimensional")).load()


def test_model_without_trained_head_is_refused(model_dirs) -> None:
    with pytest.raises(ModelUnavailable, match="no trained weights"):
        _stream(model_dirs["no_head"])


def test_int8_quantisation_switch(model_dirs, jfk_audio) -> None:
    stream = _stream(model_dirs["superb_like"], quantize=True)
    linear_types = {type(m).__module__ for m in stream._model.modules()
                    if "Linear" in type(m).__name__}
    assert any("quantized" in t for t in linear_types)
    row = stream.run(jfk_audio, [Segment(0.0, 4.0)], {}).rows[0]
    assert sum(row.probabilities.values()) == pytest.approx(1.0)
    assert stream.provenance().options["quantize"] is True




def test_offline_hub_model_is_skipped_quickly_without_network(tmp_path, monkeypatch) -> None:
    net = NoNetwork().install(monkeypatch)
    stream = EmotionStream(EmotionConfig(), cache_dir=tmp_path / "empty_cache")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as exc:
        stream.load()
    elapsed = time.perf_counter() - t0
    msg = str(exc.value)
    assert "superb/wav2vec2-base-superb-er" in msg
    assert "vocalfusion models fetch" in msg and "emotion.model" in msg
    assert "offline" in msg
    assert net.attempts == []
    assert elapsed < 10.0  # hang guard only: it returns in milliseconds


def test_pickle_only_directory_is_refused(model_dirs, tmp_path) -> None:
    from safetensors.torch import load_file

    src = model_dirs["superb_like"]
    dst = tmp_path / "pickled"
    dst.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    # our own state dict, written with torch.save (a pickle) as old checkpoints are
    torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
    with pytest.raises(ModelUnavailable) as exc:
        _stream(dst)
    assert isinstance(exc.value, UnsafeModelFileError)
    assert "pickle" in str(exc.value) and "allow_pickle_weights" in str(exc.value)
    # explicit opt-in loads it, and gives the same numbers as the safetensors copy
    audio = audio_from_signal(np.sin(np.linspace(0, 900, SR * 2)).astype(np.float32) * 0.3, SR)
    a = _stream(dst, allow_pickle_weights=True).run(audio, [Segment(0.0, 2.0)], {}).rows[0]
    b = _stream(src).run(audio, [Segment(0.0, 2.0)], {}).rows[0]
    assert a.model_probabilities == pytest.approx(b.model_probabilities, abs=1e-6)


def test_hub_id_from_local_cache_loads_offline(model_dirs, tmp_path, monkeypatch,
                                               speech_wav) -> None:
    """A hub id present in a Hugging Face cache layout is used without any network."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny-er"
    shutil.copytree(model_dirs["superb_like"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    net = NoNetwork().install(monkeypatch)
    stream = EmotionStream(EmotionConfig(model="someorg/tiny-er"), cache_dir=tmp_path / "hub")
    stream.load()
    audio = load_audio(speech_wav)  # synthetic espeak-ng speech
    out = stream.run(audio, [Segment(0.0, min(3.0, audio.duration_s))], {})
    assert out.rows[0] is not None
    assert out.provenance.revision == commit
    assert out.provenance.options["origin"] == "hub-cache"
    assert net.attempts == []


def test_import_does_not_load_torch() -> None:
    code = ("import sys, features.emotion.stream, features.sources, fusion.cli.commands.models; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("which, backend", [("superb_like", "classifier"),
                                            ("dimensional", "dimensional")])
def test_legacy_weight_norm_names_load(model_dirs, jfk_audio, tmp_path, which, backend) -> None:
    """Checkpoints saved before torch's parametrized weight norm (superb 2021, audeering 2022)
    name the positional convolution's weights ``weight_g``/``weight_v``; they must load fully."""
    import shutil

    from safetensors.torch import load_file, save_file

    src = model_dirs[which]
    dst = tmp_path / "legacy"
    shutil.copytree(src, dst)
    state = load_file(src / "model.safetensors")
    renamed = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v
               for k, v in state.items()}
    assert any(k.endswith("weight_g") for k in renamed)
    save_file(renamed, dst / "model.safetensors", metadata={"format": "pt"})
    seg = [Segment(0.0, 3.0)]
    a = _stream(dst, backend=backend).run(jfk_audio, seg, {}).rows[0]
    b = _stream(src, backend=backend).run(jfk_audio, seg, {}).rows[0]
    if backend == "dimensional":
        assert (a.arousal, a.dominance, a.valence) == pytest.approx(
            (b.arousal, b.dominance, b.valence), abs=1e-6)
    else:
        assert a.model_probabilities == pytest.approx(b.model_probabilities, abs=1e-6)

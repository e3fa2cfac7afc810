"""The ``egemaps`` stream: openSMILE functionals per segment and per session.

openSMILE (audEERING) computes the eGeMAPSv02 set (Eyben et al. 2016: 88 functionals of F0,
loudness, jitter, shimmer, HNR, formants, spectral balance, rates) or ComParE 2016 (6373
functionals), through the ``opensmile`` Python package. Each segment's own samples go to
``Smile.process_signal``; the row holds openSMILE's feature names as they are
(``F0semitoneFrom27.5Hz_sma3nz_amean`` …), so values match an openSMILE table of the same
segments. With ``egemaps.session = true`` the functionals of the file's speech (its segments
joined, in order) are in ``streams["egemaps"].session["functionals"]``.

Licence: openSMILE is free for research and personal use only, not for commercial products.
This project is Apache-2.0, so openSMILE is never a core dependency: the stream is off by
default (``egemaps.enabled = false``) and needs the extra, ``pip install "vocalfusion[egemaps]"``.
Enabled without the package, the stream is skipped with that one line.

References
----------
Eyben, F., et al. (2016). The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for voice
research and affective computing. *IEEE Trans. Affective Computing* 7(2), 190–202.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from features.errors import ModelUnavailable
from features.stream import Provenance, StreamOutput

if TYPE_CHECKING:  # pragma: no cover
    from features.audio.load import Audio
    from features.segments.vad import Segment

__all__ = ["EgemapsConfig", "EgemapsFeatures", "EgemapsStream", "INSTALL_HINT",
           "MIN_SEGMENT_S"]

INSTALL_HINT = ('openSMILE is not installed: pip install "vocalfusion[egemaps]" (openSMILE\'s '
                "licence allows research and personal use, not commercial products)")
#: shorter segments get no functionals (openSMILE's 60-ms F0 window needs a few frames)
MIN_SEGMENT_S = 0.1


class EgemapsConfig(BaseModel):
    """Settings of the eGeMAPS stream (config section ``[egemaps]``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="off by default: needs the egemaps extra "
                          "(openSMILE; research and personal use only)")
    feature_set: Literal["eGeMAPSv02", "ComParE_2016"] = Field(
        "eGeMAPSv02", description="openSMILE feature set: eGeMAPSv02 (88) or ComParE_2016 "
        "(6373 functionals)")
    session: bool = Field(True, description="also the functionals of the whole file's speech "
                          "(streams.egemaps.session.functionals)")


class EgemapsFeatures(BaseModel):
    """One segment's openSMILE functionals, by openSMILE's own feature names.

    Every field is a feature of the configured set (a value, ``None`` where openSMILE gave a
    non-finite number), e.g. ``row.model_extra["loudness_sma3_amean"]`` or, in JSON,
    ``segments[i].egemaps["loudness_sma3_amean"]``.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    def values(self) -> dict[str, float | None]:
        """Feature name → value."""
        return dict(self.model_extra or {})


def _finite(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


class EgemapsStream:
    """openSMILE functionals of every segment (see the module docstring).

    Parameters
    ----------
    config : EgemapsConfig
        Section ``[egemaps]`` of the configuration.
    num_threads : int
        Kept for the common stream signature (openSMILE runs single-threaded per call).
    """

    name = "egemaps"
    requires: tuple[str, ...] = ()

    def __init__(self, config: EgemapsConfig | None = None, *, num_threads: int = 1) -> None:
        self.config = config if config is not None else EgemapsConfig()
        self.num_threads = num_threads
        self._smile: Any = None
        self._lock = threading.Lock()  # one openSMILE process at a time per stream

    def load(self) -> EgemapsStream:
        """Build the openSMILE extractor; :class:`ModelUnavailable` without the package."""
        try:
            import opensmile
        except ImportError as exc:
            raise ModelUnavailable(INSTALL_HINT) from exc
        self._smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet[self.config.feature_set],
            feature_level=opensmile.FeatureLevel.Functionals)
        return self

    def provenance(self) -> Provenance:
        try:
            import opensmile

            lib: str | None = opensmile.__version__
        except ImportError:
            lib = None
        return Provenance(backend="opensmile", model_id=self.config.feature_set,
                          library_version=lib,
                          options={**self.config.model_dump(), "feature_level": "functionals",
                                   "licence": "openSMILE: research and personal use only"})

    def _functionals(self, x: np.ndarray, sr: int) -> dict[str, float | None]:
        with self._lock:
            df = self._smile.process_signal(np.asarray(x, dtype=np.float32), sr)
        return {str(k): _finite(v) for k, v in df.iloc[0].items()}

    def run(self, audio: Audio, segments: Sequence[Segment],
            context: dict[str, StreamOutput[Any]]) -> StreamOutput[Any]:
        """One :class:`EgemapsFeatures` row per segment (``None`` for a segment shorter than
        :data:`MIN_SEGMENT_S`, with a warning)."""
        t0 = time.perf_counter()
        if not self.config.enabled:
            return StreamOutput.skipped(self.name, "egemaps disabled in the configuration "
                                        "(egemaps.enabled)", len(segments), self.provenance())
        if self._smile is None:
            self.load()
        rows: list[EgemapsFeatures | None] = []
        warnings: list[str] = []
        clips = []
        for k, seg in enumerate(segments):
            x = audio.crop(seg.start_s, seg.end_s)
            if x.size < MIN_SEGMENT_S * audio.sr:
                rows.append(None)
                warnings.append(f"segment {k} ({seg.start_s:.2f}–{seg.end_s:.2f} s) is shorter "
                                f"than {MIN_SEGMENT_S:g} s: no functionals")
                continue
            clips.append(x)
            rows.append(EgemapsFeatures(**self._functionals(x, audio.sr)))
        session: dict[str, Any] = {"feature_set": self.config.feature_set}
        if self.config.session and clips:
            session["functionals"] = self._functionals(np.concatenate(clips), audio.sr)
            session["functionals_of"] = "the file's segments joined, in order"
        return StreamOutput[EgemapsFeatures | None](
            name=self.name, provenance=self.provenance(), rows=rows, session=session,
            warnings=warnings, elapsed_s=time.perf_counter() - t0)

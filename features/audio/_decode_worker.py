"""Child process that decodes one file for :func:`features.audio.load.load_audio`
(``isolate=True``).

Protocol: argv = path, max_duration_s, timeout_s. On success stdout carries one JSON header
line ``{"ok": true, "n": N, "source": {...}, "warnings": [...]}`` followed by N little-endian
float32 samples (mono, 16 kHz). On a decoding error: one JSON line ``{"ok": false, "code": ...,
"problem": ...}`` and exit status 0. Anything else (a crash, a hang) is the parent's to handle.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> int:
    from features.audio.load import load_audio
    from features.errors import AudioError
    from features.supervisor import child_streams

    path, max_duration_s, timeout_s = argv[0], float(argv[1]), float(argv[2])
    _, out = child_streams()  # the samples own stdout; stray prints go to stderr
    try:
        audio = load_audio(path, max_duration_s=max_duration_s, timeout_s=timeout_s,
                           hash_file=False, isolate=False)
    except AudioError as exc:
        out.write(json.dumps({"ok": False, "code": exc.code, "problem": exc.problem}).encode()
                  + b"\n")
        out.flush()
        return 0
    header = {"ok": True, "n": int(audio.y.shape[0]), "source": audio.source.to_dict(),
              "warnings": list(audio.warnings)}
    out.write(json.dumps(header).encode() + b"\n")
    samples = np.ascontiguousarray(audio.y, dtype="<f4")
    out.write(samples.data.cast("B"))  # written from the array, not from a bytes copy
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

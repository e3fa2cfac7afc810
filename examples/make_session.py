"""Generate examples/synthetic_session.flac: a few minutes of SYNTHETIC speech (espeak-ng).

The session is built to give a timeline something to show: one voice reads passages whose
delivery and wording change across the session —

* calm   : moderate rate, mid pitch, neutral or positive wording;
* tense  : fast, high and wide pitch, negative wording (a "stressed"-sounding style);
* low    : slow, low and flat pitch, long pauses, first-person negative wording.

It is synthetic speech from a formant synthesiser, not a person, and not a recording of stress
or depression: use it to try the software, never to judge the scores' validity.

Run:  python examples/make_session.py            (needs espeak-ng and ffmpeg or soundfile)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
OUT = HERE / "synthetic_session.flac"
SR = 16_000

# (style, espeak rate wpm, pitch 0-99, SSML pitch range %, pause after s, text)
PASSAGES: list[tuple[str, int, int, int, float, str]] = [
    ("calm", 160, 45, 100, 1.2,
     "Good morning. Today I would like to talk about the garden we planted last spring. "
     "The tomatoes grew well, and the neighbours came over to help with the harvest."),
    ("calm", 155, 45, 100, 1.5,
     "In the afternoon we walked along the river. The weather was mild, and we stopped "
     "for coffee at the small bakery near the bridge."),
    ("tense", 230, 70, 180, 0.4,
     "But then the phone rang and everything went wrong. The deadline was moved to "
     "tomorrow, the report is not finished, and my manager is furious about the mistakes."),
    ("tense", 240, 75, 200, 0.3,
     "There is no time. The server crashed again, the client is angry, and nobody knows "
     "how to fix it. This is a disaster and we are going to lose the contract."),
    ("tense", 225, 72, 180, 0.5,
     "I keep checking the numbers and they are always wrong. It is terrible. "
     "Everything depends on this meeting and I cannot make a single mistake."),
    ("calm", 165, 48, 110, 1.2,
     "After the meeting I went home and cooked dinner. We listened to music and "
     "talked about the holiday plans for the summer."),
    ("low", 110, 30, 40, 2.5,
     "I do not really know. I feel tired all the time."),
    ("low", 105, 28, 35, 3.0,
     "Nothing seems to matter much anymore. I stay at home, and I do not call my friends."),
    ("low", 100, 28, 35, 3.0,
     "I tried to read a book, but I could not concentrate. I always feel that I am "
     "failing at everything."),
    ("calm", 160, 46, 100, 1.0,
     "Tomorrow I will visit my sister. She has a new puppy, and the children are very "
     "happy about it. I think it will be a nice day."),
    ("calm", 150, 44, 100, 1.4,
     "On Sunday morning the market was busy. We bought fresh bread, some cheese and a "
     "bunch of flowers for the kitchen table, and then we sat in the park for a while."),
    ("calm", 158, 46, 110, 1.2,
     "My brother called in the evening. He told me about his new job at the library, "
     "and he sounded relaxed and content. We laughed about old stories from school."),
    ("tense", 235, 74, 190, 0.3,
     "Wait, the train is cancelled? I have to be there in twenty minutes. This cannot be "
     "happening. The taxi is stuck in traffic and the battery of my phone is almost dead."),
    ("tense", 245, 78, 200, 0.3,
     "Everyone is waiting for me and I am completely lost. I hate this. Why does this "
     "always happen to me? I should have left an hour earlier. It is a total mess."),
    ("low", 105, 29, 35, 2.8,
     "I did not sleep well again. I just lay there, thinking about all the things I "
     "never finished."),
    ("low", 100, 27, 30, 3.2,
     "I am not sure it is worth trying. I feel empty, and I cannot explain it to anyone."),
    ("low", 108, 29, 35, 2.6,
     "Maybe tomorrow will be different. Maybe not. I usually just wait for the day to end."),
    ("calm", 162, 47, 105, 1.2,
     "In the end, the week was not so bad. The report was finished on Friday, the "
     "garden needs water, and next month we are going to the sea. That is something to "
     "look forward to."),
]


def speak(text: str, rate: int, pitch: int, range_pct: int, wav: Path) -> np.ndarray:
    ssml = f'<speak><prosody range="{range_pct}%">{text}</prosody></speak>'
    subprocess.run(["espeak-ng", "-m", "-v", "en-us", "-s", str(rate), "-p", str(pitch),
                    "-w", str(wav), ssml], check=True, capture_output=True, timeout=60)
    y, sr = sf.read(wav, dtype="float32")
    import soxr

    return soxr.resample(y, sr, SR).astype(np.float32)


def main() -> int:
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    parts: list[np.ndarray] = [np.zeros(int(0.5 * SR), dtype=np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (_style, rate, pitch, rng, pause_s, text) in enumerate(PASSAGES):
            parts.append(speak(text, rate, pitch, rng, Path(tmp) / f"p{i}.wav"))
            parts.append(np.zeros(int(pause_s * SR), dtype=np.float32))
    y = np.concatenate(parts)
    y = 0.5 * y / max(1e-9, float(np.max(np.abs(y))))
    sf.write(OUT, y, SR, subtype="PCM_16", format="FLAC")
    print(f"wrote {OUT} ({len(y) / SR:.1f} s of synthetic espeak-ng speech)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

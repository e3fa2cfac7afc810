"""Data recipes, not data: manifests of the two labelled emotional-speech corpora.

Nothing of these corpora is committed. Fetch a copy, then build a manifest CSV from it::

    python benchmarks/datasets.py emodb   /path/to/voice-emotion-analysis/wav  -o emodb.csv
    python benchmarks/datasets.py ravdess /path/to/audio_speech_actors_01-24   -o ravdess.csv

Corpora (exact source repository and folder; see ``docs/models.md``):

EmoDB (Berlin Database of Emotional Speech; Burkhardt et al. 2005), CC0 1.0 as packaged by
    audeering. Copy used: GitHub repository ``sylaschacko/voice-emotion-analysis``, folder
    ``wav/`` (535 wav files, each cut or padded to 2.0 s at 22.05 kHz). Label: the 6th
    character of the file name (German codes W = anger, L = boredom, E = disgust, A = fear,
    F = happiness, T = sadness, N = neutral; the repository's CSV is wrong and is not read);
    speaker: the first two digits; sex from the corpus documentation (speakers 03, 10, 11,
    12, 15 male; 08, 09, 13, 14, 16 female). German, acted.
RAVDESS speech (Livingstone & Russo 2018), CC BY-NC-SA 4.0. Copy used: GitHub repository
    ``Rahul5430/Speech-Emotion-Recognition-System``, folder
    ``speech-emotion-recognition-ravdess-data/audio_speech_actors_01-24/`` (1,440 wav files,
    ``Actor_NN/``; the repository's other copies are re-encoded and are not used). File name
    ``MM-VC-EE-II-SS-RR-AA.wav``: EE emotion (01 neutral, 02 calm, 03 happy, 04 sad,
    05 angry, 06 fearful, 07 disgust, 08 surprised), II intensity (01 normal, 02 strong),
    AA actor (odd = male). English, acted. Non-commercial, share-alike: evaluation only.

The manifest columns: ``path`` (absolute), ``speaker`` (corpus-prefixed, e.g. ``emodb03``),
``sex`` (``male``/``female``), ``emotion`` (canonical: angry, bored, disgust, fearful, happy,
neutral, sad, calm, surprised), ``intensity`` (``normal``/``strong``; EmoDB has none:
empty), ``language``, ``licence``, ``source`` (repository and folder).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["ManifestRow", "CANONICAL", "AROUSAL", "emodb_manifest", "ravdess_manifest",
           "write_manifest", "read_manifest", "EMODB_SOURCE", "RAVDESS_SOURCE"]

#: canonical emotion labels of the manifests
CANONICAL: tuple[str, ...] = ("angry", "bored", "disgust", "fearful", "happy", "neutral",
                              "sad", "calm", "surprised")
#: binary arousal per canonical label (True = high). Disgust is left out of the binary
#: arousal task (None): its arousal is rated medium/ambiguous in the literature, and the
#: measures head puts it in neither class.
AROUSAL: dict[str, bool | None] = {
    "angry": True, "fearful": True, "happy": True, "surprised": True,
    "neutral": False, "sad": False, "bored": False, "calm": False, "disgust": None,
}

EMODB_SOURCE = "github:sylaschacko/voice-emotion-analysis wav/"
EMODB_LICENCE = "CC0-1.0"
RAVDESS_SOURCE = ("github:Rahul5430/Speech-Emotion-Recognition-System "
                  "speech-emotion-recognition-ravdess-data/audio_speech_actors_01-24/")
RAVDESS_LICENCE = "CC-BY-NC-SA-4.0"

_EMODB_CODES = {"W": "angry", "L": "bored", "E": "disgust", "A": "fearful", "F": "happy",
                "T": "sad", "N": "neutral"}
_EMODB_MALE = {"03", "10", "11", "12", "15"}
_EMODB_FEMALE = {"08", "09", "13", "14", "16"}
_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z]{1,2})\.wav$")
_RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                  "06": "fearful", "07": "disgust", "08": "surprised"}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$")


class ManifestRow(BaseModel):
    """One clip of a corpus manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    speaker: str
    sex: str
    emotion: str
    intensity: str
    language: str
    licence: str
    source: str


def emodb_manifest(folder: str | Path) -> list[ManifestRow]:
    """Manifest of a fetched EmoDB copy (``sylaschacko/voice-emotion-analysis`` → ``wav/``).

    Parameters
    ----------
    folder : path
        The ``wav/`` folder of the copy.

    Returns
    -------
    list of ManifestRow
        One row per file whose name follows the EmoDB scheme (``03a01Wa.wav``), sorted by
        name. Files with another name are skipped.

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a directory or holds no EmoDB-named wav file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"EmoDB folder {root} is not a directory")
    rows = []
    for f in sorted(root.glob("*.wav")):
        m = _EMODB_NAME.match(f.name)
        if m is None or m.group(3) not in _EMODB_CODES:
            continue
        spk = m.group(1)
        sex = "male" if spk in _EMODB_MALE else "female" if spk in _EMODB_FEMALE else ""
        rows.append(ManifestRow(path=str(f.resolve()), speaker=f"emodb{spk}", sex=sex,
                                emotion=_EMODB_CODES[m.group(3)], intensity="",
                                language="de", licence=EMODB_LICENCE, source=EMODB_SOURCE))
    if not rows:
        raise FileNotFoundError(f"no EmoDB-named wav file (e.g. 03a01Wa.wav) in {root}")
    return rows


def ravdess_manifest(folder: str | Path) -> list[ManifestRow]:
    """Manifest of a fetched RAVDESS speech copy (``audio_speech_actors_01-24/``).

    Parameters
    ----------
    folder : path
        The folder holding ``Actor_01`` … ``Actor_24``.

    Returns
    -------
    list of ManifestRow
        One row per speech file (vocal channel 01) named by the RAVDESS scheme, sorted.

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a directory or holds no RAVDESS-named speech file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"RAVDESS folder {root} is not a directory")
    rows = []
    for f in sorted(root.glob("Actor_*/*.wav")):
        m = _RAVDESS_NAME.match(f.name)
        if m is None or m.group(2) != "01" or m.group(3) not in _RAVDESS_CODES:
            continue
        actor = int(m.group(7))
        rows.append(ManifestRow(
            path=str(f.resolve()), speaker=f"ravdess{actor:02d}",
            sex="male" if actor % 2 else "female", emotion=_RAVDESS_CODES[m.group(3)],
            intensity="strong" if m.group(4) == "02" else "normal", language="en",
            licence=RAVDESS_LICENCE, source=RAVDESS_SOURCE))
    if not rows:
        raise FileNotFoundError(f"no RAVDESS-named speech file (Actor_NN/03-01-...wav) in "
                                f"{root}")
    return rows


def write_manifest(rows: Sequence[ManifestRow], path: str | Path) -> Path:
    """Write ``rows`` as CSV (header = :class:`ManifestRow` fields)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(ManifestRow.model_fields)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r.model_dump())
    return out


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest CSV written by :func:`write_manifest`."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [ManifestRow(**r) for r in csv.DictReader(fh)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", choices=["emodb", "ravdess"])
    ap.add_argument("folder", help="the fetched folder (see the module docstring)")
    ap.add_argument("-o", "--output", required=True, help="manifest CSV to write")
    args = ap.parse_args(argv)
    rows = (emodb_manifest if args.corpus == "emodb" else ravdess_manifest)(args.folder)
    write_manifest(rows, args.output)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.emotion] = counts.get(r.emotion, 0) + 1
    print(f"{args.corpus}: {len(rows)} clips, {len({r.speaker for r in rows})} speakers; "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

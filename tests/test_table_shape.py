"""One table shape everywhere: analyze CSV/Parquet, batch tables and to_dataframe() share the
index ``(file, start, end)`` and the rule for ``file`` (the path as given) and ``path_abs``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fusion.cli.main import main
from fusion.config import load_config
from fusion.schema import TABLE_INDEX, read_segment_table

LIGHT = ["emotion.enabled=false", "transcript.enabled=false", "sentiment.enabled=false"]
LIGHT_ARGS = [a for kv in LIGHT for a in ("--set", kv)]
REL = "in/jfk.flac"  # the path as the user types it, relative to the working folder


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory, jfk_path: Path) -> dict[str, pd.DataFrame]:
    """The same file analysed through every output, run from its folder with a relative path."""
    from fusion.batch.runner import process_files_dataframe
    from fusion.engine.analyzer import Analyzer

    work = tmp_path_factory.mktemp("shape")
    (work / "in").mkdir()
    shutil.copy(jfk_path, work / REL)
    old = os.getcwd()
    os.chdir(work)
    try:
        assert main(["analyze", REL, "-o", "a_csv", "--format", "csv", "-q", *LIGHT_ARGS]) == 0
        assert main(["analyze", REL, "-o", "a_pq", "--format", "parquet", "-q",
                     *LIGHT_ARGS]) == 0
        assert main(["batch", "in", "-o", "b", "-q", "--workers", "1", *LIGHT_ARGS]) == 0
        analyzer = Analyzer(load_config(overrides=LIGHT)).load()
        out = {
            "csv": read_segment_table("a_csv/jfk.segments.csv"),
            "parquet": pd.read_parquet("a_pq/jfk.segments.parquet"),
            "batch": pd.read_parquet("b/segments.parquet"),
            "sessions": pd.read_parquet("b/sessions.parquet"),
            "dataframe": analyzer.process_file(REL).to_dataframe(),
            "files_dataframe": process_files_dataframe([REL], analyzer=analyzer),
        }
    finally:
        os.chdir(old)
    out["work"] = pd.DataFrame({"dir": [str(work)]})
    return out


@pytest.mark.parametrize("name", ["csv", "parquet", "batch", "dataframe", "files_dataframe"])
def test_every_output_has_one_index_and_file_rule(tables: dict[str, pd.DataFrame],
                                                  name: str) -> None:
    df = tables[name]
    work = tables["work"]["dir"].iloc[0]
    assert list(df.index.names) == list(TABLE_INDEX)
    assert len(df) > 0
    assert set(df.index.get_level_values("file")) == {REL}
    assert pd.api.types.is_timedelta64_dtype(df.index.get_level_values("start"))
    assert pd.api.types.is_timedelta64_dtype(df.index.get_level_values("end"))
    assert set(df["path_abs"]) == {os.path.join(work, "in", "jfk.flac")}
    ref = tables["dataframe"]
    # same rows, same times (CSV through float seconds: equal to the microsecond)
    pd.testing.assert_index_equal(df.index.droplevel(["start", "end"]),
                                  ref.index.droplevel(["start", "end"]))
    for level in ("start", "end"):
        diff = (df.index.get_level_values(level)
                - ref.index.get_level_values(level)).total_seconds()
        assert abs(diff).max() < 1e-6
    pd.testing.assert_series_equal(df["f0_mean_hz"].reset_index(drop=True),
                                   ref["f0_mean_hz"].reset_index(drop=True),
                                   check_exact=False, rtol=1e-9)


def test_session_table_follows_the_same_rule(tables: dict[str, pd.DataFrame]) -> None:
    sessions = tables["sessions"]
    work = tables["work"]["dir"].iloc[0]
    assert list(sessions["file"]) == [REL]
    assert list(sessions["path_abs"]) == [os.path.join(work, "in", "jfk.flac")]


def test_egemaps_table_joins_onto_every_output(tables: dict[str, pd.DataFrame]) -> None:
    opensmile = pytest.importorskip(
        "opensmile", reason="opensmile not installed: pip install 'vocalfusion[egemaps]'")
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    work = tables["work"]["dir"].iloc[0]
    old = os.getcwd()
    os.chdir(work)  # openSMILE opens the files by the `file` value: the path as given
    try:
        egemaps = smile.process_index(tables["dataframe"].index)
    finally:
        os.chdir(old)
    assert list(egemaps.index.names) == list(TABLE_INDEX) and len(egemaps.columns) == 88
    for name in ("csv", "parquet", "batch", "dataframe", "files_dataframe"):
        joined = tables[name].join(egemaps, how="inner")
        assert len(joined) == len(tables[name]), name
        assert joined["F0semitoneFrom27.5Hz_sma3nz_amean"].notna().all(), name
        assert {"f0_mean_hz", "loudness_sma3_amean"} <= set(joined.columns)

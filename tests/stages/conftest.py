"""Stage tests: a clip table written from the small synthetic corpus' ground truth, and a tiny-run helper."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_modules.corpus_table import corpus_clip_rows


@pytest.fixture(scope="session")
def clip_table(small_corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("table") / "clips.parquet"
    pq.write_table(pa.Table.from_pylist(corpus_clip_rows(small_corpus)), path)
    return path

"""Record files: gzip is told by its bytes when read, by the .gz name when written."""

from __future__ import annotations

import gzip

import pytest

from collector import files


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_what_is_written_reads_back_the_same(tmp_path, name):
    path = str(tmp_path / name)
    with files.writing(path) as handle:
        handle.write('{"a": "é"}\n{"b": 2}\n')
    with open(path, "rb") as raw:
        assert (raw.read(2) == files.GZIP_MAGIC) == name.endswith(".gz")
    with files.reading(path) as (raw, content):
        assert content.read() == '{"a": "é"}\n{"b": 2}\n'.encode()
        assert raw.tell() > 0  # the stored file's position tells how far reading got


def test_a_gzip_file_without_the_name_is_still_read_as_gzip(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(gzip.compress(b"line\n"))
    with files.reading(str(path)) as (_, content):
        assert content.read() == b"line\n"

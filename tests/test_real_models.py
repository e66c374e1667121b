"""bench/real_models.py: joining a GGUF split into parts, and refusing a join that is not the model."""

import pytest

from bench.real_models import ModelNotFound, join_parts


def _parts(tmp_path, contents):
    paths = []
    for number, data in enumerate(contents, 1):
        path = tmp_path / f"part{number:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_parts_are_joined_in_order(tmp_path):
    parts = _parts(tmp_path, [b"GGUF\x03", b"\x00middle", b"end"])
    target = join_parts(parts, tmp_path / "cache" / "model.gguf", 15)
    assert target.read_bytes() == b"GGUF\x03\x00middleend"
    assert [p.name for p in target.parent.iterdir()] == ["model.gguf"]  # no partial file left behind


def test_a_wrong_total_size_is_refused_before_writing(tmp_path):
    parts = _parts(tmp_path, [b"GGUF", b"1234"])
    with pytest.raises(ModelNotFound, match="8 bytes, expected 9"):
        join_parts(parts, tmp_path / "out" / "model.gguf", 9)
    assert not (tmp_path / "out").exists()


def test_a_join_without_gguf_magic_is_refused_and_removed(tmp_path):
    parts = _parts(tmp_path, [b"ABCD", b"1234"])
    with pytest.raises(ModelNotFound, match="GGUF header"):
        join_parts(parts, tmp_path / "model.gguf", 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part01.bin", "part02.bin"]

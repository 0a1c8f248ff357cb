"""trainer/files.py: a file written through `atomic` is whole or absent, and `sha256_of` is the file's SHA-256."""

from __future__ import annotations

import hashlib
import io

import pytest

from trainer.files import atomic, sha256_of


def test_an_atomic_write_replaces_the_file_only_when_it_is_done(tmp_path):
    path = tmp_path / "netg.pth"
    path.write_bytes(b"old")
    with atomic(path) as tmp:
        tmp.write_bytes(b"new")
        assert path.read_bytes() == b"old"  # a reader still sees the whole old file meanwhile
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["netg.pth"]


@pytest.mark.parametrize("unique", [False, True])
def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, unique):
    path = tmp_path / "features.pt"
    path.write_bytes(b"old")
    with pytest.raises(OSError), atomic(path, unique=unique) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["features.pt"]


def test_writers_in_several_processes_get_temporaries_of_their_own(tmp_path):
    path = tmp_path / "emoji_64.pt"
    with atomic(path, unique=True) as a, atomic(path, unique=True) as b:
        assert a != b and a.parent == b.parent == tmp_path
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert path.read_bytes() == b"a"  # the last rename wins; either is whole


def test_sha256_of_reads_the_file_in_chunks():
    data = bytes(range(256)) * 10_000  # 2.4 MiB: several chunks
    assert sha256_of(io.BytesIO(data)) == hashlib.sha256(data).hexdigest()

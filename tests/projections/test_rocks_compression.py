"""RocksStore's per-level compression (``rocksstore.UNCOMPRESSED_LEVELS``): what the fold reads
back soon is stored as it is; a store written with LZ4 everywhere (before) still reads."""

from __future__ import annotations

from pathlib import Path

from rocksdict import DBCompressionType, Options, Rdict

from projections.rocksstore import RocksStore

VALUE = b"a" * 1000  # compresses to almost nothing
KEYS = [b"k%06d" % i for i in range(2000)]


def test_a_flushed_memtable_is_stored_uncompressed(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "store") as store:
        store.commit(dict.fromkeys(KEYS, VALUE))
        store.flush()
        files = store._live().live_files()
    assert [f["level"] for f in files] == [0]
    assert files[0]["size"] >= len(KEYS) * len(VALUE)  # LZ4 would make it a few KiB


def test_a_store_written_with_lz4_everywhere_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "store"
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_compression_type(DBCompressionType.lz4())
    old = Rdict(str(path), opts)
    for key in KEYS:
        old[key] = VALUE
    old.flush()
    assert old.live_files()[0]["size"] < len(KEYS) * len(VALUE) // 10
    old.close()
    with RocksStore(path) as store:
        assert [store.get(key) for key in KEYS[::97]] == [VALUE] * len(KEYS[::97])
        assert sum(1 for _ in store.scan(b"k", b"l")) == len(KEYS)
        store.commit({KEYS[0]: None, b"k999999": VALUE})
        store.flush()
        assert store.get(KEYS[0]) is None and store.get(b"k999999") == VALUE

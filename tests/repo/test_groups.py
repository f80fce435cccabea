"""Blob groups: the new chunks of a block-structured file sealed together, every chunk
still its own blob for dedup, every path that reads or rewrites packs handling them."""

from __future__ import annotations

import io
import random
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from drsync import sample
from drsync.errors import IntegrityError
from drsync.repo import Entry, KeyFile, RepoConfig, Repository, Secret, Snapshot, SnapshotReader
from drsync.repo.check import check_repository
from drsync.repo.crypto import CODEC_RAW, SealError
from drsync.repo.forget import forget
from drsync.repo.group import (
    GROUP_SPAN,
    GROUP_TARGET,
    Group,
    group_binding,
    member_views,
    open_group,
    open_group_views,
    seal_group,
)
from drsync.repo.index import (
    BlobLocation,
    Index,
    MemberLocation,
    index_document,
    locations,
    pack_key,
)
from drsync.repo.objects import TYPE_PACK_HEADER, FormatError, header, object_id
from drsync.repo.pack import (
    BLOB_DATA,
    BLOB_GROUP,
    BlobEntry,
    PackBuilder,
    read_pack_header,
    stored_ranges,
)
from drsync.repo.prune import prune
from drsync.repo.reader import coalesce
from drsync.repo.reencrypt import reencrypt
from drsync.repo.retention import RetentionPolicy
from drsync.repo.writer import DeltaEstimator, SnapshotWriter, adopt_orphan_packs
from drsync.store import MemoryStore
from drsync.testing import CountingStore, make_repository, text_like

KiB, MiB = 1 << 10, 1 << 20
BLOCK = 32 * KiB


def _repo(store: MemoryStore | CountingStore | None = None) -> Repository:
    store = store if store is not None else MemoryStore()
    make_repository(store, "test passphrase", config=RepoConfig(
        chunk_avg=64 * KiB, chunk_min=16 * KiB, chunk_max=256 * KiB, pack_size=MiB))
    return Repository.open(store, Secret(passphrase="test passphrase"))


def _relation(size: int, seed: int) -> bytearray:
    """Pages like a table's: compressible rows, some random bytes, every 8 KiB."""
    rows = text_like(size, seed)
    rng = random.Random(seed)
    data = bytearray(rows[:size])
    for page in range(0, size, 8 * KiB):
        data[page:page + 24] = rng.randbytes(24)  # a page header: LSN, checksum
    return data


def _backup(repo: Repository, files: dict[str, bytes], tag: str = "night") -> Snapshot:
    writer = SnapshotWriter(repo, repo.load_index())
    for path, data in files.items():
        writer.add_stream(Entry(path, "file", mode=0o600, size=len(data)), io.BytesIO(data),
                          fixed_size=BLOCK)
    return writer.commit(host="t", source_kind="files", source_spec={}, tags=[tag],
                         summary={}, version="t")


def _restore(repo: Repository, snap: Snapshot) -> dict[str, bytes]:
    with SnapshotReader(repo, repo.load_index()) as reader:
        return {e.path: b"".join(reader.blobs(e.chunks)) for e in reader.entries(snap)}


def _headers(repo: Repository) -> dict[str, list[BlobEntry]]:
    store = repo.store
    return {info.key: read_pack_header(repo.key, store.get(info.key))
            for info in store.list("data/")}


def _groups(repo: Repository) -> list[list[BlobEntry]]:
    return [members for entries in _headers(repo).values()
            for members in stored_ranges(entries) if members[0].blob_type == BLOB_GROUP]


def test_new_chunks_are_sealed_in_groups_and_restore_byte_identical() -> None:
    repo = _repo()
    files = {"base/1/16384": bytes(_relation(3 * MiB + 5000, 1)),
             "base/1/16385": bytes(_relation(200 * KiB, 2))}
    snap = _backup(repo, files)
    assert _restore(repo, snap) == files
    groups = _groups(repo)
    chunks = sum(-(-len(d) // BLOCK) for d in files.values())
    assert sum(len(g) for g in groups) >= chunks - 2  # a file's last chunk may be alone
    assert all(sum(e.raw_length for e in g) <= GROUP_TARGET for g in groups)
    assert {len(g) for g in groups} >= {GROUP_TARGET // BLOCK}
    # Each chunk is still its own blob: every one reads alone, verified.
    index = repo.load_index()
    with SnapshotReader(repo, index) as reader:
        entries = list(reader.entries(snap))
    for entry in entries:
        plain = b"".join(repo.read_blob(bytes.fromhex(h), index.get(bytes.fromhex(h)))
                         for h in entry.chunks)
        assert plain == files[entry.path]


def test_grouped_files_restored_into_a_directory_are_byte_identical(tmp_path: Path) -> None:
    """The restore into a directory writes each member straight from the group's
    plaintext (a view, not a copy), at every place it goes: a file, and a copy of it
    whose chunks are the same blobs."""
    from drsync.restore import restore_snapshot

    repo = _repo()
    files = {"base/1/16384": bytes(_relation(2 * MiB + 5000, 3)),
             "base/1/16385": bytes(_relation(300 * KiB, 4))}
    files["base/1/copy"] = files["base/1/16384"]
    _backup(repo, files)
    assert _groups(repo)
    result = restore_snapshot(repo, "latest", target=tmp_path / "out")
    assert {p: (tmp_path / "out" / p).read_bytes() for p in files} == files
    assert result.bytes_written == sum(len(d) for d in files.values())


def test_groups_store_fewer_bytes_than_chunks_sealed_alone(tmp_path: Path) -> None:
    sample.generate(tmp_path / "m.db", size_mb=2)
    data = (tmp_path / "m.db").read_bytes()
    grouped, alone = _repo(), _repo()
    _backup(grouped, {"m.db": data})
    writer = SnapshotWriter(alone, alone.load_index(), group_target=0)
    writer.add_stream(Entry("m.db", "file", mode=0o600, size=len(data)), io.BytesIO(data),
                      fixed_size=BLOCK)
    writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                  version="t")
    assert not _groups(alone) and _groups(grouped)
    packs = {name: sum(info.size for info in repo.store.list("data/"))
             for name, repo in (("grouped", grouped), ("alone", alone))}
    assert packs["grouped"] < 0.95 * packs["alone"], packs
    assert _restore(grouped, grouped.snapshots()[0]) == {"m.db": data}


def test_a_second_backup_stores_only_the_changed_chunks_grouped_together() -> None:
    repo = _repo()
    data = _relation(8 * MiB, 4)
    first = _backup(repo, {"rel": bytes(data)})
    before = {info.key for info in repo.store.list("data/")}
    rng = random.Random(5)
    changed = sorted(rng.sample(range(len(data) // BLOCK), len(data) // BLOCK // 100 + 1))
    for block in changed:  # 1% of the chunks: one page in each
        at = block * BLOCK + 3 * 8 * KiB + 100
        data[at:at + 50] = rng.randbytes(50)
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("rel", "file", mode=0o600, size=len(data)), io.BytesIO(data),
                      fixed_size=BLOCK)
    second = writer.commit(host="t", source_kind="files", source_spec={}, tags=[],
                           summary={}, version="t")
    assert writer.stats.chunks_new == len(changed) + 1  # and one tree blob
    new_packs = {info.key for info in repo.store.list("data/")} - before
    new_entries = [e for key in new_packs
                   for e in read_pack_header(repo.key, repo.store.get(key))]
    assert sorted(e.blob_id for e in new_entries if e.blob_type != 1) == sorted(
        repo.key.chunk_id(bytes(data[b * BLOCK:(b + 1) * BLOCK])) for b in changed)
    assert any(e.blob_type == BLOB_GROUP for e in new_entries)  # grouped with each other
    assert _restore(repo, second) == {"rel": bytes(data)}
    assert _restore(repo, first)["rel"] != bytes(data)


def test_planned_reads_open_each_group_once() -> None:
    store = CountingStore(MemoryStore(), connections=2)
    repo = _repo(store)
    files = {"rel": bytes(_relation(2 * MiB, 6))}
    snap = _backup(repo, files)
    with SnapshotReader(repo, repo.load_index()) as reader:
        (entry,) = list(reader.entries(snap))
        opened = reader.stats.opened
        assert b"".join(reader.blobs(entry.chunks)) == files["rel"]
        ranges = reader.stats.opened - opened
        assert reader.stats.blobs - len(snap.tree) == len(entry.chunks)
    assert ranges == -(-len(entry.chunks) // (GROUP_TARGET // BLOCK))


def test_the_seal_binds_the_members_in_order() -> None:
    repo = _repo()
    key = repo.key
    chunks = [bytes(_relation(BLOCK, n)) for n in range(4)]
    members = [(key.chunk_id(c), c) for c in chunks]
    sealed = seal_group(key, members, 3)
    ids = [m[0] for m in members]
    group = Group(ids, [BLOCK] * 4)
    assert [p for _id, p in open_group(key, group, sealed)] == chunks
    with pytest.raises(Exception, match="authentication failed"):
        open_group(key, Group([ids[1], ids[0], *ids[2:]], [BLOCK] * 4), sealed)
    with pytest.raises(Exception, match="authentication failed"):
        open_group(key, Group(ids[:3], [BLOCK] * 3), sealed)
    assert group_binding(key, ids) not in ids


def test_member_views_are_verified_read_only_views_of_the_group() -> None:
    """A restore's writes get each member as a view of the group's plaintext (no copy):
    the same bytes as the copies, read-only, and checked against their ids first."""
    key = _repo().key
    chunks = [bytes(_relation(BLOCK, n)) for n in range(4)]
    members = [(key.chunk_id(c), c) for c in chunks]
    group = Group([m[0] for m in members], [BLOCK] * 4)
    views = open_group_views(key, group, seal_group(key, members, 3))
    assert [(i, bytes(v)) for i, v in views] == members == open_group(
        key, group, seal_group(key, members, 3))
    assert all(isinstance(v, memoryview) and v.readonly for _i, v in views)
    flipped = bytearray(b"".join(chunks))
    flipped[2 * BLOCK + 7] ^= 1
    with pytest.raises(SealError, match=f"member {members[2][0].hex()[:16]} at {2 * BLOCK}"):
        member_views(key, group, bytes(flipped))


def test_a_group_swapped_into_another_group_s_entries_fails_authentication() -> None:
    """A pack whose header (sealed by the key holder, e.g. a buggy writer) points two
    groups' entries at each other's bytes: each read fails, nothing wrong is handed out."""
    repo = _repo()
    key = repo.key
    chunks = [bytes(_relation(BLOCK, n)) for n in range(4)]
    a = [(key.chunk_id(c), c) for c in chunks[:2]]
    b = [(key.chunk_id(c), c) for c in chunks[2:]]
    builder = PackBuilder(key)
    builder.add_group([(i, len(c)) for i, c in a], seal_group(key, a, 3))
    builder.add_group([(i, len(c)) for i, c in b], seal_group(key, b, 3))
    entries = builder.entries
    swapped = [BlobEntry(e.blob_type, e.blob_id, other.offset, other.length, e.raw_length)
               for e, other in zip(entries, entries[2:] + entries[:2], strict=True)]
    _pack_id, data = builder.finish()
    body = data[:-4 - _sealed_header_length(data)]
    table = b"".join(_entry_bytes(e) for e in swapped)
    sealed = key.seal(table, CODEC_RAW, header(TYPE_PACK_HEADER))
    forged = body + sealed + len(sealed).to_bytes(4, "little")
    forged_id = object_id(forged)
    repo.store.put(pack_key(forged_id), forged)
    index = Index()
    index.add_pack(forged_id, len(forged), read_pack_header(key, forged))
    for blob_id, _data in a + b:
        with pytest.raises(IntegrityError, match="group of 2 blobs"):
            repo.read_blob(blob_id, index.get(blob_id))  # type: ignore[arg-type]


def _sealed_header_length(pack: bytes) -> int:
    return int.from_bytes(pack[-4:], "little")


def _entry_bytes(e: BlobEntry) -> bytes:
    return (bytes([e.blob_type]) + e.blob_id + e.offset.to_bytes(4, "little")
            + e.length.to_bytes(4, "little") + e.raw_length.to_bytes(4, "little"))


def test_stored_ranges_refuse_what_breaks_the_rules() -> None:
    one = bytes(32)
    two = bytes([1]) * 32
    ok = [BlobEntry(BLOB_GROUP, one, 6, 100, 10), BlobEntry(BLOB_GROUP, two, 6, 100, 10),
          BlobEntry(BLOB_DATA, bytes([2]) * 32, 106, 50, 50)]
    assert [len(r) for r in stored_ranges(ok)] == [2, 1]
    cases = {
        "one member": [BlobEntry(BLOB_GROUP, one, 6, 100, 10)],
        "not consecutive": [*ok, BlobEntry(BLOB_GROUP, bytes([3]) * 32, 6, 100, 10),
                            BlobEntry(BLOB_GROUP, bytes([4]) * 32, 6, 100, 10)],
        "different lengths": [ok[0], BlobEntry(BLOB_GROUP, two, 6, 99, 10)],
        "unknown type": [BlobEntry(7, one, 6, 100, 10)],
    }
    for why, entries in cases.items():
        with pytest.raises(ValueError, match=why):
            list(stored_ranges(entries))
    # An index document breaking them is refused whole (load_index skips that file).
    with pytest.raises(ValueError, match="one member"):
        Index().merge_document(index_document([("a" * 64, 200, cases["one member"])]))
    locs = dict(locations("a" * 64, ok))
    assert (locs[two].group, locs[two].inner_offset) == (locs[one].group, 10)


def test_check_read_data_names_every_member_and_snapshot_of_a_damaged_group() -> None:
    repo = _repo()
    files = {"rel": bytes(_relation(2 * MiB, 7))}
    snap = _backup(repo, files)
    other = _backup(repo, {"copy": files["rel"][:4 * BLOCK]}, tag="copy")  # shares 1 group
    assert check_repository(repo, read_data=True).ok
    head = repo.key.chunk_id(files["rel"][:BLOCK])
    key, group = next((k, m) for k, e in _headers(repo).items() for m in stored_ranges(e)
                      if head in {x.blob_id for x in m})
    assert group[0].blob_type == BLOB_GROUP
    store = repo.store
    assert isinstance(store, MemoryStore)
    damaged = bytearray(store.objects[key])
    damaged[group[0].offset + 40] ^= 1
    store.objects[key] = bytes(damaged)
    report = check_repository(repo, read_data=True)
    (line,) = [e for e in report.errors if "offset" in e]
    assert f"object {key} offset {group[0].offset}: group of {len(group)} blobs" in line
    assert all(e.blob_id.hex()[:16] in line for e in group)
    cannot = [e for e in report.errors if "cannot be fully restored" in e]
    assert any(snap.short_id in e and f"{len(group)} blobs in damaged pack" in e
               for e in cannot), report.errors
    assert any(other.short_id in e and "4 blobs in damaged pack" in e for e in cannot)
    with pytest.raises(IntegrityError, match=f"{key} offset {group[0].offset}"):
        _restore(repo, snap)


def test_prune_rewrites_a_group_with_dead_members_keeping_the_live_ones() -> None:
    repo = _repo()
    data = _relation(2 * MiB, 8)
    before = bytes(data)
    per = GROUP_TARGET // BLOCK
    _backup(repo, {"rel": before}, tag="old")
    for block in range(0, len(data) // BLOCK, per):  # one member of every group changes
        data[block * BLOCK + 5000] ^= 0xFF
    new = _backup(repo, {"rel": bytes(data)}, tag="new")
    forget(repo, RetentionPolicy(keep_last=1))
    assert [s.id for s in repo.snapshots()] == [new.id]
    report = prune(repo, max_unused=0.0)
    assert report.packs_repacked + report.packs_deleted >= 1 and report.packs_written >= 1
    assert _restore(repo, repo.load_snapshot(new.id)) == {"rel": bytes(data)}
    check = check_repository(repo, read_data=True)
    assert check.ok, check.errors
    indexed = {blob_id for blob_id, _loc in repo.load_index().items()}
    live = {repo.key.chunk_id(c) for c in _chunks_of(bytes(data))}
    dead = {repo.key.chunk_id(c) for c in _chunks_of(before)} - live
    assert live <= indexed and len(dead) == len(data) // BLOCK // per and not dead & indexed
    regrouped = [g for g in _groups(repo) if len(g) == per - 1]
    assert len(regrouped) == len(dead)  # each old group's live members, sealed together
    assert prune(repo, max_unused=0.0, dry_run=True).bytes_unused == 0


def _chunks_of(data: bytes) -> list[bytes]:
    return [data[n:n + BLOCK] for n in range(0, len(data), BLOCK)]


def test_packs_no_index_names_are_adopted_with_their_groups() -> None:
    repo = _repo()
    files = {"rel": bytes(_relation(2 * MiB, 9))}
    snap = _backup(repo, files)
    store = repo.store
    for info in list(store.list("index/")):
        store.delete(info.key)
    index = repo.load_index()
    assert adopt_orphan_packs(repo, index) >= 1
    fresh = repo.load_index()
    assert fresh.get(repo.key.chunk_id(files["rel"][BLOCK:2 * BLOCK])).group is not None  # type: ignore[union-attr]
    assert _restore(repo, snap) == files
    assert check_repository(repo, read_data=True).ok


def test_reencrypt_reseals_groups_under_the_new_generation(tmp_path: Path) -> None:
    store = MemoryStore("memory://tenant")
    make_repository(store, None, tmp_path / "agent.key", config=RepoConfig(
        chunk_avg=64 * KiB, chunk_min=16 * KiB, chunk_max=256 * KiB, pack_size=MiB))
    agent = KeyFile.load(tmp_path / "agent.key")
    repo = Repository.open(store, Secret(key_file=agent))
    files = {"rel": bytes(_relation(2 * MiB, 10))}
    snap = _backup(repo, files)
    leaked = repo.key
    repo.rotate(Secret(key_file=agent))
    repo = Repository.open(store, Secret(key_file=agent))
    assert reencrypt(repo).packs_rewritten >= 1
    for name, data in store.objects.items():
        if name.startswith("data/"):
            with pytest.raises(FormatError):
                read_pack_header(leaked, data)
    assert _groups(repo)
    assert _restore(repo, snap) == files
    assert check_repository(repo, read_data=True).ok


def test_the_dry_run_estimate_counts_groups_as_stored() -> None:
    data = {"rel": bytes(_relation(3 * MiB, 11))}
    repo = _repo()
    estimator = DeltaEstimator(repo, repo.load_index())
    estimator.add_stream(Entry("rel", "file", mode=0o600, size=3 * MiB),
                         io.BytesIO(data["rel"]), fixed_size=BLOCK)
    estimate = estimator.finish()
    assert estimator.new_raw_bytes >= 3 * MiB
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("rel", "file", mode=0o600, size=3 * MiB),
                      io.BytesIO(data["rel"]), fixed_size=BLOCK)
    writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                  version="t")
    packs = sum(info.size for info in repo.store.list("data/"))
    assert 0.9 * packs < estimate < 1.1 * packs, (estimate, packs)


class _Failing(io.RawIOBase):
    """A file that reads ``data`` and then fails, as a vanished or unreadable file does."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self._data.readinto(buf)
        if not n:
            raise OSError(5, "Input/output error")
        return n


def test_chunks_of_a_stream_that_failed_half_way_are_stored_for_the_streams_after_it() -> None:
    """The failed stream's entry is dropped, but its new chunks were accepted (a later
    stream dedups against them): they must still be sealed and stored."""
    repo = _repo()
    data = bytes(_relation(6 * BLOCK, 12))
    writer = SnapshotWriter(repo, repo.load_index())
    with pytest.raises(OSError):
        writer.add_stream(Entry("gone", "file", mode=0o600, size=len(data)),
                          _Failing(data[:3 * BLOCK]), fixed_size=BLOCK)  # type: ignore[arg-type]
    writer.add_stream(Entry("dump", "stream"), io.BytesIO(b"x" * 1000))
    writer.add_stream(Entry("rel", "file", mode=0o600, size=len(data)), io.BytesIO(data),
                      fixed_size=BLOCK)
    snap = writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                         version="t")
    assert _restore(repo, snap) == {"dump": b"x" * 1000, "rel": data}
    assert check_repository(repo, read_data=True).ok


def test_a_group_spans_at_most_group_span_bytes_of_its_file() -> None:
    """Sparse changes far apart are not grouped: a restore's window (refilled at half)
    then opens each group at most twice."""
    repo = _repo()
    data = bytearray(GROUP_SPAN + 4 * MiB)  # zero pages: one chunk, stored once
    _backup(repo, {"rel": bytes(data)})
    far = GROUP_SPAN + BLOCK
    for at in (0, far, far + BLOCK):
        data[at:at + 8] = random.Random(at).randbytes(8)
    index = repo.load_index()
    writer = SnapshotWriter(repo, index)
    writer.add_stream(Entry("rel", "file", mode=0o600, size=len(data)), io.BytesIO(data),
                      fixed_size=BLOCK)
    snap = writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                         version="t")
    fresh = repo.load_index()
    first = fresh.get(repo.key.chunk_id(bytes(data[:BLOCK])))
    pair = [fresh.get(repo.key.chunk_id(bytes(data[at:at + BLOCK]))) for at in (far, far + BLOCK)]
    assert first is not None and first.group is None and first.blob_type == BLOB_DATA
    assert pair[0] is not None and pair[0].group is not None and len(pair[0].group) == 2
    assert _restore(repo, snap) == {"rel": bytes(data)}


def test_members_of_one_group_are_one_range_to_fetch() -> None:
    """The reader's range planning counts a group's bytes once, not once per member: a
    group far from the other blob needed is fetched apart, the hole between not read."""
    group = Group([bytes([n]) * 32 for n in range(8)], [BLOCK] * 8)
    wanted = [(blob_id, MemberLocation("p" * 64, BLOB_GROUP, 3 * MiB, MiB, BLOCK, group, n),
               Future()) for n, blob_id in enumerate(group.ids)]
    single = (bytes([9]) * 32, BlobLocation("p" * 64, BLOB_DATA, 0, 100, BLOCK), Future())
    ranges = coalesce([single, *wanted], gap=MiB)
    assert [(r.start, r.end, len(r.blobs)) for r in ranges] == [
        (0, 100, 1), (3 * MiB, 4 * MiB, 8)]


class _RecordingSink:
    """A file being restored, in memory: what was put where, and how many puts."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.puts: list[tuple[int, int]] = []
        self.finished = False

    def put(self, offset: int, data: bytes | memoryview) -> None:
        assert not self.finished
        self.data[offset:offset + len(data)] = data
        self.puts.append((offset, len(data)))

    def done(self) -> None:
        self.finished = True


def test_deliver_writes_each_run_of_a_group_s_members_with_one_put() -> None:
    """A group's members that follow one another in the group and in a file are one
    write; a block repeated in a file, or shared by two files, still reaches every
    offset it belongs at, and every byte of both files is right."""
    repo = _repo()
    rel = _relation(3 * MiB, 7)
    zero = bytes(BLOCK)
    for at in (5, 6, 40, 77):  # the same (empty) page at four offsets
        rel[at * BLOCK:(at + 1) * BLOCK] = zero
    first = bytes(rel)
    second = first[:MiB] + bytes(_relation(MiB, 8)) + first[:MiB]  # shares blocks with both
    files = {"a": first, "b": second}
    snap = _backup(repo, files)
    with SnapshotReader(repo, repo.load_index()) as reader:
        entries = {e.path: e for e in reader.entries(snap)}
        sinks = {path: _RecordingSink(len(data)) for path, data in files.items()}
        lengths = {cid: reader.chunk_length(cid) for e in entries.values() for cid in e.chunks}

        def chunks(path: str) -> list[tuple[str, int]]:
            out, at = [], 0
            for cid in entries[path].chunks:
                out.append((cid, at))
                at += lengths[cid]
            return out

        reader.deliver([(sinks[p], chunks(p)) for p in files])
    for path, data in files.items():
        sink = sinks[path]
        assert sink.finished and bytes(sink.data) == data, path
        assert sum(length for _at, length in sink.puts) == len(data)  # each byte once
    blocks = len(first) // BLOCK
    # Runs, not blocks: a's groups each came in a handful of writes.
    assert len(sinks["a"].puts) <= blocks // 4
    assert max(length for _at, length in sinks["a"].puts) > BLOCK


# -- a regular file is read by the workers, a run at a time, at its offset -------------

RUN = GROUP_TARGET // BLOCK * BLOCK


def _backup_file(repo: Repository, path: Path, writer: SnapshotWriter | None = None,
                 *, buffered: bool = False) -> Snapshot:
    writer = writer or SnapshotWriter(repo, repo.load_index())
    with open(path, "rb", buffering=-1 if buffered else 0) as fh:
        writer.add_stream(Entry("rel", "file", mode=0o600, size=path.stat().st_size), fh,
                          fixed_size=BLOCK)
    return writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                         version="t")


def test_a_file_read_at_offsets_stores_what_a_stream_of_it_stores(tmp_path: Path) -> None:
    """The same bytes from a file (read by the workers at offsets, raw or buffered) and
    from a stream (read in order here) give the same chunks; each run of new chunks is
    one group of GROUP_TARGET bytes."""
    data = bytes(_relation(3 * RUN + 5 * BLOCK + 1000, 21))
    (tmp_path / "rel").write_bytes(data)
    repo = _repo()
    snaps = [_backup_file(repo, tmp_path / "rel")]
    assert sorted(len(g) for g in _groups(repo)) == [6, 16, 16, 16]  # the last: 5 and 1000 B
    snaps.append(_backup_file(repo, tmp_path / "rel", buffered=True))
    snaps.append(_backup(repo, {"rel": data}))
    with SnapshotReader(repo, repo.load_index()) as reader:
        chunks = [[e.chunks for e in reader.entries(snap)] for snap in snaps]
    assert chunks[0] == chunks[1] == chunks[2]
    assert len(chunks[0][0]) == 3 * 16 + 6
    assert all(_restore(repo, snap) == {"rel": data} for snap in snaps)


class _Hooked(SnapshotWriter):
    """A writer whose worker calls ``after(at)`` once it has read the run at ``at``."""

    def __init__(self, repo: Repository, after: Any) -> None:
        super().__init__(repo, repo.load_index(), workers=1)  # runs read in file order
        self._after = after

    def _read_run(self, fd: int, at: int, run: int, size: int) -> Any:
        result = super()._read_run(fd, at, run, size)
        self._after(at)
        return result


def test_a_file_that_shrinks_while_it_is_read_ends_at_its_short_read(tmp_path: Path) -> None:
    """Runs are read at their offsets, ahead of each other: once one is read short (the
    file was truncated), nothing read after it may follow it, even when the file grew
    back before the next run was read (its bytes belong further on)."""
    path = tmp_path / "rel"
    before = bytes(_relation(5 * RUN, 22))
    path.write_bytes(before)
    after = bytes(_relation(5 * RUN, 23))

    def change(at: int) -> None:
        if at == 0:
            with open(path, "r+b") as fh:
                fh.truncate(2 * RUN + RUN // 2)  # a vacuum truncating the relation
        elif at == 2 * RUN:
            path.write_bytes(after)  # and it grew again

    repo = _repo()
    snap = _backup_file(repo, path, _Hooked(repo, change))
    assert _restore(repo, snap) == {"rel": before[:2 * RUN + RUN // 2]}
    with SnapshotReader(repo, repo.load_index()) as reader:
        (entry,) = reader.entries(snap)
    assert entry.size == 2 * RUN + RUN // 2


def test_a_file_that_grows_while_it_is_read_is_read_to_its_new_end(tmp_path: Path) -> None:
    path = tmp_path / "rel"
    data = bytes(_relation(2 * RUN, 24))
    path.write_bytes(data)
    more = bytes(_relation(RUN + 3 * BLOCK, 25))

    def grow(at: int) -> None:
        if at == RUN:  # the last run the file had when its reading started
            with open(path, "ab") as fh:
                fh.write(more)

    repo = _repo()
    snap = _backup_file(repo, path, _Hooked(repo, grow))
    assert _restore(repo, snap) == {"rel": data + more}


def test_a_file_whose_run_fails_to_read_raises_and_leaves_no_read_behind(
        tmp_path: Path) -> None:
    """An error reading one run (EIO on a bad sector) is the stream's error, raised
    once every run still being read has stopped (none reads a descriptor closed)."""
    path = tmp_path / "rel"
    path.write_bytes(bytes(_relation(6 * RUN, 26)))
    reads: list[int] = []

    def fail(at: int) -> None:
        reads.append(at)
        if at == 2 * RUN:
            raise OSError(5, "Input/output error")

    repo = _repo()
    writer = _Hooked(repo, fail)
    with open(path, "rb", buffering=0) as fh, pytest.raises(OSError, match="Input/output"):
        writer.add_stream(Entry("rel", "file", mode=0o600, size=6 * RUN), fh,
                          fixed_size=BLOCK)
    done = list(reads)
    writer.add_stream(Entry("dump", "stream"), io.BytesIO(b"y" * 1000))
    snap = writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                         version="t")
    assert reads == done  # nothing read the file after add_stream returned
    assert _restore(repo, snap) == {"dump": b"y" * 1000}

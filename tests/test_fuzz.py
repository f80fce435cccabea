"""Bad input never gives a traceback: hypothesis over every parser of untrusted bytes.

Each parser gets random bytes, mutations of a valid input (flipped bytes,
truncations, insertions, deletions) and, for sealed objects, documents that
are sealed with the right key, so they authenticate, but whose JSON is the
wrong shape. Whatever the input, only a ``DrsyncError`` may escape, with one
line that names the file or object. The examples are derandomized and
bounded so the whole module takes seconds.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drsync.errors import DrsyncError, WrongKey
from drsync.pgrestore import pitr_range
from drsync.plan import (
    fleet_from_dict,
    load_fleet,
    load_schedule,
    plan_fleet,
    read_history_csv,
    schedule_file,
)
from drsync.plan.fleetfile import apply_overrides
from drsync.repo.crypto import CODEC_RAW, CODEC_ZSTD, MasterKey
from drsync.repo.index import index_document, pack_key
from drsync.repo.keys import KdfParams, KeyFile, Secret, unwrap, wrap
from drsync.repo.lock import LOCK_KEY, read_lock
from drsync.repo.objects import (
    TYPE_CONFIG,
    TYPE_INDEX,
    TYPE_KEY,
    TYPE_LOCK,
    TYPE_PACK,
    TYPE_PACK_HEADER,
    TYPE_SNAPSHOT,
    header,
    object_id,
    seal_document,
)
from drsync.repo.pack import (
    BLOB_DATA,
    BLOB_TREE,
    BlobEntry,
    PackBuilder,
    parse_pack_header,
    read_pack_header,
)
from drsync.repo.reader import SnapshotReader
from drsync.repo.repository import CONFIG_KEY, RepoConfig, Repository
from drsync.repo.resume import verified_pack_entries
from drsync.repo.snapshot import Entry, Snapshot
from drsync.repo.wal import TYPE_WAL, open_wal, parse_wal_header, seal_wal, wal_key
from drsync.settings import load_settings
from drsync.store import MemoryStore
from drsync.wal.push import push_file
from drsync.wal.ship import fetch_file, ship_spool
from drsync.wal.spool import Spool

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DISK = settings(FUZZ, max_examples=200)  # each example writes and fsyncs a spool
KEY = MasterKey(bytes(range(64)))
FAST = KdfParams(n=1 << 4, r=1, p=1)
REPO_ID = "0123456789abcdef0123456789abcdef"
KEY_ID = "fedcba9876543210fedcba9876543210"
SEG = "000000010000000000000007"


def refused(call: Callable[[], object], *names: str,
            unnamed: tuple[type[DrsyncError], ...] = ()) -> None:
    """``call`` may succeed; if it fails, only as a DrsyncError of one line naming ``names``
    (errors of the ``unnamed`` types need not: a wrong key is not a damaged object).

    Any other exception propagates, and hypothesis reports it with its input."""
    try:
        call()
    except DrsyncError as err:
        text = str(err)
        assert text and "\n" not in text, repr(text)
        if not isinstance(err, unnamed):
            for name in names:
                assert name in text, (name, text)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="drsync-fuzz-") as tmp:
        yield Path(tmp)


# -- inputs -------------------------------------------------------------------------------

def mutated(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` with a few bytes flipped, inserted or deleted, or cut short."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[at] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del data[at:]
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[at : at + draw(st.integers(1, 16))]
        return bytes(data)

    return build()


# The values that break naive parsers: infinities (int() overflows), huge integers, negative
# sizes, empty and non-hex strings.
SPECIAL = st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300, 2**64, -1, 0, "",
                           "zz" * 32, "../x", "\n"])
json_values = st.recursive(
    SPECIAL | st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


def perturbed(doc: Any) -> st.SearchStrategy[Any]:
    """``doc`` with one value somewhere inside replaced, or one key removed: the
    near-misses a wrong-shaped document is made of."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        copy = json.loads(json.dumps(doc))
        holder: Any = None
        key: Any = None
        node = copy
        # Mostly one field of the document; sometimes deeper, sometimes the whole of it.
        while isinstance(node, dict | list) and node and (
                (holder is None and draw(st.integers(0, 9))) or draw(st.booleans())):
            holder = node
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                       else range(len(node))))
            node = node[key]
        if holder is None:
            return draw(json_values)
        if isinstance(holder, dict) and not draw(st.integers(0, 3)):
            del holder[key]
        else:
            holder[key] = draw(st.one_of(SPECIAL, json_values))
        return copy

    return build()


def either(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(*strategies)


def toml_text(value: Any) -> str:
    """A TOML rendering of ``value`` (inline tables, arrays, scalars)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items()) + "}"
    return '""'  # TOML has no null


def toml_document(doc: dict[str, Any]) -> bytes:
    return "\n".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in doc.items()).encode()


# -- config ---------------------------------------------------------------------------------

CONFIG_EXAMPLES = [(ROOT / "config" / n).read_bytes()
                   for n in ("agent.example.toml", "s3.example.toml")]
CONFIG_DOCS = [tomllib.loads(b.decode()) for b in CONFIG_EXAMPLES]


@FUZZ
@given(data=either(st.binary(max_size=300), *(mutated(b) for b in CONFIG_EXAMPLES),
                   *(perturbed(d).map(lambda d: toml_document(d) if isinstance(d, dict)
                                      else toml_text(d).encode()) for d in CONFIG_DOCS)))
def test_config_file(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "drsync.toml"
        path.write_bytes(data)
        refused(lambda: load_settings(str(path)), str(path))


# -- fleet and schedule --------------------------------------------------------------------

FLEET_FILES = sorted((ROOT / "config" / "examples").glob("*.toml"))
FLEET_DOCS = [tomllib.loads(p.read_text()) for p in FLEET_FILES]


@FUZZ
@given(data=either(st.binary(max_size=300), *(mutated(p.read_bytes()) for p in FLEET_FILES)))
def test_fleet_file(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "fleet.toml"
        path.write_bytes(data)
        refused(lambda: plan_fleet(load_fleet(path)), str(path))


@FUZZ
@given(raw=either(*(perturbed(d) for d in FLEET_DOCS)),
       overrides=st.lists(st.text(max_size=30), max_size=2))
def test_fleet_tables_and_overrides(raw: Any, overrides: list[str]) -> None:
    def plan() -> None:
        if not isinstance(raw, dict):
            fleet_from_dict({"fleet": raw}, source="fleet.toml")
        plan_fleet(fleet_from_dict(raw, "fleet.toml", apply_overrides(raw, overrides)))

    refused(plan)


HISTORY = (b"tenant,date,bytes_in,bytes_out,prep_s,send_s\n"
           b"Nobeoka,2026-11-27,300000000,33000000,750.5,138.9\n"
           b"Nobeoka,2026-11-28,310000000,34000000,760.0,140.0\n")


@FUZZ
@given(data=either(st.binary(max_size=200), mutated(HISTORY)))
def test_plan_history_csv(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "history.csv"
        path.write_bytes(data)
        refused(lambda: read_history_csv(path), str(path))


SCHEDULE = schedule_file(plan_fleet(load_fleet(FLEET_FILES[0])))


@FUZZ
@given(data=either(st.binary(max_size=300), mutated(json.dumps(SCHEDULE, indent=1).encode()),
                   perturbed(SCHEDULE).map(lambda d: json.dumps(d).encode())))
def test_schedule_file(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "schedule.json"
        path.write_bytes(data)
        refused(lambda: load_schedule(path), str(path))


def test_schedule_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(SCHEDULE))
    assert load_schedule(path) == SCHEDULE


# -- sealed documents ------------------------------------------------------------------------

def sealed_payloads(kind: bytes) -> st.SearchStrategy[bytes]:
    """Authentic objects of ``kind`` whose payload is anything: bad codecs, bad zstd,
    bad UTF-8, bad or absurdly nested JSON."""
    head = header(kind)
    payload = either(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode()),
                     st.integers(1, 5000).map(lambda n: b"[" * n * 40))
    return st.tuples(st.sampled_from([CODEC_RAW, CODEC_ZSTD, 2, 255]), payload).map(
        lambda cp: head + KEY.seal(cp[1], cp[0], head))


def documents(kind: bytes, valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    sealed = seal_document(KEY, kind, valid)
    return either(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: header(kind) + b),
        mutated(sealed),
        sealed_payloads(kind),
        perturbed(valid).map(lambda d: seal_document(KEY, kind, d) if isinstance(d, dict)
                             else seal_document(KEY, kind, {"packs": d, "tree": d})),
        st.dictionaries(st.text(max_size=10), json_values, max_size=6).map(
            lambda d: seal_document(KEY, kind, d)),
    )


def memory_repo() -> Repository:
    return Repository(MemoryStore(), KEY, RepoConfig(id=REPO_ID))


def store_named(repo: Repository, prefix: str, data: bytes) -> str:
    name = f"{prefix}/{object_id(data)}"
    repo.store.put(name, data)
    return name


def tree_blob(repo: Repository, data: bytes) -> str:
    """Store ``data`` as an authentic tree blob (pack + index); return its id in hex."""
    blob_id = KEY.chunk_id(data)
    builder = PackBuilder(KEY)
    builder.add(BLOB_TREE, blob_id, KEY.seal_chunk(data, blob_id, 3), len(data))
    pack_id, pack = builder.finish()
    repo.store.put(pack_key(pack_id), pack)
    repo.save_document(TYPE_INDEX, "index", index_document([(pack_id, len(pack),
                                                              builder.entries)]))
    return blob_id.hex()


ENTRY = Entry("etc/hosts", "file", 0o644, 1_700_000_000_000_000_000, 10, "", ["ab" * 32])
SNAPSHOT = Snapshot("2026-11-28T01:00:00Z", "2026-11-28T00:59:00Z", "registry-db-1", "files",
                    {"paths": ["/etc"]}, ["cd" * 32], ["nightly"], {"files": 1}, "0.1.0")


@FUZZ
@given(data=documents(TYPE_SNAPSHOT, SNAPSHOT.to_doc()))
def test_snapshot_document(data: bytes) -> None:
    repo = memory_repo()
    name = store_named(repo, "snapshots", data)
    snapshot_id = name.removeprefix("snapshots/")
    refused(lambda: repo.load_snapshot(snapshot_id), name)

    def restore() -> None:  # a snapshot that loads is one a restore walks: its tree ids too
        with SnapshotReader(repo, workers=1) as reader:
            list(reader.entries(repo.load_snapshot(snapshot_id)))

    refused(restore)


@FUZZ
@given(line=either(perturbed(ENTRY.to_doc()).map(lambda d: json.dumps(d).encode()),
                   mutated(json.dumps(ENTRY.to_doc()).encode()), st.binary(max_size=80)))
def test_snapshot_tree_entry(line: bytes) -> None:
    """A tree whose blob authenticates but whose lines are wrong: named by snapshot."""
    repo = memory_repo()
    snap = Snapshot(**{**SNAPSHOT.__dict__, "tree": [tree_blob(repo, line + b"\n")]})
    snap.id, _ = repo.save_document(TYPE_SNAPSHOT, "snapshots", snap.to_doc())

    def read() -> None:
        with SnapshotReader(repo, workers=1) as reader:
            list(reader.entries(repo.load_snapshot(snap.id)))

    refused(read, f"snapshot {snap.short_id}")


INDEX = index_document([("ef" * 32, 4096, [BlobEntry(BLOB_DATA, bytes(32), 6, 100, 80),
                                            BlobEntry(BLOB_TREE, bytes([1]) * 32, 106, 50, 40)])])


@FUZZ
@given(data=documents(TYPE_INDEX, INDEX))
def test_index_document(data: bytes) -> None:
    repo = memory_repo()
    name = store_named(repo, "index", data)
    refused(repo.load_index, name)


CONFIG_DOC = RepoConfig(id=REPO_ID).to_doc()


@FUZZ
@given(data=documents(TYPE_CONFIG, CONFIG_DOC))
def test_repository_config_document(data: bytes) -> None:
    store = MemoryStore()
    kf = KeyFile(REPO_ID, KEY_ID, bytes(32))
    store.put(f"keys/{KEY_ID}", wrap(KEY, REPO_ID, KEY_ID, key_file=kf))
    store.put(CONFIG_KEY, data)
    refused(lambda: Repository.open(store, Secret(key_file=kf)), "config")


# -- packs ---------------------------------------------------------------------------------

def _pack() -> bytes:
    builder = PackBuilder(KEY)
    for i in range(3):
        chunk = bytes([i]) * 100
        blob_id = KEY.chunk_id(chunk)
        builder.add(BLOB_DATA, blob_id, KEY.seal_chunk(chunk, blob_id, 3), len(chunk))
    return builder.finish()[1]


PACK = _pack()


def sealed_tables() -> st.SearchStrategy[bytes]:
    """Packs whose header authenticates but lists impossible entries."""
    entry = st.tuples(st.integers(0, 255), st.binary(min_size=32, max_size=32),
                      *(st.integers(0, 2**32 - 1) for _ in range(3)))
    table = either(st.binary(max_size=100), st.lists(entry, max_size=4).map(
        lambda es: b"".join(struct.pack("<B32sIII", *e) for e in es)))

    def pack(args: tuple[bytes, bytes]) -> bytes:
        body, tab = args
        sealed = KEY.seal(tab, CODEC_RAW, header(TYPE_PACK_HEADER))
        return header(TYPE_PACK) + body + sealed + struct.pack("<I", len(sealed))

    return st.tuples(st.binary(max_size=300), table).map(pack)


@FUZZ
@given(data=either(st.binary(max_size=200), mutated(PACK), sealed_tables()),
       size=st.integers(-10, 1 << 40))
def test_pack_header(data: bytes, size: int) -> None:
    refused(lambda: read_pack_header(KEY, data))
    refused(lambda: parse_pack_header(KEY, data, size))
    refused(lambda: parse_pack_header(KEY, data[-40:], size))
    store = MemoryStore()
    store.put(pack_key(object_id(data)), data)
    refused(lambda: verified_pack_entries(store, KEY, pack_key(object_id(data)), object_id(data),
                                          len(data)))


# -- keys ----------------------------------------------------------------------------------

KEY_FILE = KeyFile(REPO_ID, KEY_ID, bytes(range(32)))


@FUZZ
@given(data=either(st.binary(max_size=120), mutated(KEY_FILE.dumps().encode()),
                   st.lists(st.text(max_size=40), max_size=5).map(lambda p: " ".join(p).encode())))
def test_key_file(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "agent.key"
        path.write_bytes(data)
        refused(lambda: KeyFile.load(path), str(path))


PASS_WRAPPING = wrap(KEY, REPO_ID, KEY_ID, passphrase="pw", kdf=FAST)
FILE_WRAPPING = wrap(KEY, REPO_ID, KEY_ID, key_file=KEY_FILE)
SECRETS = [Secret(passphrase="pw"), Secret(key_file=KEY_FILE)]


def wrappings() -> st.SearchStrategy[bytes]:
    docs = [json.loads(w[6:]) for w in (PASS_WRAPPING, FILE_WRAPPING)]
    return either(
        st.binary(max_size=200), st.binary(max_size=200).map(lambda b: header(TYPE_KEY) + b),
        mutated(PASS_WRAPPING), mutated(FILE_WRAPPING),
        *(perturbed(d).map(lambda d: header(TYPE_KEY) + json.dumps(d).encode()) for d in docs),
    )


@FUZZ
@given(data=wrappings(), secret=st.sampled_from(SECRETS))
def test_key_wrapping(data: bytes, secret: Secret) -> None:
    refused(lambda: unwrap(data, KEY_ID, secret))
    store = MemoryStore()
    store.put(f"keys/{KEY_ID}", data)
    store.put(CONFIG_KEY, seal_document(KEY, TYPE_CONFIG, CONFIG_DOC))
    refused(lambda: Repository.open(store, Secret(key_file=KEY_FILE)), f"keys/{KEY_ID}",
            unnamed=(WrongKey,))


# -- WAL objects and the spool ----------------------------------------------------------------

WAL_OBJECT = seal_wal(KEY, SEG, bytes(range(256)) * 8)
wal_objects = either(st.binary(max_size=120), st.binary(max_size=120).map(
    lambda b: header(TYPE_WAL) + b), mutated(WAL_OBJECT))


@FUZZ
@given(data=wal_objects)
def test_wal_object(data: bytes) -> None:
    refused(lambda: parse_wal_header(data))
    refused(lambda: open_wal(KEY, data, SEG))


@DISK
@given(data=wal_objects)
def test_spool_entry(data: bytes) -> None:
    """A damaged spool entry stops wal-ship, wal-fetch and wal-push with its name."""
    with scratch() as tmp:
        spool = Spool(tmp / "spool")
        spool.ensure()
        spool.path(SEG).write_bytes(data)
        refused(lambda: fetch_file(SEG, tmp / "out", KEY, spool=spool, store=None), SEG)
        (tmp / SEG).write_bytes(bytes(range(256)) * 8)
        refused(lambda: push_file(tmp / SEG, spool, KEY), SEG)
        repo = memory_repo()
        refused(lambda: pitr_range(repo, spool), SEG)
        refused(lambda: ship_spool(spool, repo.store, KEY), SEG)


@DISK
@given(data=wal_objects)
def test_wal_object_in_the_store(data: bytes) -> None:
    """A damaged copy in the store is named when wal-ship, wal-fetch or pitr-range meets it."""
    with scratch() as tmp:
        repo = memory_repo()
        repo.store.put(wal_key(SEG), data)
        refused(lambda: fetch_file(SEG, tmp / "out", KEY, spool=None, store=repo.store),
                wal_key(SEG))
        refused(lambda: pitr_range(repo), wal_key(SEG))
        spool = Spool(tmp / "spool")
        spool.ensure()
        spool.path(SEG).write_bytes(WAL_OBJECT)
        refused(lambda: ship_spool(spool, repo.store, KEY), SEG)


# -- the lock ------------------------------------------------------------------------------------

LOCK = header(TYPE_LOCK) + json.dumps({"host": "h", "pid": 1, "time": 1.0, "token": "t",
                                       "command": "backup"}).encode()


@FUZZ
@given(data=either(st.binary(max_size=100), mutated(LOCK),
                   perturbed(json.loads(LOCK[6:])).map(
                       lambda d: header(TYPE_LOCK) + json.dumps(d).encode()),
                   st.integers(1, 5000).map(lambda n: header(TYPE_LOCK) + b"{\"a\":" * n)))
def test_lock(data: bytes) -> None:
    store = MemoryStore()
    store.put(LOCK_KEY, data)
    refused(lambda: read_lock(store))


# -- the command line ----------------------------------------------------------------------------

def test_command_line_refuses_bad_files_in_one_line(drsync_bin: str, tmp_path: Path) -> None:
    """Through the installed executable: a garbage or truncated fleet file, a garbage key
    file and config, a truncated spool entry. Each is one line on stderr naming the file,
    its exit code, no traceback."""
    from drsync.store import LocalStore
    from drsync.testing import make_repo

    garbage = bytes(range(256))[::-1] * 4  # not UTF-8, not TOML, not a key file
    bad = tmp_path / "garbage"
    bad.write_bytes(garbage)
    truncated_fleet = tmp_path / "fleet.toml"
    truncated_fleet.write_bytes(FLEET_FILES[0].read_bytes()[:150])
    repo = make_repo(LocalStore(tmp_path / "repo"))
    key_file = tmp_path / "agent.key"
    repo.add_key_file().write(key_file)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / SEG).write_bytes(WAL_OBJECT[:60])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)}
    base = ["--repo", str(tmp_path / "repo")]
    cases = [
        (["plan", str(bad)], 4, str(bad)),
        (["plan", str(truncated_fleet)], 4, str(truncated_fleet)),
        ([*base, "--key-file", str(bad), "snapshots"], 4, str(bad)),
        ([*base, "--config", str(bad), "snapshots"], 4, str(bad)),
        ([*base, "--key-file", str(key_file), "wal-ship", "--spool", str(spool)], 13, SEG),
        ([*base, "--key-file", str(key_file), "wal-fetch", "--spool", str(spool), SEG,
          str(tmp_path / "out")], 126, SEG),  # 126: PostgreSQL stops recovery (see wal-fetch)
    ]
    for args, code, named in cases:
        done = subprocess.run([drsync_bin, *args], env=env, capture_output=True, text=True,
                              timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == code, (args, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("drsync: error: "), (args, done.stderr)
        assert named in lines[0] and "Traceback" not in done.stderr, (args, done.stderr)

"""Tamper evidence: a SHA-256 manifest of every file of a report, chained to the previous
report's manifest, signed with Ed25519 (``cryptography``).

A report directory holds its files, ``manifest.json`` and ``manifest.sig``::

    manifest.json  {"format": "drsync-report-manifest", "version": 1, "report_id": ...,
                    "created": ..., "files": [{"path", "sha256", "size"}, ...],
                    "previous": null | {"report_id", "dir", "manifest_sha256"},
                    "signer": {"key_id", "public_key"}}
    manifest.sig   {"key_id", "algorithm": "ed25519", "signature": base64}  over the exact
                   bytes of manifest.json

``files`` lists every other file of the directory (the evidence copied in
under ``evidence/`` included), sorted by path. ``previous`` names the report
before this one: its manifest's SHA-256, and its directory relative to this
one's parent (reports kept side by side in one archive). ``verify_report``
checks the signature (against a pinned public key when given), every file's
size and hash, that no file was added, and the chain: the previous manifest
found and equal to its recorded hash, and itself signed by the same key.

The signing key is an Ed25519 private key in PKCS#8 PEM (``report keygen``
writes it mode 0600, with its public key beside it); key id: the first 16
hex digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from drsync.errors import ConfigError, UsageError

__all__ = ["MANIFEST", "SIGNATURE", "Verification", "generate_key", "key_id", "load_private_key",
           "load_public_key", "previous_link", "seal_report", "verify_report"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = "drsync-report-manifest"


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def generate_key(out_dir: str | Path, name: str = "report-signing") -> tuple[Path, Path]:
    """Write ``<name>.key`` (private, 0600; never overwritten) and ``<name>.pub``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / f"{name}.key", out / f"{name}.pub"
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{private} exists; not overwritten (a new key breaks nothing, "
                         "but the old one may still be needed)") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"{path}: signing key not found (make one: drsync report "
                          "keygen)") from None
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not an Ed25519 private key in PEM: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: public key not found") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not an Ed25519 public key in PEM: {err}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted((p for p in directory.rglob("*") if p.is_file()
                   and p.relative_to(directory).as_posix() not in (MANIFEST, SIGNATURE)),
                  key=lambda p: p.relative_to(directory).as_posix())


def previous_link(previous_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """The chain link to the report in ``previous_dir``; UsageError when it has none."""
    prev = Path(previous_dir)
    manifest = prev / MANIFEST
    try:
        data = manifest.read_bytes()
        doc = json.loads(data)
    except FileNotFoundError:
        raise UsageError(f"--previous {prev}: no {MANIFEST} there (not a report)") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"--previous {prev}: unreadable {MANIFEST}: {err}") from None
    return {"report_id": doc.get("report_id"),
            "dir": os.path.relpath(prev.resolve(), Path(out_dir).resolve().parent),
            "manifest_sha256": hashlib.sha256(data).hexdigest()}


def seal_report(directory: str | Path, key: Ed25519PrivateKey, *, report_id: str,
                created: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Write the manifest of every file in ``directory`` and its signature."""
    directory = Path(directory)
    public = key.public_key()
    manifest = {
        "format": FORMAT, "version": 1, "report_id": report_id, "created": created,
        "files": [{"path": p.relative_to(directory).as_posix(), "sha256": _sha256_file(p),
                   "size": p.stat().st_size} for p in _files(directory)],
        "previous": previous,
        "signer": {"key_id": key_id(public), "public_key": base64.b64encode(
            public.public_bytes(serialization.Encoding.Raw,
                                serialization.PublicFormat.Raw)).decode()},
    }
    data = (json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=2) + "\n").encode()
    (directory / MANIFEST).write_bytes(data)
    signature = {"key_id": key_id(public), "algorithm": "ed25519",
                 "signature": base64.b64encode(key.sign(data)).decode()}
    (directory / SIGNATURE).write_text(json.dumps(signature, sort_keys=True, indent=2) + "\n")
    return manifest


@dataclass
class Verification:
    directory: str
    report_id: str | None = None
    key_id: str | None = None
    pinned: bool = False
    files: int = 0
    chain: list[str] = field(default_factory=list)  # report ids, this one first
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"directory": self.directory, "ok": self.ok, "report_id": self.report_id,
                "key_id": self.key_id, "key_pinned": self.pinned, "files": self.files,
                "chain": self.chain, "problems": self.problems}


def _check_one(directory: Path, trusted: Ed25519PublicKey | None,
               result: Verification) -> dict[str, Any] | None:
    """Signature and hashes of one report; its manifest, or None when unreadable."""
    where = str(directory)
    try:
        data = (directory / MANIFEST).read_bytes()
        manifest = json.loads(data)
        sig = json.loads((directory / SIGNATURE).read_text())
        signature = base64.b64decode(sig["signature"], validate=True)
        embedded = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(manifest["signer"]["public_key"], validate=True))
    except FileNotFoundError as err:
        result.problems.append(f"{where}: {Path(str(err.filename)).name} is missing")
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        result.problems.append(f"{where}: manifest or signature unreadable: {err}")
        return None
    if trusted is not None and _raw(trusted) != _raw(embedded):
        result.problems.append(f"{where}: signed by key {key_id(embedded)}, not by the "
                               f"trusted key {key_id(trusted)}")
    try:
        embedded.verify(signature, data)  # the trusted key itself, when they are equal
    except InvalidSignature:
        result.problems.append(f"{where}: {MANIFEST}: the signature does not match (the "
                               "manifest was changed after signing, or signed by another key)")
    if manifest.get("format") != FORMAT or manifest.get("version") != 1:
        result.problems.append(f"{where}: {MANIFEST}: not a version 1 report manifest")
        return dict(manifest)
    listed = {}
    for entry in manifest.get("files", []):
        listed[entry["path"]] = entry
        path = directory / entry["path"]
        if not path.is_file():
            result.problems.append(f"{where}: {entry['path']}: missing")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            result.problems.append(f"{where}: {entry['path']}: {size} bytes, the manifest "
                                   f"says {entry['size']}")
        elif _sha256_file(path) != entry["sha256"]:
            result.problems.append(f"{where}: {entry['path']}: SHA-256 differs from the "
                                   "manifest (changed after signing)")
    for path in _files(directory):
        name = path.relative_to(directory).as_posix()
        if name not in listed:
            result.problems.append(f"{where}: {name}: not in the manifest (added after "
                                   "signing)")
    return dict(manifest)


def verify_report(directory: str | Path, *, public_key: Ed25519PublicKey | None = None,
                  previous: str | Path | None = None, depth: int = 100) -> Verification:
    """Check the report in ``directory`` and the chain of reports before it."""
    directory = Path(directory)
    result = Verification(str(directory), pinned=public_key is not None)
    manifest = _check_one(directory, public_key, result)
    if manifest is None:
        return result
    result.report_id = manifest.get("report_id")
    result.key_id = (manifest.get("signer") or {}).get("key_id")
    result.files = len(manifest.get("files", []))
    result.chain.append(str(result.report_id))
    trusted = public_key
    if trusted is None:
        trusted = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(manifest["signer"]["public_key"]))
    link = manifest.get("previous")
    here = directory
    override = Path(previous) if previous is not None else None
    while link and depth > 0:
        depth -= 1
        prev_dir = override or (here.resolve().parent / str(link.get("dir")))
        override = None
        try:
            data = (prev_dir / MANIFEST).read_bytes()
        except OSError:
            result.problems.append(f"{here}: previous report {link.get('report_id')} not found "
                                   f"at {prev_dir} (give --previous DIR)")
            break
        if hashlib.sha256(data).hexdigest() != link.get("manifest_sha256"):
            result.problems.append(f"{here}: chain broken: {prev_dir / MANIFEST} is not the "
                                   f"manifest this report was chained to")
            break
        prev_manifest = _check_one(prev_dir, trusted, result)
        if prev_manifest is None:
            break
        result.chain.append(str(prev_manifest.get("report_id")))
        link, here = prev_manifest.get("previous"), prev_dir
    return result

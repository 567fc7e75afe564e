"""The connector's device identity towards the gateway: an ed25519 key pair kept in one file of the data dir.

The gateway knows a device by `device_id` = lowercase hex sha256 of the 32 raw public-key bytes, and checks a
signature (base64url, no padding) over the challenge payload (see claw_core.api.gateway_frames). The private key
file is PKCS#8 PEM, written atomically with mode 0600; a raw 32-byte seed file is read as well. A key file that
group or others can read, or that is not a regular file, is refused rather than used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claw_core.errors import ClawError

__all__ = ["DEFAULT_FILE_NAME", "DeviceIdentity", "DeviceIdentityError", "b64url"]

DEFAULT_FILE_NAME = "gateway-device-key.pem"
_RAW_SEED_BYTES = 32
_MAX_KEY_FILE_BYTES = 16 * 1024


class DeviceIdentityError(ClawError):
    """The device key file is unsafe (readable by others, not a regular file) or unreadable as a key."""


def b64url(data: bytes) -> str:
    """base64url without padding, as the gateway writes keys and signatures."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DeviceIdentity:
    """An ed25519 key pair. `sign` never logs or keeps what it signs."""

    __slots__ = ("_key", "_public_raw", "device_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.device_id = hashlib.sha256(self._public_raw).hexdigest()

    def __repr__(self) -> str:
        return f"DeviceIdentity(device_id={self.device_id[:12]}...)"

    @classmethod
    def generate(cls) -> DeviceIdentity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceIdentity:
        """From the 32 raw private-key bytes."""
        if len(seed) != _RAW_SEED_BYTES:
            raise DeviceIdentityError("an ed25519 private key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, path: Path) -> DeviceIdentity:
        """The identity stored in `path`; refuses a file group or others may read, a symlink or a non-file."""
        return cls(_parse_key(_read_private_file(path), path))

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceIdentity:
        """The identity in `path`, created (with its directory, mode 0700) when there is none yet. Two processes
        racing to create it end up with the same key: the file appears atomically and is never overwritten."""
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        identity = cls.generate()
        created = _write_new_private_file(path, identity.private_pem())
        return identity if created else cls.load(path)

    @property
    def public_key_raw(self) -> bytes:
        return self._public_raw

    @property
    def public_key_b64url(self) -> str:
        return b64url(self._public_raw)

    def sign(self, payload: str) -> str:
        """The ed25519 signature of the UTF-8 payload, base64url without padding."""
        return b64url(self._key.sign(payload.encode("utf-8")))

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _read_private_file(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        if path.is_symlink():
            raise DeviceIdentityError(f"device key {path} is a symlink; refusing to follow it") from None
        raise DeviceIdentityError(f"cannot open device key {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DeviceIdentityError(f"device key {path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        if os.name == "posix" and info.st_mode & 0o077:
            raise DeviceIdentityError(
                f"device key {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"run `chmod 600 {path}` if it is yours, or delete it to make a new identity"
            )
        if info.st_size > _MAX_KEY_FILE_BYTES:
            raise DeviceIdentityError(f"device key {path} is too large to be a key")
        return handle.read(_MAX_KEY_FILE_BYTES + 1)


def _parse_key(data: bytes, path: Path) -> Ed25519PrivateKey:
    if len(data) == _RAW_SEED_BYTES and not data.startswith(b"-----"):
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DeviceIdentityError(
            f"device key {path} is neither an unencrypted PEM private key nor 32 raw bytes"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DeviceIdentityError(f"device key {path} is not an ed25519 key")
    return key


def _write_new_private_file(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically with mode 0600 unless `path` exists. True when this call created it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600 before anything is written to it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic and never replaces an existing file
            created = True
        except FileExistsError:
            created = False
        except OSError:  # a filesystem without hard links
            if path.exists():
                created = False
            else:
                os.replace(tmp, path)
                created = True
        _fsync_dir(path.parent)
        return created
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Ed25519 keys for signing user files (backend) and checking them (device).

Keys never live in the repository; tests make their own. The public key travels in the SDK
bundle; the private key stays with the backend.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.errors import HyperverifyError


def new_private_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    atomic_write_bytes(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise HyperverifyError(f"{path}: not a readable PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HyperverifyError(f"{path}: not an Ed25519 key")
    return key


def public_raw(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw public-key bytes (what the bundle ships and the C++ runtime reads)."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

"""The backend's Ed25519 signing key: it signs the bundle's manifest and every user file; devices
check both against its public half, which the integrating app holds in its code.

Where the key lives (never in the repository; tests make their own):
    --signing-key PATH, or by default ``$XDG_CONFIG_HOME/hyperverify/signing-key.pem``
    (``~/.config/hyperverify/signing-key.pem``): one key per backend, so that rebuilding the
    bundle keeps every enrolled user's file valid.
A key made here is written atomically with mode 0600 (never readable by others, not even
between creation and rename). ``build-sdk`` emits the public half as ``<bundle>.public-key.pem``
beside the bundle folder, for the integrator to copy into the app.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.runtime.bounded_io import read_bounded
from hyperverify.runtime.errors import HyperverifyError

KEY_FILE_MODE = 0o600


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/hyperverify/signing-key.pem`` (default ``~/.config/...``)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "hyperverify" / "signing-key.pem"


def new_private_key(path: Path) -> Ed25519PrivateKey:
    """Make a key and write it to ``path`` (mode 0600, atomically); refuses to overwrite one."""
    if path.exists():
        raise HyperverifyError(f"{path}: a key already exists; refusing to replace it")
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), permissions=KEY_FILE_MODE)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = read_bounded(path, 4096, HyperverifyError, "private key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as err:
        raise HyperverifyError(f"{path}: not a readable PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HyperverifyError(f"{path}: not an Ed25519 key")
    return key


def load_or_create_key(path: Path | None = None) -> tuple[Ed25519PrivateKey, Path, bool]:
    """(key, where it is, made now): the key at ``path`` (default ``default_key_path()``), made if absent."""
    path = Path(path) if path else default_key_path()
    if path.exists():
        return load_private_key(path), path, False
    return new_private_key(path), path, True


def public_raw(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw public-key bytes (what ``TrustPolicy.signed`` and the C runtime's ``hv_open`` take)."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def write_public_key(key: Ed25519PrivateKey, path: Path) -> None:
    """The public half as PEM (``TrustPolicy.from_public_key_file`` reads it)."""
    atomic_write_bytes(path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))


def public_key_path(bundle: Path) -> Path:
    """Where ``build-sdk`` emits the public key: beside the bundle folder, not inside it."""
    bundle = Path(bundle) if Path(bundle).name else Path(bundle).resolve()
    return bundle.with_name(f"{bundle.name}.public-key.pem")

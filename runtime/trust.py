"""The trust policy: which key may decide who unlocks this device, and what that decision needs.

Whoever can write a user file or the bundle's manifest decides who unlocks the phone, so neither
may say whom to trust. The integrating app fixes it in its own code and passes it to the runtime:

    from hyperverify.runtime import TrustPolicy, load
    TRUST = TrustPolicy.signed("9f0c...")            # the backend's Ed25519 public key (hex or 32 bytes)
    verifier = load("bundle/", "alice.hvu", TRUST)

With a key, the manifest must carry a valid detached signature (``manifest.json.sig``) before
anything in it is read, and every user file must be signed by the same key. A device that enrolls
its owner itself (``runtime/enroll.py``) authenticates the user file it writes with a secret key
the app keeps in the platform's key store (Android Keystore, iOS Keychain; never in the bundle);
the app says which user files it accepts, and nothing else can widen that:

    TrustPolicy.signed(BACKEND_KEY)                                       # backend-signed only
    TrustPolicy.signed(BACKEND_KEY, device_key=KEY, user_files="device")  # made on this device only
    TrustPolicy.signed(BACKEND_KEY, device_key=KEY, user_files="either")  # both

The bundle's manifest is signed by the backend under every policy. Running without
signatures takes a named opt-out that states why (``TrustPolicy.allow_unsigned("tests")``); there is
no default. The C runtime takes the same policy (``hv_open``'s key and ``HV_ALLOW_UNSIGNED``).

Two rules hold under either policy: the user's threshold is never below the manifest's calibrated
one (``threshold_floor``), and a score or threshold that is not a finite number never accepts
(``accepts``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hyperverify.runtime.bounded_io import read_bounded
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.runtime.manifest import (SIGNATURE_NAME, SIGNATURE_SIZE, BundleError, Manifest, manifest_bytes,
                                          parse_manifest)
from hyperverify.runtime.user_file import UserWeights, check_device_key, read_user_file

PUBLIC_KEY_SIZE = 32
USER_FILE_SOURCES = ("backend", "device", "either")  # who may have made the user files a device accepts
MAX_KEY_FILE_BYTES = 4096


class TrustError(HyperverifyError):
    """A trust policy that cannot be built: a malformed key, or an opt-out without a reason."""


class ManifestSignatureError(BundleError):
    """The bundle's manifest is unsigned or not signed by the app's key."""


@dataclass(frozen=True)
class TrustPolicy:
    """Build it with ``signed(key)`` or ``allow_unsigned(reason)``; anything else is refused."""

    public_key: bytes = b""  # 32 raw Ed25519 bytes
    unsigned_reason: str = ""  # why this deployment runs without signatures
    device_key: bytes = field(default=b"", repr=False)  # the device's HMAC key (a secret: never printed)
    user_files: str = "backend"  # one of USER_FILE_SOURCES

    def __post_init__(self) -> None:
        keyed = isinstance(self.public_key, bytes) and len(self.public_key) == PUBLIC_KEY_SIZE
        opted_out = isinstance(self.unsigned_reason, str) and bool(self.unsigned_reason.strip())
        if keyed == opted_out or (opted_out and self.public_key):
            raise TrustError("a trust policy needs either a 32-byte Ed25519 public key (TrustPolicy.signed) or "
                             "an explicit opt-out with a reason (TrustPolicy.allow_unsigned), not both or neither")
        if self.user_files not in USER_FILE_SOURCES:
            raise TrustError(f"user_files must be one of {USER_FILE_SOURCES}, got {str(self.user_files)[:20]!r}")
        if opted_out and (self.device_key or self.user_files != "backend"):
            raise TrustError("a device key goes with a signed policy (TrustPolicy.signed): the bundle is the "
                             "backend's either way")
        if self.user_files == "backend" and self.device_key:
            raise TrustError("a device key was given but the policy accepts only backend-signed user files; "
                             "say user_files='device' or 'either'")
        if self.user_files != "backend":
            try:
                check_device_key(self.device_key)
            except ValueError as err:
                raise TrustError(f"user_files={self.user_files!r} needs the device's key: {err}") from None

    @classmethod
    def signed(cls, public_key: bytes | str, device_key: bytes | None = None,
               user_files: str = "backend") -> TrustPolicy:
        """Require signatures by ``public_key``: 32 raw bytes or 64 hex digits. ``user_files``:
        "backend" (signed by that key), "device" (made on this device, authenticated with
        ``device_key``) or "either"."""
        if isinstance(public_key, str):
            try:
                public_key = bytes.fromhex(public_key.strip())
            except ValueError:
                raise TrustError("the public key is not hex") from None
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
            raise TrustError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        return cls(public_key=public_key, device_key=device_key or b"", user_files=user_files)

    @classmethod
    def from_public_key_file(cls, path: str | Path) -> TrustPolicy:
        """Read the key ``build-sdk`` emits (PEM SubjectPublicKeyInfo) or a file of 64 hex digits."""
        data = read_bounded(path, MAX_KEY_FILE_BYTES, TrustError, "public key file")
        if data.lstrip().startswith(b"-----BEGIN"):
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            try:
                key = serialization.load_pem_public_key(data)
            except ValueError as err:
                raise TrustError(f"{path}: not a readable PEM public key ({err})") from None
            if not isinstance(key, Ed25519PublicKey):
                raise TrustError(f"{path}: not an Ed25519 public key")
            return cls.signed(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        try:
            return cls.signed(data.decode("ascii"))
        except (UnicodeDecodeError, TrustError):
            raise TrustError(f"{path}: neither a PEM public key nor 64 hex digits") from None

    @classmethod
    def allow_unsigned(cls, reason: str) -> TrustPolicy:
        """Accept unsigned manifests and user files. Anyone who can write them then decides who
        unlocks: only for tests and local experiments; ``reason`` says which."""
        return cls(unsigned_reason=reason)

    @property
    def requires_signatures(self) -> bool:
        return bool(self.public_key)

    def verifying_key(self):
        """The ``cryptography`` Ed25519PublicKey, or None under ``allow_unsigned``."""
        if not self.public_key:
            return None
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Ed25519PublicKey.from_public_bytes(self.public_key)


def open_manifest(bundle: str | Path, trust: TrustPolicy) -> Manifest:
    """The bundle's manifest, its signature checked against the app's key before it is parsed."""
    data = manifest_bytes(bundle)
    key = trust.verifying_key()
    if key is not None:
        from cryptography.exceptions import InvalidSignature

        signature_path = Path(bundle) / SIGNATURE_NAME
        try:
            signature = read_bounded(signature_path, SIGNATURE_SIZE, ManifestSignatureError, "manifest signature")
        except ManifestSignatureError as err:
            raise ManifestSignatureError(f"{err}; the app requires a signed bundle") from None
        try:
            key.verify(signature, data)
        except InvalidSignature:
            raise ManifestSignatureError(f"{signature_path}: the manifest is not signed by the app's key "
                                         "(altered, or built with another signing key)") from None
    return parse_manifest(data, str(Path(bundle) / "manifest.json"))


def read_trusted_user_file(path: str | Path, manifest: Manifest, trust: TrustPolicy) -> UserWeights:
    """A user file checked as the policy demands: signed by the app's backend key, or authenticated
    by the device's key, as ``trust.user_files`` says, unless opted out. A file of a kind the policy
    does not accept, or authenticated by another key, is refused (``SignatureError``)."""
    backend = trust.user_files in ("backend", "either")
    device = trust.user_files in ("device", "either")
    return read_user_file(path, public_key=trust.verifying_key() if backend else None,
                          device_key=trust.device_key if device else None,
                          require_signature=trust.requires_signatures, expected_layout=manifest.layout_hash)


def threshold_floor(manifest_threshold: float, user_threshold: float) -> float:
    """The threshold the runtime applies: the user's, never below the bundle's calibrated one."""
    if not (math.isfinite(manifest_threshold) and math.isfinite(user_threshold)):
        raise BundleError("a threshold is NaN or infinite")
    return max(float(manifest_threshold), float(user_threshold))


def calibrated_floor(manifest: Manifest, weights: UserWeights) -> float:
    """The manifest's calibrated threshold for this user file. Both kinds hold refined heads (the
    device runs the backend's refinement), so both take the manifest's floor; a device-made file for
    a bundle that ships no on-device enrollment is refused (it was made with another bundle)."""
    if weights.device_made and manifest.enrollment is None:
        raise BundleError("a device-made user file, but this bundle ships no enrollment program")
    return manifest.threshold


def accepts(score: float, threshold: float) -> bool:
    """The one accept rule: a finite score at or above a finite threshold."""
    return math.isfinite(score) and math.isfinite(threshold) and score >= threshold

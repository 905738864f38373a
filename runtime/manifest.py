"""The SDK bundle's manifest (``manifest.json``): what a device needs to trust and run the bundle.

One definition of its fields, read by the runtime and written by the bundle builder. Every file
of the bundle is listed with its sha256; the runtime re-checks the files it loads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hyperverify.runtime import spec
from hyperverify.runtime.errors import HyperverifyError

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = 1


class BundleError(HyperverifyError):
    """A bundle that is missing, of another version, for another verifier, or altered."""


@dataclass(frozen=True)
class Manifest:
    model_version: str
    layout_hash: str
    generated: list[str]
    threshold: float
    target_far: float
    public_key: str  # hex of the 32-byte Ed25519 key that signs user files; "" when unsigned
    require_signature: bool
    files: dict[str, str]  # relative path -> sha256
    programs: dict[str, str]  # role -> relative path ("executorch-xnnpack", "coreml-shared", ...)
    bundle_format: int = BUNDLE_FORMAT
    input: dict = field(default_factory=lambda: {
        "size": spec.INPUT_SIZE, "channels": spec.INPUT_CHANNELS, "layout": "NCHW", "color": "RGB",
        "pixel_mean": spec.PIXEL_MEAN, "pixel_scale": spec.PIXEL_SCALE,
        "from": "112x112 ArcFace-aligned crop, area resize"})
    versions: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(bundle: Path) -> Manifest:
    """Parse and check the manifest against this runtime's spec; BundleError names the problem."""
    path = Path(bundle) / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{bundle}: no {MANIFEST_NAME}; is this an SDK bundle (hyperverify build-sdk)?") from None
    except (OSError, ValueError) as err:
        raise BundleError(f"{path}: unreadable manifest ({err})") from None
    if not isinstance(raw, dict) or raw.get("bundle_format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {raw.get('bundle_format') if isinstance(raw, dict) else '?'}, "
                          f"this runtime reads {BUNDLE_FORMAT}")
    try:
        manifest = Manifest(**raw)
    except TypeError as err:
        raise BundleError(f"{path}: malformed manifest ({err})") from None
    expected = spec.layout_hash(tuple(manifest.generated))
    if manifest.layout_hash != expected:
        raise BundleError(f"{path}: bundle is for verifier layout {manifest.layout_hash}, this runtime has {expected}")
    return manifest


def checked_file(bundle: Path, manifest: Manifest, relative: str) -> bytes:
    """A bundle file's bytes, after checking them against the manifest's checksum."""
    if relative not in manifest.files:
        raise BundleError(f"{relative} is not listed in the bundle manifest")
    try:
        data = (Path(bundle) / relative).read_bytes()
    except OSError as err:
        raise BundleError(f"{bundle}/{relative}: cannot read ({err.strerror})") from None
    if sha256_bytes(data) != manifest.files[relative]:
        raise BundleError(f"{bundle}/{relative}: checksum differs from the manifest (altered or corrupted)")
    return data

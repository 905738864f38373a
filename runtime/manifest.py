"""The SDK bundle's manifest (``manifest.json``) and its detached signature (``manifest.json.sig``).

One definition of the fields, read by the runtime and written by the bundle builder. Every file of
the bundle is listed with its sha256; the runtime re-checks the files it loads. The manifest says
nothing about who is trusted: the public key and the signature policy belong to the integrating
app (``runtime/trust.py``), so a bundle cannot relax them. Its calibrated ``threshold`` is a floor
for every user file (``trust.threshold_floor``).

Parsing trusts nothing (the same rules in ``runtime/cpp/manifest.cpp``): at most ``MAX_MANIFEST_BYTES``,
strict UTF-8 JSON without duplicate keys or NaN/Infinity, every field of its type, finite numbers,
and every path relative, inside the bundle (no ``..``, no absolute path, no backslash, no NUL);
anything else is a ``BundleError``. Bundle format 1 (a manifest that named its own key and
signature policy) is refused: rebuild the bundle with ``hyperverify build-sdk``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hyperverify.runtime import spec
from hyperverify.runtime.cascade import valid_table
from hyperverify.runtime.bounded_io import read_bounded
from hyperverify.runtime.errors import HyperverifyError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"  # 64 raw bytes: Ed25519 over manifest.json's exact bytes
SIGNATURE_SIZE = 64
BUNDLE_FORMAT = 2
MAX_MANIFEST_BYTES = 1 << 20  # ours are about 2 KiB
MAX_BUNDLE_FILE_BYTES = 256 << 20  # a program the runtime loads (ours: under 1 MiB)
MAX_DEPTH = 16  # JSON nesting; ours is 3 deep
ENROLLMENT_ROLE = "enrollment-xnnpack"  # the on-device enrollment program's role in ``programs``
DETECTOR_ROLE = "detector-xnnpack"  # YuNet for the C++ runtime's frame path (``converters.detector_program``)
REFINEMENT_ROLE = "refinement-xnnpack"  # the enrollment-time refinement program (``converters.refine_program``)
ENROLLMENT_HEADS = ("refined",)  # what on-device enrollment makes: the generated head, refined as the backend does


class BundleError(HyperverifyError):
    """A bundle that is missing, of another version, for another verifier, altered or malformed."""


@dataclass(frozen=True)
class Manifest:
    model_version: str
    layout_hash: str
    generated: list[str]
    threshold: float  # calibrated at target_far: the floor of every user's threshold
    target_far: float
    files: dict[str, str]  # relative path -> sha256
    programs: dict[str, str]  # role -> relative path ("executorch-xnnpack", "coreml-shared", ...)
    bundle_format: int = BUNDLE_FORMAT
    input: dict = field(default_factory=lambda: {
        "size": spec.INPUT_SIZE, "channels": spec.INPUT_CHANNELS, "layout": "NCHW", "color": "RGB",
        "pixel_mean": spec.PIXEL_MEAN, "pixel_scale": spec.PIXEL_SCALE,
        "from": "112x112 ArcFace-aligned crop, area resize"})
    versions: dict = field(default_factory=dict)
    enrollment: dict | None = None  # {"head", "thresholds", "max_crops"} with ENROLLMENT_ROLE and REFINEMENT_ROLE
    cascade: dict | None = None  # the cascade's bands (``runtime/cascade.py``); needs ENROLLMENT_ROLE
    tier: str = spec.LEGACY_TIER  # f's size (``spec.TIERS``); bundles from before tiers are the paper's

    @property
    def layout(self) -> spec.Tier:
        return spec.tier(self.tier)

    def to_json(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in ("enrollment", "cascade") or v is not None}
        return json.dumps(fields, indent=2, sort_keys=True, allow_nan=False) + "\n"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_relative(path: object) -> bool:
    """A bundle-relative POSIX path that cannot leave the bundle by its text."""
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _depth(value: object, level: int = 0) -> int:
    """The deepest nesting level of ``value``; raises ValueError for a string that is not valid
    Unicode (a lone surrogate from a ``\\ud800`` escape), which the C++ reader refuses too."""
    if level > MAX_DEPTH:
        return level
    if isinstance(value, str):
        value.encode("utf-8")
    if isinstance(value, dict):
        for key in value:
            key.encode("utf-8")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text_map(value: object, check_value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and check_value(v) for k, v in value.items())


def _lower_hex(value: object, size: int) -> bool:
    return isinstance(value, str) and len(value) == size and all(c in "0123456789abcdef" for c in value)


def _is_sha256(value: object) -> bool:
    return _lower_hex(value, 64)


_CHECKS = {
    "model_version": lambda v: _lower_hex(v, 16),
    "layout_hash": lambda v: _lower_hex(v, 16),
    "generated": lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    "threshold": _number,
    "target_far": _number,
    "files": lambda v: _text_map(v, _is_sha256) and all(safe_relative(k) for k in v),
    "programs": lambda v: _text_map(v, safe_relative),
    "bundle_format": lambda v: v == BUNDLE_FORMAT and not isinstance(v, bool),
    "input": lambda v: isinstance(v, dict),
    "versions": lambda v: isinstance(v, dict),
    "enrollment": lambda v: (isinstance(v, dict) and set(v) == {"head", "thresholds", "max_crops"}
                             and v["head"] in ENROLLMENT_HEADS
                             and isinstance(v["max_crops"], int) and not isinstance(v["max_crops"], bool)
                             and 1 <= v["max_crops"] <= 255 and isinstance(v["thresholds"], list)
                             and 1 <= len(v["thresholds"]) <= v["max_crops"]
                             and all(_number(t) for t in v["thresholds"])),
    "cascade": valid_table,
    "tier": lambda v: isinstance(v, str) and v in spec.TIERS,
}
OPTIONAL = ("input", "versions", "enrollment", "cascade", "tier")


def parse_manifest(data: bytes, source: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest bytes and check them against this runtime's spec; BundleError names the problem."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{source}: {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have")
    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise BundleError(f"{source}: unreadable manifest ({str(err)[:200]})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{source}: the manifest is not a JSON object")
    try:
        if _depth(raw) > MAX_DEPTH:
            raise BundleError(f"{source}: nested deeper than {MAX_DEPTH}")
    except UnicodeEncodeError:
        raise BundleError(f"{source}: a string holds a lone surrogate") from None
    if raw.get("bundle_format") != BUNDLE_FORMAT or isinstance(raw.get("bundle_format"), bool):
        raise BundleError(f"{source}: bundle format {str(raw.get('bundle_format'))[:20]}, this runtime reads "
                          f"{BUNDLE_FORMAT}; rebuild the bundle with `hyperverify build-sdk`")
    unknown = sorted(set(raw) - set(_CHECKS))
    missing = sorted(name for name in _CHECKS if name not in raw and name not in OPTIONAL)
    if unknown or missing:
        raise BundleError(f"{source}: malformed manifest (unknown fields {unknown[:5]}, missing {missing})")
    for name, check in _CHECKS.items():
        if name in raw and not check(raw[name]):
            raise BundleError(f"{source}: malformed manifest field {name!r}")
    manifest = Manifest(**raw)
    for program in manifest.programs.values():  # a file, or a folder of files (a Core ML package)
        if program not in manifest.files and not any(f.startswith(program + "/") for f in manifest.files):
            raise BundleError(f"{source}: a program is not listed among the bundle's files")
    if len({manifest.enrollment is None, ENROLLMENT_ROLE not in manifest.programs,
            REFINEMENT_ROLE not in manifest.programs}) != 1:
        raise BundleError(f"{source}: the enrollment program, the refinement program and their settings must come "
                          "together")
    if manifest.cascade is not None and manifest.enrollment is None:
        raise BundleError(f"{source}: a cascade needs the enrollment program (it runs the backbone)")
    layout = manifest.layout
    try:
        valid = bool(layout.ordered(tuple(manifest.generated)))  # a bundle that generates nothing is refused too
    except ValueError:
        valid = False
    if not valid:
        raise BundleError(f"{source}: unknown or repeated generated slices {manifest.generated} for tier {layout.name}")
    expected = layout.layout_hash(tuple(manifest.generated))
    if manifest.layout_hash != expected:
        raise BundleError(f"{source}: bundle is for verifier layout {manifest.layout_hash}, this runtime has {expected}")
    return manifest


def manifest_bytes(bundle: str | Path) -> bytes:
    """The manifest's exact bytes (what its signature covers), read with the size cap."""
    path = Path(bundle) / MANIFEST_NAME
    if not Path(bundle).is_dir():
        raise BundleError(f"{bundle}: no such bundle folder; build one with `hyperverify build-sdk`")
    return read_bounded(path, MAX_MANIFEST_BYTES, BundleError, "manifest")


def read_manifest(bundle: str | Path) -> Manifest:
    """The manifest, parsed and checked but NOT authenticated: for the tools that build bundles.
    A device opens a bundle with ``trust.open_manifest``, which checks the signature first."""
    return parse_manifest(manifest_bytes(bundle), str(Path(bundle) / MANIFEST_NAME))


def bundle_path(bundle: str | Path, relative: str) -> Path:
    """``bundle/relative`` after checking that neither its text nor a symlink leads outside the bundle."""
    if not safe_relative(relative):
        raise BundleError(f"{relative!r} is not a path inside the bundle")
    root = Path(bundle).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise BundleError(f"{bundle}/{relative}: leads outside the bundle (symlink)")
    return path


def checked_file(bundle: str | Path, manifest: Manifest, relative: str) -> bytes:
    """A bundle file's bytes (at most ``MAX_BUNDLE_FILE_BYTES``), after checking them against the
    manifest's checksum."""
    if relative not in manifest.files:
        raise BundleError(f"{relative} is not listed in the bundle manifest")
    data = read_bounded(bundle_path(bundle, relative), MAX_BUNDLE_FILE_BYTES, BundleError, "bundle file")
    if sha256_bytes(data) != manifest.files[relative]:
        raise BundleError(f"{bundle}/{relative}: checksum differs from the manifest (altered or corrupted)")
    return data


def enrollment_threshold(manifest: Manifest, photos: int) -> float:
    """The threshold of a head the device enrolled from ``photos`` photos (more photos make a more
    confident head); beyond the listed counts, the last."""
    thresholds = manifest.enrollment["thresholds"]
    return float(thresholds[min(photos, len(thresholds)) - 1])

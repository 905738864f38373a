"""Build a signed bundle, and render one user's files against it: the weights file (fp16 and fp32)
and, for iOS 16, per-user Core ML packages. Enrollment uses the bundle's own enrollment model, so
the user's weights always match the shared program the bundle ships; both the bundle's manifest
and the user files are signed with the backend's key (``sdk/signing.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.converters.bundle import BundleInputs, build_bundle
from hyperverify.runtime.manifest import BundleError, Manifest, checked_file
from hyperverify.runtime.trust import ManifestSignatureError, TrustPolicy, open_manifest
from hyperverify.runtime.user_file import write_user_file
from hyperverify.sdk.detector_program import detector_program
from hyperverify.sdk.enroll import DEFAULT_MODEL, enroll, load_default
from hyperverify.sdk.enroll_program import enrollment_inputs
from hyperverify.sdk.hypernet import HyperModel, load_model, model_version
from hyperverify.sdk.signing import (default_key_path, load_or_create_key, load_private_key, public_key_path,
                                     public_raw, write_public_key)

ENROLLMENT_MODEL = "server/enrollment-model.pt"


def bundle_inputs(model: HyperModel, extra: dict, model_bytes: bytes, coreml: bool = True,
                  enrollment: bool = True, detector: bool = True) -> BundleInputs:
    """What ``build_bundle`` needs from a trained model: its shared slices, version and threshold,
    and (``enrollment``) the on-device enrollment program (``sdk.enroll_program``) with the cascade's
    bands when the model was shipped with them (``benchmarks/ship_model.py``), and (``detector``)
    the detector program of the C++ runtime's frame path (``sdk.detector_program``).
    ``model_bytes`` is the checkpoint file that becomes the bundle's enrollment model."""
    return BundleInputs({k: v.detach() for k, v in model.shared_params().items()}, model.config.layout, model.config.generated,
                        model_version(model, extra), float(extra["threshold"]), float(extra["target_far"]),
                        model_bytes, coreml, enrollment_inputs(model, extra) if enrollment else None,
                        extra.get("cascade"), detector_program() if detector else None)


def build_signed_bundle(target: Path, model: Path | None = None, signing_key: Path | None = None,
                        coreml: bool = True, enrollment: bool = True,
                        detector: bool = True) -> tuple[Manifest, Ed25519PrivateKey, Path]:
    """Build a bundle from ``model`` (default: the committed model) into ``target``, signed with the
    key at ``signing_key`` (default ``signing.default_key_path()``; made, mode 0600, when absent),
    and emit its public half as ``<target>.public-key.pem``. Returns (manifest, key, key path);
    the app trusts ``TrustPolicy.signed(signing.public_raw(key))`` and signs user files with ``key``.
    ``enrollment``: ship the on-device enrollment program (41 MiB; an app that enrolls through the
    backend does without it); ``detector``: ship the C++ frame path's detector program."""
    model_path = Path(model) if model else DEFAULT_MODEL
    hyper, extra = load_default(model_path)
    key, key_path, _ = load_or_create_key(signing_key)
    manifest = build_bundle(bundle_inputs(hyper, extra, model_path.read_bytes(), coreml, enrollment, detector), target, key)
    write_public_key(key, public_key_path(target))
    return manifest, key, key_path


def export_user(images: Sequence[Path], bundle: Path, out: Path, user_id: str,
                signing_key: Path | None = None, coreml: bool = True) -> list[Path]:
    """Enroll against ``bundle`` and write the user's files into ``out``, signed with ``signing_key``
    (default ``signing.default_key_path()``), which must be the key the bundle was built with.
    Nothing is written (no empty ``out`` either) when any step fails."""
    key_path = Path(signing_key) if signing_key else default_key_path()
    if not key_path.exists():
        raise BundleError(f"{key_path}: no signing key; pass the --signing-key the bundle was built with")
    key = load_private_key(key_path)
    try:
        manifest = open_manifest(bundle, TrustPolicy.signed(public_raw(key)))
    except ManifestSignatureError:
        raise BundleError(f"{bundle} was not built with the key {key_path}: pass the --signing-key it was "
                          "built with") from None
    checked_file(bundle, manifest, ENROLLMENT_MODEL)
    model, extra = load_model(Path(bundle) / ENROLLMENT_MODEL)
    if model_version(model, extra) != manifest.model_version:
        raise BundleError(f"{bundle}: enrollment model version differs from the manifest's")
    weights = {dtype: enroll(images, model, extra, user_id=user_id, dtype=dtype) for dtype in ("float16", "float32")}
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_user(out, user_id, weights, key, model if coreml else None)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_user(out: Path, user_id: str, weights: dict, key: Ed25519PrivateKey, model: HyperModel | None) -> list[Path]:
    written = []
    for dtype, suffix in (("float16", ""), ("float32", "-fp32")):
        path = out / f"{user_id}{suffix}.hvu"
        write_user_file(path, weights[dtype], key)
        written.append(path)
    if model is not None:
        from hyperverify.converters.coreml_export import user_package

        shared = {k: v.detach() for k, v in model.shared_params().items()}
        user = weights["float32"]
        meta = {"model_version": user.model_version, "user_id": user_id, "threshold": f"{user.threshold:.6f}"}
        for precision in ("float32", "float16"):
            path = out / f"{user_id}-{precision.replace('float', 'fp')}.mlpackage"
            user_package(shared, user.theta, model.config.generated, model.config.layout, path, precision=precision, metadata=meta)
            written.append(path)
    return written

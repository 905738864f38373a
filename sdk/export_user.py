"""Render one user's files against a bundle: the weights file (fp16 and fp32) and, for iOS 16,
per-user Core ML packages. Enrollment uses the bundle's own enrollment model, so the user's
weights always match the shared program the bundle ships."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


from hyperverify.converters.bundle import BundleInputs
from hyperverify.runtime.manifest import BundleError, checked_file, read_manifest
from hyperverify.runtime.user_file import write_user_file
from hyperverify.sdk.enroll import enroll
from hyperverify.sdk.hypernet import HyperModel, load_model, model_version
from hyperverify.sdk.signing import load_private_key, public_raw

ENROLLMENT_MODEL = "server/enrollment-model.pt"


def bundle_inputs(model: HyperModel, extra: dict, model_bytes: bytes, public_key: bytes = b"",
                  coreml: bool = True) -> BundleInputs:
    """What ``build_bundle`` needs from a trained model: its shared slices, version and threshold.
    ``model_bytes`` is the checkpoint file that becomes the bundle's enrollment model."""
    return BundleInputs({k: v.detach() for k, v in model.shared_params().items()}, model.config.generated,
                        model_version(model), float(extra["threshold"]), float(extra["target_far"]),
                        model_bytes, public_key, coreml)


def export_user(images: Sequence[Path], bundle: Path, out: Path, user_id: str,
                signing_key: Path | None = None, coreml: bool = True) -> list[Path]:
    manifest = read_manifest(bundle)
    checked_file(bundle, manifest, ENROLLMENT_MODEL)
    model, extra = load_model(Path(bundle) / ENROLLMENT_MODEL)
    if model_version(model) != manifest.model_version:
        raise BundleError(f"{bundle}: enrollment model version differs from the manifest's")
    key = load_private_key(signing_key) if signing_key else None
    if manifest.require_signature and (key is None or public_raw(key).hex() != manifest.public_key):
        raise BundleError("this bundle requires user files signed with its key: pass the matching --signing-key")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for dtype, suffix in (("float16", ""), ("float32", "-fp32")):
        weights = enroll(images, model, extra, user_id=user_id, dtype=dtype)
        path = out / f"{user_id}{suffix}.hvu"
        write_user_file(path, weights, key)
        written.append(path)
    if coreml:
        from hyperverify.converters.coreml_export import user_package

        shared = {k: v.detach() for k, v in model.shared_params().items()}
        meta = {"model_version": weights.model_version, "user_id": user_id, "threshold": f"{weights.threshold:.6f}"}
        for precision in ("float32", "float16"):
            path = out / f"{user_id}-{precision.replace('float', 'fp')}.mlpackage"
            user_package(shared, weights.theta, model.config.generated, path, precision=precision, metadata=meta)
            written.append(path)
    return written

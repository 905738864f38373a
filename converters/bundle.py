"""The SDK bundle: everything an app developer integrates, built in one go and written atomically.

    bundle/
      manifest.json                     spec, calibrated threshold (a floor), the cascade's bands, versions,
                                        sha256 of every file
      manifest.json.sig                 Ed25519 signature of manifest.json's exact bytes (the backend's key)
      verifier-xnnpack.pte              the shared ExecuTorch program (Android, iOS via ExecuTorch)
      verifier-portable.pte             the same without delegation (any ExecuTorch build)
      enroll-xnnpack.pte                on-device enrollment: aligned crop(s) -> (embedding, generated theta)
      refine-xnnpack.pte                then the backend's refinement: (f's inputs, generated theta) -> theta
      detect-xnnpack.pte                the face detector (YuNet) for the C++ runtime's frame path
      coreml/verifier-shared-ios17.mlpackage   Core ML, the user's slices as inputs (iOS 17+)
      server/enrollment-model.pt        the enrollment model (backend only: never ship in an app)
      docs/                             integration guides for iOS and Android

The bundle is built in a temporary sibling folder and renamed into place, so a crash never leaves
a half-built bundle (staging folders of dead builds are removed by the next one); the same inputs
give the same bytes (checked by a test). Every bundle is signed: a device trusts nothing in the
manifest before checking its signature against the key its app holds (runtime/trust.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hyperverify.converters.enroll_program import MAX_CROPS, EnrollmentInputs, export_enrollment
from hyperverify.converters.executorch_export import export_program
from hyperverify.converters.torch_verifier import SharedVerifier
from hyperverify.runtime import spec
from hyperverify.runtime.atomic import replace_dir, staging_dir
from hyperverify.runtime.manifest import (DETECTOR_ROLE, ENROLLMENT_ROLE, MANIFEST_NAME, REFINEMENT_ROLE, SIGNATURE_NAME,
                                         Manifest, sha256_bytes)
from hyperverify.runtime.user_file import FORMAT_VERSION

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDES = ("integration-ios.md", "integration-android.md")
COREML_ENROLLMENT_ROLE = "coreml-enrollment"
"""The enrollment program as a Core ML package (iOS); the runtimes here run ``ENROLLMENT_ROLE``."""


@dataclass(frozen=True)
class BundleInputs:
    shared: dict[str, torch.Tensor]
    layout: spec.Tier
    generated: tuple[str, ...]
    model_version: str
    threshold: float
    target_far: float
    enrollment_model: bytes
    coreml: bool = True
    enrollment: EnrollmentInputs | None = None  # the on-device enrollment program, when shipped
    cascade: dict | None = None  # the cascade's bands (``sdk.cascade``); shipped with the enrollment program
    detector: bytes | None = None  # the checked detector program (``converters.detector_program``), when shipped


def write_signed_manifest(folder: Path, manifest: Manifest, signing_key: Ed25519PrivateKey) -> bytes:
    """Write ``manifest.json`` and its detached signature ``manifest.json.sig``; returns the manifest bytes."""
    data = manifest.to_json().encode("utf-8")
    (Path(folder) / MANIFEST_NAME).write_bytes(data)
    (Path(folder) / SIGNATURE_NAME).write_bytes(signing_key.sign(data))
    return data


def build_bundle(inputs: BundleInputs, target: Path, signing_key: Ed25519PrivateKey) -> Manifest:
    """Build the bundle into ``target`` (replaced atomically), its manifest signed with ``signing_key``."""
    target = Path(target)
    staging = staging_dir(target)
    try:
        layout_hash = inputs.layout.layout_hash(inputs.generated)
        module = SharedVerifier(inputs.shared, inputs.generated, inputs.layout)
        programs = {"executorch-xnnpack": "verifier-xnnpack.pte", "executorch-portable": "verifier-portable.pte"}
        export_program(module, inputs.model_version, staging / programs["executorch-xnnpack"], "xnnpack")
        export_program(module, inputs.model_version, staging / programs["executorch-portable"], "portable")
        if inputs.coreml:
            from hyperverify.converters.coreml_export import shared_package

            programs["coreml-shared"] = "coreml/verifier-shared-ios17.mlpackage"
            (staging / "coreml").mkdir()
            shared_package(inputs.shared, inputs.generated, inputs.layout, staging / programs["coreml-shared"],
                           metadata={"model_version": inputs.model_version, "threshold": f"{inputs.threshold:.6f}"})
        enrollment = None
        if inputs.enrollment is not None:
            programs[ENROLLMENT_ROLE] = "enroll-xnnpack.pte"
            (staging / programs[ENROLLMENT_ROLE]).write_bytes(export_enrollment(inputs.enrollment))
            programs[REFINEMENT_ROLE] = "refine-xnnpack.pte"
            (staging / programs[REFINEMENT_ROLE]).write_bytes(inputs.enrollment.refinement)
            enrollment = {"head": "refined", "thresholds": list(inputs.enrollment.thresholds), "max_crops": MAX_CROPS}
            if inputs.coreml:
                from hyperverify.converters.coreml_enroll import enrollment_package

                programs[COREML_ENROLLMENT_ROLE] = "coreml/enroll-ios16.mlpackage"
                enrollment_package(inputs.enrollment, staging / programs[COREML_ENROLLMENT_ROLE],
                                   {"model_version": inputs.model_version,
                                    "layout_hash": layout_hash, "tier": inputs.layout.name,
                                    "thresholds": ",".join(f"{t:.6f}" for t in inputs.enrollment.thresholds)})
        if inputs.detector is not None:
            programs[DETECTOR_ROLE] = "detect-xnnpack.pte"
            (staging / programs[DETECTOR_ROLE]).write_bytes(inputs.detector)
        (staging / "server").mkdir()
        (staging / "server" / "enrollment-model.pt").write_bytes(inputs.enrollment_model)
        (staging / "docs").mkdir()
        for guide in GUIDES:
            shutil.copyfile(DOCS / guide, staging / "docs" / guide)
        files = {p.relative_to(staging).as_posix(): sha256_bytes(p.read_bytes())
                 for p in sorted(staging.rglob("*")) if p.is_file()}
        from importlib.metadata import version

        manifest = Manifest(
            model_version=inputs.model_version, layout_hash=layout_hash,
            generated=list(inputs.layout.ordered(inputs.generated)), tier=inputs.layout.name, threshold=inputs.threshold,
            target_far=inputs.target_far, files=files, programs=programs, enrollment=enrollment,
            cascade=inputs.cascade if enrollment is not None else None,
            versions={"user_file_format": FORMAT_VERSION, "executorch": version("executorch"),
                      "coremltools": version("coremltools"), "torch": version("torch").split("+")[0]})
        write_signed_manifest(staging, manifest, signing_key)
        replace_dir(staging, target)
        return manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""f one-way scored through the product itself: the figure a phone would see.

A pair (a, b) is scored the way the product runs: the backend enrolls the owner from image a
(``sdk.enroll``: the generator, then the enrollment refinement when the model carries a bank), the
user's weights go through a signed fp16 user file as shipped (encode, then decode under the app's
trust policy), and the runtime's shared ExecuTorch program (XNNPACK) from an SDK bundle built from
the model scores image b's aligned crop (``runtime.Verifier.score_crop``; the quality gates, which
judge camera frames, are not applied to dataset images). The bundle is built with the bundle
builder into a temporary folder, signed with a throwaway key, and read back through the runtime's
checks; it exists for this evaluation only.

Why not the torch model: the shipped path rounds the user's weights to fp16 and runs the lowered
program, and the figure should be the product's, not a reconstruction of it. The cost is the export
(about 30 s on this machine's 2 cores, and 90 s more the first time a model's refinement program is
exported: it is cached, ``sdk.program_cache``) and about 0.2 ms per pair.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tqdm import tqdm

from hyperverify.runtime.errors import HyperverifyError
from hyperverify.runtime.faces import FaceDetector
from hyperverify.runtime.lockout import NO_LOCKOUT, Lockout
from hyperverify.runtime.manifest import checked_file
from hyperverify.runtime.trust import TrustPolicy, open_manifest
from hyperverify.runtime.user_file import decode, encode
from hyperverify.runtime.verifier import PROGRAM_ROLE, ProgramRunner, Verifier
from hyperverify.sdk.enroll import DEFAULT_MODEL, weights_from_faces
from hyperverify.sdk.hyper_scorer import held_out_folds
from hyperverify.sdk.hypernet import load_model
from hyperverify.sdk.prepare import PreparedSet
from hyperverify.sdk.signing import public_raw


class OneWayScorer:
    """``f-one-way``: enroll from image a, f alone scores image b, through the SDK bundle's program.

        scorer = OneWayScorer("runs/default/model.pt")   # default: the committed model

    On LFW View 2 pairs it refuses folds whose people the model trained on (``held_out``); pairs of
    other data sets are all scored. ``threshold`` is the one the runtime would apply (the user's,
    never below the bundle's calibrated floor)."""

    name = "f-one-way"

    def __init__(self, model: str | Path | None = None, progress: bool = True) -> None:
        self.model_path = Path(model) if model else DEFAULT_MODEL
        self._model_obj, extra = load_model(self.model_path)
        if "threshold" not in extra:
            raise HyperverifyError(f"{self.model_path}: the model has no calibrated threshold")
        self._extra = extra
        self.held_out = held_out_folds(extra)
        self.progress = progress
        self.threshold: float | None = None
        self._built = False

    def _build(self) -> None:
        """Build the bundle and load it as a device would (done at the first ``score``, after the
        fold check, so that a refusal costs no export)."""
        from hyperverify.converters.bundle import build_bundle
        from hyperverify.sdk.export_user import ENROLLMENT_MODEL, bundle_inputs

        key = Ed25519PrivateKey.generate()
        self._key, self._trust = key, TrustPolicy.signed(public_raw(key))
        self._folder = tempfile.TemporaryDirectory(prefix="hyperverify-eval-")
        bundle = Path(self._folder.name) / "sdk"
        if self.progress:
            print(f"building the SDK bundle from {self.model_path} (ExecuTorch export, about 30 s; 2 min the first time)", file=sys.stderr, flush=True)
        build_bundle(bundle_inputs(self._model_obj, self._extra, self.model_path.read_bytes(), coreml=False,
                                   detector=False), bundle, key)
        self.manifest = open_manifest(bundle, self._trust)
        self._runner = ProgramRunner(checked_file(bundle, self.manifest, self.manifest.programs[PROGRAM_ROLE]))
        checked_file(bundle, self.manifest, ENROLLMENT_MODEL)
        self.model, self.extra = load_model(bundle / ENROLLMENT_MODEL)
        self._detector = FaceDetector()
        self._built = True

    def _verifier(self, crop: np.ndarray, embedding: np.ndarray) -> Verifier:
        """The owner enrolled from one aligned crop, as the device loads them (signed fp16 user file)."""
        weights = weights_from_faces(self.model, self.extra, crop[None], embedding[None], "owner", "float16", None)
        shipped = decode(encode(weights, self._key), public_key=self._trust.verifying_key(),
                         require_signature=True, expected_layout=self.manifest.layout_hash)
        return Verifier(self._runner, shipped, self.manifest.layout, tuple(self.manifest.generated), self._detector,
                        Lockout(rules=NO_LOCKOUT), floor=self.manifest.threshold)

    def score(self, data: PreparedSet, a: np.ndarray, b: np.ndarray, fold: np.ndarray | None) -> np.ndarray:
        if fold is not None and self.held_out is not None:
            trained = sorted(set(fold.tolist()) - set(self.held_out))
            if trained:
                raise HyperverifyError(f"the model trained on the people of LFW fold(s) {trained}: scoring them "
                                       f"would test on training people (it was held out from {self.held_out})")
        if not self._built:
            self._build()
        scores = np.empty(len(a))
        enrolled, owner = np.unique(a, return_inverse=True)
        probes = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[probes], np.arange(len(enrolled) + 1))
        for k in tqdm(range(len(enrolled)), desc=f"{self.name}: enroll + score", unit="owner", disable=not self.progress):
            verifier = self._verifier(data.crops[enrolled[k]], data.embeddings[enrolled[k]])
            self.threshold = verifier.threshold
            for i in probes[bounds[k]:bounds[k + 1]]:
                scores[i] = verifier.score_crop(data.crops[b[i]])
        return scores

"""The cascade: f decides the frames it is sure of, the on-device backbone the others.

f (3.4 MFLOPs) scores every frame. A score at or above the band's ``accept_from`` accepts, below
its ``escalate_from`` rejects; a score in between goes to the backbone (SFace, through the bundle's
enrollment program), whose cosine between the frame's embedding and the enrollment embedding kept
in the user file (format 2) decides at ``backbone_threshold``. The bands are calibrated when the
model is shipped (``sdk.cascade``): f's ``accept_from`` and the backbone's threshold each for half
of the target FAR on unseen people, so the cascade's FAR is at most the target; ``escalate_from``
is a low quantile of the owners' f scores, so f rejects outright only what the owner rarely
scores. One band per kind of user file (backend-signed, device-made: both refined heads, the same
bands since the device runs the backend's refinement) and per number of enrollment photos, as the
f-only thresholds are.

``decide`` and ``escalates`` take numbers or numpy arrays: the runtime applies them to one frame,
the benchmarks to millions of attempts, so both measure the same rule. A score that is not a
finite number is never escalated and never accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyperverify.runtime.errors import HyperverifyError

FILE_KINDS = ("backend", "device")  # who made the user file
BAND_FIELDS = ("escalate_from", "accept_from", "backbone_threshold")


@dataclass(frozen=True)
class Band:
    escalate_from: float  # f scores below it are rejected by f
    accept_from: float  # f scores at or above it are accepted by f
    backbone_threshold: float  # in between: the backbone's cosine at or above it accepts

    def escalates(self, f_score):
        """True where the backbone must judge (f is unsure)."""
        f_score = np.asarray(f_score)
        return (f_score >= self.escalate_from) & (f_score < self.accept_from)

    def decide(self, f_score, backbone_score):
        """Accept or not; ``backbone_score`` is read only where ``escalates``."""
        f_score = np.asarray(f_score)
        backbone_score = np.asarray(backbone_score)
        return np.where(self.escalates(f_score),
                        np.isfinite(backbone_score) & (backbone_score >= self.backbone_threshold),
                        np.isfinite(f_score) & (f_score >= self.accept_from))

    def stricter(self, threshold: float) -> Band:
        """The same band with f's direct accept never below ``threshold`` (a user file's own)."""
        return Band(self.escalate_from, max(self.accept_from, threshold), self.backbone_threshold)


def valid_band(value: object) -> bool:
    """A band as the manifest stores it: the three finite numbers, in order, a cosine in [-1, 1]."""
    if not isinstance(value, dict) or set(value) != set(BAND_FIELDS):
        return False
    numbers = [value[k] for k in BAND_FIELDS]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in numbers):
        return False
    return numbers[0] <= numbers[1] and -1.0 <= numbers[2] <= 1.0


def _photo_key(key: object) -> bool:
    """1..255 in decimal, no leading zero (the C++ reader's rule)."""
    return isinstance(key, str) and key.isascii() and key.isdigit() and key[0] != "0" and int(key) <= 255


def valid_table(value: object) -> bool:
    """The manifest's ``cascade`` field: ``{"far", "quantile", "backend": {photos: band}, "device": ...}``."""
    if not isinstance(value, dict) or not {"far", "quantile", "backend"} <= set(value) <= {"far", "quantile",
                                                                                           *FILE_KINDS}:
        return False
    for kind in FILE_KINDS:
        bands = value.get(kind, {})
        if not isinstance(bands, dict) or (kind == "backend" and not bands):
            return False
        if not all(_photo_key(k) and valid_band(b) for k, b in bands.items()):
            return False
    far, quantile = value["far"], value["quantile"]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 for v in (far, quantile))


def band_for(table: dict, device_made: bool, photos: int) -> Band:
    """The band of a user file: by who made it and by its number of enrollment photos (more photos
    than calibrated take the largest calibrated count's band)."""
    bands = table.get("device" if device_made else "backend", {})
    if not bands:
        raise HyperverifyError("this bundle has no cascade band for device-made user files")
    counts = sorted(int(k) for k in bands)
    chosen = max((k for k in counts if k <= photos), default=counts[0])
    return Band(*(float(bands[str(chosen)][k]) for k in BAND_FIELDS))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The backbone's score: cosine of two embeddings (the stored one is unit up to fp16 rounding)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else float("nan")

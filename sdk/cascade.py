"""The cascade's calibration (``runtime/cascade.py`` runs it): one band per kind of user file and
per number of enrollment photos, chosen on the model's calibration people, never on the people a
benchmark scores.

For unlock attempts (``sdk.oneway.unlock_attempts``, one frame each): f's direct accept and the
backbone's threshold each at half of the target FAR, so that the cascade's FAR is at most the
target (a stranger gets in through f, or through the backbone); f's direct reject below the
``quantile`` of the owners' f scores. The quantile is a cost knob, chosen on calibration people
(``benchmarks/cascade.py`` shows the curve): the lower, the more owner frames the backbone sees and
the fewer owners f turns away.
"""

from __future__ import annotations

import numpy as np

from hyperverify.runtime.cascade import FILE_KINDS, Band
from hyperverify.sdk.metrics import threshold_at_far
from hyperverify.sdk.oneway import OneWay, Unlocks, shipped_verifier, unlock_attempts
from hyperverify.sdk.prepare import PreparedSet

FAR = 1 / 50_000
"""The cascade's target: Android's bar for a class-3 biometric. f alone cannot reach it usefully (FRR
84 % at 3 photos, ``benchmarks/results/product-bar.md``); with the backbone judging the frames f is
unsure of, the cascade keeps the FRR it has at the manifest's 1e-3 (7-8 %, ``cascade.md``) at a
fiftieth of that FAR, for more of the owner's frames escalated (one backbone run per unlock)."""

QUANTILE = 0.05
"""f rejects outright about 5 % of its owners' frames (the quantile of the calibration owners' f scores):
a design budget, one owner frame in twenty turned away without a second look, so that the frames f
rejects outright are the bulk of the strangers'. ``benchmarks/cascade.py`` measures the whole curve
(FRR and escalated shares for other quantiles) on the people the calibration did not use."""


def band_from(f: Unlocks, backbone: Unlocks, far: float, quantile: float) -> Band:
    """The band for these calibration attempts (f's and the backbone's, attempt by attempt)."""
    accept_from = threshold_at_far(f.impostor, far / 2)
    escalate_from = min(float(np.quantile(f.genuine, quantile)), accept_from)
    return Band(escalate_from, accept_from, threshold_at_far(backbone.impostor, far / 2))


def calibrate_cascade(model, extra: dict, data: PreparedSet, person: dict[str, str], names: set[str],
                      far: float = FAR, quantile: float = QUANTILE, photos: tuple[int, ...] = (1, 2, 3)) -> dict:
    """The manifest's ``cascade`` table for ``model``: the shipped head's bands (refined when the model
    carries a bank), for both kinds of user file, since the backend and the device's refinement
    program make the same heads (``converters.torch_refinement``)."""
    verifier: OneWay = shipped_verifier(model, extra)
    table: dict = {"far": far, "quantile": quantile}
    for k in photos:
        backbone = unlock_attempts(None, data, person, names, k, 1)
        band = band_from(unlock_attempts(verifier, data, person, names, k, 1), backbone, far, quantile)
        for kind in FILE_KINDS:
            table.setdefault(kind, {})[str(k)] = {"escalate_from": band.escalate_from,
                                                  "accept_from": band.accept_from,
                                                  "backbone_threshold": band.backbone_threshold}
    return table

"""hyperverify.runtime: the bottom layer, what ships in an app (no training code, no torch of its own).

    from hyperverify.runtime import TrustPolicy, load
    verifier = load("bundle/", "alice.hvu", TrustPolicy.signed(BACKEND_PUBLIC_KEY))  # the app's key, in its code
    result = verifier.verify(frame)   # result.accepted, result.reason, result.score

    # the cheap frame path for a camera stream (an option, see ``tracking``):
    verifier = load(..., detector=frame_detector(), tracker=FaceTracker())
"""

from hyperverify.runtime.lockout import Lockout, LockoutRules
from hyperverify.runtime.tracking import FaceTracker, frame_detector
from hyperverify.runtime.trust import TrustPolicy
from hyperverify.runtime.verifier import Result, Verifier, load

__all__ = ["load", "Verifier", "Result", "Lockout", "LockoutRules", "TrustPolicy", "FaceTracker", "frame_detector"]

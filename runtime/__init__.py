"""hyperverify.runtime: the bottom layer, what ships in an app (no training code, no torch of its own).

    from hyperverify.runtime import load
    verifier = load("bundle/", "alice.hvu")
    result = verifier.verify(frame)   # result.accepted, result.reason, result.score
"""

from hyperverify.runtime.lockout import Lockout, LockoutRules
from hyperverify.runtime.verifier import Result, Verifier, load

__all__ = ["load", "Verifier", "Result", "Lockout", "LockoutRules"]

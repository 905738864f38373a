"""The owner's PIN: set at first enrollment, the way back in when the face is not enough.

Stored as a salted scrypt hash (``hashlib.scrypt``, N=2^14, r=8, p=1: about 16 MiB and tens of
milliseconds per check, so a stolen file is slow to brute-force) in one JSON file written
atomically::

    {"format": 1, "kdf": "scrypt", "n": 16384, "r": 8, "p": 1, "salt": "<32 hex>", "hash": "<64 hex>"}

Wrong PINs are throttled by the same lockout rule as faces (``runtime.lockout``, its own state
file, no hand-over): 5 wrong PINs lock PIN entry for 30 s, then each further wrong PIN doubles it.
A PIN file that cannot be read never matches: the owner then needs ``hyperverify app --reset``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.runtime.errors import HyperverifyError
from hyperverify.runtime.lockout import FileStore, Lockout, LockoutRules

FORMAT = 1
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_DIGITS, MAX_DIGITS = 4, 16
MAX_FILE_BYTES = 4096
PIN_RULES = LockoutRules(pin_after=None)
"""Wrong PINs: 5 lock PIN entry for 30 s, doubling up to 1 h; never a hand-over (the PIN is the last step)."""


class PinError(HyperverifyError):
    """A PIN that cannot be set (not 4 to 16 digits)."""


def _hash(pin: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r * p + 2**20, dklen=32)


def check_new_pin(pin: str | None) -> str:
    """The PIN if it is acceptable as a new one (4 to 16 digits), else ``PinError`` in plain words."""
    if not pin or not pin.isascii() or not pin.isdigit() or not MIN_DIGITS <= len(pin) <= MAX_DIGITS:
        raise PinError(f"Choose a PIN of {MIN_DIGITS} to {MAX_DIGITS} digits: it unlocks the app "
                       "when your face is not recognised.")
    return pin


class PinStore:
    """The PIN of one user (``USERS/USER_ID.pin.json``) and the throttle on guessing it."""

    def __init__(self, path: str | Path, throttle_path: str | Path) -> None:
        self.path = Path(path)
        self.throttle = Lockout(FileStore(throttle_path), PIN_RULES)

    def is_set(self) -> bool:
        """A PIN file exists (readable or not): the device has an owner."""
        return self.path.exists()

    def set(self, pin: str) -> None:
        salt = os.urandom(16)
        atomic_write_text(self.path, json.dumps({
            "format": FORMAT, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
            "salt": salt.hex(), "hash": _hash(check_new_pin(pin), salt).hex()}))

    def matches(self, pin: str) -> bool:
        """Whether ``pin`` is the stored one; False for an unreadable or foreign file (fail closed).
        Does not throttle: callers go through ``try_pin``."""
        try:
            with self.path.open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
            obj = json.loads(data) if len(data) <= MAX_FILE_BYTES else None
            if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("kdf") != "scrypt":
                return False
            n, r, p = obj["n"], obj["r"], obj["p"]
            if (n, r, p) != (SCRYPT_N, SCRYPT_R, SCRYPT_P):  # a weakened file is not ours
                return False
            salt, expected = bytes.fromhex(obj["salt"]), bytes.fromhex(obj["hash"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return len(pin) <= MAX_DIGITS and hmac.compare_digest(_hash(pin, salt), expected)

    def try_pin(self, pin: str) -> tuple[bool, float]:
        """One throttled guess: (correct, seconds to wait before the next guess). While the throttle
        runs, the guess is not even checked: (False, seconds left)."""
        wait = self.throttle.remaining()  # whoever can write the throttle file could write a fresh one
        if wait > 0:
            return False, wait
        correct = self.matches(pin)
        state = self.throttle.record(correct)
        return correct, self.throttle.remaining(state)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.throttle.reset()

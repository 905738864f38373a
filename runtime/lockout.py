"""The lockout: who may still try, and for how long not; the one owner of the rule and its state.

The rule (Android's "30 s after 5 false trials", escalating, then a hand-over to the PIN as on
Face ID and Android's permanent lockout):

- ``max_failures`` (5) rejected attempts in a row lock for ``first_lock_seconds`` (30 s);
- each further reject while escalated (``failures`` >= ``max_failures``) locks again for twice as
  long as the previous lock: 60, 120, ... at most ``max_lock_seconds`` (1 h);
- at ``pin_after`` (20) rejects since the last accept, ``pin_required`` is set: no face is judged
  any more, only a correct PIN (checked by the app, which then calls ``Lockout.reset``) clears it;
- an accept resets both counters.

Only ``accepted`` and ``rejected`` are attempts; a frame without a usable face is none.

The state persists per user, so that a restart (or a killed process) does not reset it. The file
is JSON, written atomically (temporary file, fsync, rename), and the C++ runtime reads and writes
the same file::

    {"format": 1, "failures": 5, "total_failures": 5, "locked_until": 1764590000.25, "pin_required": false}

``failures``: consecutive rejected attempts (they drive the back-off); ``total_failures``: rejects
since the last accept (they drive the PIN limit); ``locked_until``: unix seconds (wall clock, so
that it means the same after a reboot). With this rule both counters reset together; the file keeps
both so that each rule reads the count it is defined on. A missing file is a fresh state; a file
that cannot be read or does not match this format exactly means ``pin_required`` (fail closed: an
attacker who corrupts the file gains nothing but a PIN prompt for the owner).

Check ``Lockout.blocked()`` before decoding any image: a locked-out device spends nothing on input.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from hyperverify.runtime.atomic import atomic_write_bytes

FORMAT = 1
MAX_FAILURES = 5
FIRST_LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 3600.0
PIN_AFTER = 20
MAX_STATE_BYTES = 4096
"""A state file is a few dozen bytes; anything larger is not ours and is not read whole."""

_KEYS = ("format", "failures", "total_failures", "locked_until", "pin_required")


@dataclass(frozen=True)
class LockoutState:
    """One user's lockout state, as persisted (see the module docstring for each field)."""

    failures: int = 0
    total_failures: int = 0
    locked_until: float = 0.0
    pin_required: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "failures": self.failures, "total_failures": self.total_failures,
                           "locked_until": float(self.locked_until), "pin_required": self.pin_required}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockoutState:
        """Parse a state file strictly; ``ValueError`` for anything but exactly this format."""
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"not JSON ({err})") from None
        if not isinstance(obj, dict) or sorted(obj) != sorted(_KEYS):
            raise ValueError(f"expected exactly the keys {', '.join(_KEYS)}")
        if type(obj["format"]) is not int or obj["format"] != FORMAT:
            raise ValueError(f"format {obj['format']!r}, this runtime reads format {FORMAT}")
        for key in ("failures", "total_failures"):
            if type(obj[key]) is not int or not 0 <= obj[key] < 2**31:
                raise ValueError(f"{key} must be an integer in [0, 2^31)")
        until = obj["locked_until"]
        if type(until) not in (int, float) or not math.isfinite(until) or until < 0:
            raise ValueError("locked_until must be a finite, non-negative number of unix seconds")
        if type(obj["pin_required"]) is not bool:
            raise ValueError("pin_required must be true or false")
        return cls(obj["failures"], obj["total_failures"], float(until), obj["pin_required"])


FAIL_CLOSED = LockoutState(pin_required=True)
"""What an unreadable state means: only the PIN unlocks."""


class LockoutStore(Protocol):
    """Where one user's state lives: ``load`` never raises (unreadable means ``FAIL_CLOSED``)."""

    def load(self) -> LockoutState: ...

    def save(self, state: LockoutState) -> None: ...


class MemoryStore:
    """State in memory only: for tests, offline evaluation and backends; a restart resets it."""

    def __init__(self, state: LockoutState | None = None) -> None:
        self.state = state or LockoutState()

    def load(self) -> LockoutState:
        return self.state

    def save(self, state: LockoutState) -> None:
        self.state = state


class FileStore:
    """State in one JSON file (the app's state folder); read on every check, so that another
    process (the C++ runtime, a second app instance) sees the same count."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> LockoutState:
        try:
            with self.path.open("rb") as fh:
                data = fh.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return LockoutState()
        except OSError:
            return FAIL_CLOSED
        if len(data) > MAX_STATE_BYTES:
            return FAIL_CLOSED
        try:
            return LockoutState.from_json(data)
        except ValueError:
            return FAIL_CLOSED

    def save(self, state: LockoutState) -> None:
        atomic_write_bytes(self.path, state.to_json())


@dataclass(frozen=True)
class LockoutRules:
    """The numbers of the rule; ``pin_after=None``: never hand over to a PIN (the PIN's own throttle)."""

    max_failures: int = MAX_FAILURES
    first_lock_seconds: float = FIRST_LOCK_SECONDS
    max_lock_seconds: float = MAX_LOCK_SECONDS
    pin_after: int | None = PIN_AFTER

    def __post_init__(self) -> None:
        if self.max_failures < 1 or not 0 < self.first_lock_seconds <= self.max_lock_seconds:
            raise ValueError("a lockout needs max_failures >= 1 and 0 < first_lock_seconds <= max_lock_seconds")
        if self.pin_after is not None and self.pin_after < self.max_failures:
            raise ValueError("pin_after must be >= max_failures")

    def lock_seconds(self, failures: int) -> float:
        """How long the ``failures``-th consecutive reject locks: 0 below ``max_failures``, then
        doubling from ``first_lock_seconds`` up to ``max_lock_seconds``."""
        if failures < self.max_failures:
            return 0.0
        doublings = min(failures - self.max_failures, 64)
        return min(self.first_lock_seconds * 2.0 ** doublings, self.max_lock_seconds)


NO_LOCKOUT = LockoutRules(max_failures=2**30, first_lock_seconds=1.0, max_lock_seconds=1.0, pin_after=None)
"""For judging many images offline (benchmarks, evaluation, ``hyperverify verify``), never for a lock screen."""


class Lockout:
    """One user's lockout on one device: ``blocked()`` before each attempt, ``record()`` after it."""

    def __init__(self, store: LockoutStore | None = None, rules: LockoutRules = LockoutRules(),
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store if store is not None else MemoryStore()
        self.rules, self.clock = rules, clock

    @classmethod
    def in_folder(cls, state_dir: str | Path, user_id: str, *, rules: LockoutRules = LockoutRules(),
                  clock: Callable[[], float] = time.time) -> Lockout:
        """The persisted lockout of ``user_id``: ``STATE_DIR/lockout/USER_ID.json``."""
        return cls(FileStore(Path(state_dir) / "lockout" / f"{user_id}.json"), rules, clock)

    @property
    def state(self) -> LockoutState:
        return self.store.load()

    def remaining(self, state: LockoutState | None = None) -> float:
        """Seconds until the next attempt may be made (0: now). Bounded by ``max_lock_seconds`` so
        that a clock set back (or a far-future ``locked_until``) cannot lock the owner out for days."""
        state = self.store.load() if state is None else state
        return max(0.0, min(state.locked_until - self.clock(), self.rules.max_lock_seconds))

    def blocked(self) -> str | None:
        """``"pin_required"``, ``"locked_out"`` or None (an attempt may be made). Call it before
        decoding the attempt's image."""
        state = self.store.load()
        if state.pin_required:
            return "pin_required"
        return "locked_out" if self.remaining(state) > 0 else None

    def record(self, accepted: bool) -> LockoutState:
        """Count one attempt's outcome and persist it; returns the new state."""
        if accepted:
            state = LockoutState()
        else:
            old = self.store.load()
            failures, total = old.failures + 1, old.total_failures + 1
            lock = self.rules.lock_seconds(failures)
            state = LockoutState(failures, total, self.clock() + lock if lock else old.locked_until,
                                 old.pin_required or (self.rules.pin_after is not None and total >= self.rules.pin_after))
        self.store.save(state)
        return state

    def reset(self) -> LockoutState:
        """After a correct PIN (checked by the caller): every counter and lock cleared."""
        state = LockoutState()
        self.store.save(state)
        return state


__all__ = ["Lockout", "LockoutRules", "LockoutState", "LockoutStore", "MemoryStore", "FileStore", "NO_LOCKOUT",
           "FAIL_CLOSED", "MAX_FAILURES", "FIRST_LOCK_SECONDS", "MAX_LOCK_SECONDS", "PIN_AFTER"]

"""The lockout (runtime/lockout.py): the rule, its file, and the attacks it answers (issue 11, item 5):
a restart resets nothing, the lock escalates, 20 rejects hand over to the PIN, a corrupt file fails
closed, and a locked-out device decodes no image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperverify.runtime.lockout import (FAIL_CLOSED, FileStore, Lockout, LockoutRules, LockoutState, MemoryStore,
                                         MAX_STATE_BYTES)


class Clock:
    def __init__(self, now: float = 1_764_590_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def persisted(tmp_path: Path, clock: Clock) -> Lockout:
    """A fresh Lockout object on the same folder: what a restarted app builds."""
    return Lockout.in_folder(tmp_path, "owner", clock=clock)


def reject_until_locked(lockout: Lockout, clock: Clock) -> float:
    """Wait out any running lock, reject once; the lock that reject started."""
    clock.now += lockout.remaining()
    assert lockout.blocked() is None
    return lockout.remaining(lockout.record(False))


def test_five_rejects_lock_30_s_then_each_further_reject_doubles_up_to_one_hour(tmp_path: Path) -> None:
    clock = Clock()
    locks = []
    for attempt in range(1, 21):
        # A new object for every attempt: the count lives in the file, not in the process.
        locks.append(reject_until_locked(persisted(tmp_path, clock), clock))
    assert locks[:4] == [0.0] * 4
    assert locks[4:13] == [30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    state = persisted(tmp_path, clock).state
    assert (state.failures, state.total_failures, state.pin_required) == (20, 20, True)


def test_restart_keeps_the_lock_and_the_count(tmp_path: Path) -> None:
    clock = Clock()
    first = persisted(tmp_path, clock)
    for _ in range(5):
        first.record(False)
    clock.now += 10
    again = persisted(tmp_path, clock)  # the app was restarted
    assert again.blocked() == "locked_out" and again.remaining() == pytest.approx(20.0)
    clock.now += 20
    assert again.blocked() is None
    assert again.remaining(again.record(False)) == 60.0  # still escalated after the restart


def test_pin_required_after_20_rejects_and_only_a_reset_clears_it(tmp_path: Path) -> None:
    clock = Clock()
    lockout = persisted(tmp_path, clock)
    for _ in range(20):
        reject_until_locked(lockout, clock)
    clock.now += 10 * 3600
    assert lockout.blocked() == "pin_required"  # waiting does not help
    lockout.reset()  # what the app calls after a correct PIN
    assert lockout.blocked() is None and lockout.state == LockoutState()


def test_an_accept_resets_both_counters(tmp_path: Path) -> None:
    clock = Clock()
    lockout = persisted(tmp_path, clock)
    for _ in range(7):
        reject_until_locked(lockout, clock)
    clock.now += lockout.remaining()
    assert lockout.record(True) == LockoutState()
    assert [reject_until_locked(lockout, clock) for _ in range(5)] == [0.0] * 4 + [30.0]


def test_the_file_is_exactly_the_shared_format(tmp_path: Path) -> None:
    clock = Clock(1000.5)
    lockout = persisted(tmp_path, clock)
    for _ in range(5):
        lockout.record(False)
    path = tmp_path / "lockout" / "owner.json"
    assert json.loads(path.read_text()) == {"format": 1, "failures": 5, "total_failures": 5,
                                            "locked_until": 1030.5, "pin_required": False}
    assert [p.name for p in path.parent.iterdir()] == ["owner.json"]  # no temporary file left behind
    # The C++ runtime writes integers where a value is whole and may order keys differently.
    path.write_text('{"pin_required": false, "locked_until": 1100, "total_failures": 6, "failures": 6, "format": 1}')
    assert lockout.state == LockoutState(6, 6, 1100.0, False)


def test_missing_file_is_fresh(tmp_path: Path) -> None:
    assert FileStore(tmp_path / "none.json").load() == LockoutState()


@pytest.mark.parametrize("content", [
    b"", b"\xff\xfe", b"not json", b"[]", b"null",
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0}',  # a key missing
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0, "pin_required": false, "x": 1}',
    b'{"format": 2, "failures": 0, "total_failures": 0, "locked_until": 0.0, "pin_required": false}',
    b'{"format": 1, "failures": -1, "total_failures": 0, "locked_until": 0.0, "pin_required": false}',
    b'{"format": 1, "failures": 0.0, "total_failures": 0, "locked_until": 0.0, "pin_required": false}',
    b'{"format": 1, "failures": true, "total_failures": 0, "locked_until": 0.0, "pin_required": false}',
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": NaN, "pin_required": false}',
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": -5, "pin_required": false}',
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": "0", "pin_required": false}',
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0, "pin_required": 0}',
    b'{"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0, "pin_required": false}'
    + b" " * MAX_STATE_BYTES,
])
def test_corrupt_or_foreign_file_fails_closed(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "lockout" / "owner.json"
    path.parent.mkdir()
    path.write_bytes(content)
    lockout = Lockout(FileStore(path))
    assert lockout.state == FAIL_CLOSED and lockout.blocked() == "pin_required"


def test_a_folder_in_place_of_the_file_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "lockout" / "owner.json").mkdir(parents=True)  # open() raises IsADirectoryError, even for root
    assert Lockout.in_folder(tmp_path, "owner").blocked() == "pin_required"


def test_a_clock_set_back_cannot_lock_for_longer_than_the_cap() -> None:
    clock = Clock(10_000_000.0)
    lockout = Lockout(MemoryStore(LockoutState(5, 5, clock.now + 30)), clock=clock)
    clock.now -= 86_400 * 365  # the clock was set back a year
    assert lockout.remaining() == 3600.0


def test_in_memory_store_forgets_on_restart_by_design() -> None:
    store = MemoryStore()
    lockout = Lockout(store)
    for _ in range(5):
        lockout.record(False)
    assert lockout.blocked() == "locked_out" and Lockout().blocked() is None


def test_rules_refuse_nonsense() -> None:
    for bad in (dict(max_failures=0), dict(first_lock_seconds=0), dict(first_lock_seconds=10, max_lock_seconds=5),
                dict(pin_after=3)):
        with pytest.raises(ValueError):
            LockoutRules(**bad)

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


_VALID = {"format": 1, "failures": 0, "total_failures": 0, "locked_until": 0.0, "pin_required": False}


@pytest.mark.parametrize("change, message", [
    (None, "not JSON (Expecting value: line 1 column 1 (char 0))"),
    ({"x": 1}, "expected exactly the keys format, failures, total_failures, locked_until, pin_required"),
    ({"format": 2}, "format 2, this runtime reads format 1"),
    ({"total_failures": -1}, "total_failures must be an integer in [0, 2^31)"),
    ({"failures": 2**31}, "failures must be an integer in [0, 2^31)"),
    ({"locked_until": -1}, "locked_until must be a finite, non-negative number of unix seconds"),
    ({"pin_required": 1}, "pin_required must be true or false"),
])
def test_a_refused_state_says_why(change: dict | None, message: str) -> None:
    """The reason a state file is refused (FileStore then fails closed) names the field and the rule."""
    data = b"not json" if change is None else json.dumps({**_VALID, **change}).encode()
    with pytest.raises(ValueError) as refused:
        LockoutState.from_json(data)
    assert str(refused.value) == message


def test_counters_are_read_up_to_2_to_the_31_exclusive() -> None:
    top = json.dumps({**_VALID, "failures": 2**31 - 1, "total_failures": 2**31 - 1}).encode()
    assert LockoutState.from_json(top) == LockoutState(2**31 - 1, 2**31 - 1, 0.0, False)


def test_a_state_file_of_exactly_the_size_cap_is_read(tmp_path: Path) -> None:
    body = json.dumps({**_VALID, "failures": 3, "total_failures": 3}).encode()
    path = tmp_path / "owner.json"
    path.write_bytes(body + b" " * (MAX_STATE_BYTES - len(body)))
    assert FileStore(path).load() == LockoutState(3, 3, 0.0, False)


def test_a_huge_state_file_fails_closed_without_being_read(tmp_path: Path) -> None:
    """Only ``MAX_STATE_BYTES + 1`` bytes are read: a 1 GiB file costs neither time nor memory."""
    import resource
    import time

    path = tmp_path / "owner.json"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: costs no disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    assert FileStore(path).load() == FAIL_CLOSED
    assert time.perf_counter() - start < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: nothing big read


@pytest.mark.parametrize("rules", [dict(max_failures=1, pin_after=1), dict(first_lock_seconds=0.5),
                                   dict(first_lock_seconds=10, max_lock_seconds=10), dict(pin_after=None),
                                   dict(max_failures=5, pin_after=5)])
def test_rules_accept_their_edge_values(rules: dict) -> None:
    """The boundaries the refusals name are allowed: one failure, sub-second and fixed locks, no PIN."""
    made = LockoutRules(**rules)
    assert all(getattr(made, key) == value for key, value in rules.items())


@pytest.mark.parametrize("rules, message", [
    (dict(max_failures=0), "a lockout needs max_failures >= 1 and 0 < first_lock_seconds <= max_lock_seconds"),
    (dict(pin_after=4), "pin_after must be >= max_failures"),
])
def test_rules_refusals_say_why(rules: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        LockoutRules(**rules)
    assert str(refused.value) == message


def test_a_single_failure_rule_locks_at_the_first_reject() -> None:
    clock = Clock()
    lockout = Lockout(rules=LockoutRules(max_failures=1, first_lock_seconds=2, max_lock_seconds=8, pin_after=None),
                      clock=clock)
    assert [lockout.remaining(lockout.record(False)) for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]


def test_remaining_reads_the_state_it_is_given() -> None:
    clock = Clock()
    lockout = Lockout(clock=clock)  # its own store holds a fresh state
    assert lockout.remaining(LockoutState(5, 5, clock.now + 10, False)) == 10.0 and lockout.remaining() == 0.0


def test_a_reject_below_the_limit_keeps_a_running_lock() -> None:
    """A state file (written by another runtime) with a running lock and a low count: the next reject
    counts but does not shorten the lock to nothing."""
    clock = Clock()
    lockout = Lockout(MemoryStore(LockoutState(0, 0, clock.now + 100, False)), clock=clock)
    state = lockout.record(False)
    assert (state.failures, state.locked_until) == (1, clock.now + 100) and lockout.blocked() == "locked_out"


def test_a_lock_holds_until_its_last_fraction_of_a_second() -> None:
    clock = Clock()
    lockout = Lockout(MemoryStore(LockoutState(5, 5, clock.now + 0.5, False)), clock=clock)
    assert lockout.blocked() == "locked_out" and lockout.remaining() == 0.5
    clock.now += 0.5
    assert lockout.blocked() is None

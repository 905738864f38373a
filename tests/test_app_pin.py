"""The sample app's PIN (sample_app/pin.py): a salted scrypt hash, written atomically, that fails
closed, and a throttle on guessing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperverify.sample_app.pin import PinError, PinStore, check_new_pin


def store(tmp_path: Path) -> PinStore:
    return PinStore(tmp_path / "users" / "owner.pin.json", tmp_path / "lockout" / "owner.pin.json")


def test_the_file_holds_a_salted_scrypt_hash_never_the_pin(tmp_path: Path) -> None:
    pins = store(tmp_path)
    pins.set("482916")
    first = json.loads(pins.path.read_text())
    assert first["kdf"] == "scrypt" and first["n"] == 2**14 and "482916" not in pins.path.read_text()
    assert pins.matches("482916") and not pins.matches("482917") and not pins.matches("")
    pins.set("482916")
    assert json.loads(pins.path.read_text())["salt"] != first["salt"]  # a new salt each time
    assert [p.name for p in pins.path.parent.iterdir()] == ["owner.pin.json"]  # atomic: no temporary left


@pytest.mark.parametrize("edit", [
    lambda obj: {**obj, "n": 2},                 # a weakened work factor is not ours
    lambda obj: {**obj, "kdf": "sha256"},
    lambda obj: {**obj, "hash": "zz"},
    lambda obj: {k: v for k, v in obj.items() if k != "salt"},
    lambda obj: [],
])
def test_a_foreign_or_broken_file_never_matches(tmp_path: Path, edit) -> None:
    pins = store(tmp_path)
    pins.set("482916")
    pins.path.write_text(json.dumps(edit(json.loads(pins.path.read_text()))))
    assert pins.is_set() and not pins.matches("482916")


def test_five_wrong_guesses_lock_pin_entry_even_for_the_right_pin(tmp_path: Path) -> None:
    pins = store(tmp_path)
    pins.set("482916")
    results = [pins.try_pin(guess) for guess in ("0000", "1111", "2222", "3333")]
    assert results == [(False, 0.0)] * 4
    correct, wait = pins.try_pin("4444")
    assert not correct and 29 < wait <= 30
    correct, wait = store(tmp_path).try_pin("482916")  # a restart does not help
    assert not correct and wait > 0
    pins.throttle.reset()
    assert pins.try_pin("482916") == (True, 0.0)


@pytest.mark.parametrize("pin", [None, "", "123", "12345678901234567", "12a4", "１２３４", " 1234"])
def test_new_pins_are_4_to_16_ascii_digits(pin) -> None:
    with pytest.raises(PinError):
        check_new_pin(pin)
    assert check_new_pin("0123") == "0123"

// Lockout that survives restarts: a small state file shared, byte for byte in
// meaning, with the Python runtime's lockout module (runtime/lockout.py):
//
//   {"format": 1, "failures": <consecutive rejected attempts>,
//    "total_failures": <rejects since the last accept>,
//    "locked_until": <unix seconds, float>, "pin_required": <bool>}
//
// Policy: each reject adds one to both counts; from the 5th consecutive reject
// on, every reject locks for 30 s * 2^(failures - 5), capped at 1 h (30, 60,
// 120, ...); at 20 total_failures only the app's PIN path unlocks
// (pin_required). An accept resets everything. A missing file is a fresh
// state; an unreadable or malformed one means pin_required (fail closed):
// exactly these five keys, format the integer 1, counts integers in
// [0, 2^31), locked_until a finite number >= 0, pin_required a boolean, at
// most 4 KiB. Written atomically (temporary file, fsync, rename).
#pragma once

#include <cstdint>
#include <string>

#include "status.h"

namespace hyperverify {

constexpr int64_t kLockoutAfter = 5;
constexpr double kLockoutSeconds = 30.0;
constexpr double kLockoutMaxSeconds = 3600.0;
constexpr int64_t kPinAfter = 20;
constexpr size_t kMaxStateBytes = 4096;

struct LockoutState {
  int64_t failures = 0;
  int64_t total_failures = 0;
  double locked_until = 0.0;
  bool pin_required = false;
};

// The state in `path`: fresh when missing; pin_required when unreadable or malformed.
LockoutState read_lockout(const std::string& path);

Status write_lockout(const std::string& path, const LockoutState& state);

// The policy: the state after one decided attempt at unix time `now`.
LockoutState record_attempt(LockoutState state, bool accepted, double now);

// Seconds until the next attempt may be made, at most kLockoutMaxSeconds (a
// clock set back, or a far-future locked_until, cannot lock the owner out for days).
double lock_remaining(const LockoutState& state, double now);

// HV_OK when an attempt may be made now, HV_PIN_REQUIRED or HV_LOCKED_OUT otherwise.
hv_status attempt_allowed(const LockoutState& state, double now);

// Unix time in seconds.
double unix_now();

}  // namespace hyperverify

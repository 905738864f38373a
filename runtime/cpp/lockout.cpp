// See lockout.h.
#include "lockout.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include "files.h"
#include "json.h"

namespace hyperverify {
namespace {

bool count(const Json* value, int64_t& out) {
  if (value == nullptr || value->kind != Json::Number || !value->integer || value->number < 0 ||
      value->number >= 2147483648.0)
    return false;
  out = static_cast<int64_t>(value->number);
  return true;
}

LockoutState pin_required() {
  LockoutState state;
  state.pin_required = true;
  return state;
}

}  // namespace

LockoutState read_lockout(const std::string& path) {
  std::FILE* probe = std::fopen(path.c_str(), "rb");
  if (probe == nullptr) {
    if (errno == ENOENT) return LockoutState{};  // never written: fresh
    return pin_required();
  }
  std::fclose(probe);
  auto data = read_bounded(path, kMaxStateBytes, HV_IO);
  if (!data.ok()) return pin_required();
  auto parsed = parse_json(reinterpret_cast<const char*>(data.value().data()), data.value().size(), HV_IO);
  if (!parsed.ok() || parsed.value().kind != Json::Object) return pin_required();
  const Json& root = parsed.value();
  static const std::set<std::string> kKeys = {"format", "failures", "total_failures", "locked_until",
                                              "pin_required"};
  if (root.members.size() != kKeys.size()) return pin_required();
  for (const auto& member : root.members)
    if (!kKeys.count(member.first)) return pin_required();
  const Json* format = root.get("format");
  const Json* until = root.get("locked_until");
  const Json* pin = root.get("pin_required");
  LockoutState state;
  if (format->kind != Json::Number || !format->integer || format->number != 1 ||
      !count(root.get("failures"), state.failures) || !count(root.get("total_failures"), state.total_failures) ||
      until->kind != Json::Number || !std::isfinite(until->number) || until->number < 0 ||
      pin->kind != Json::Bool)
    return pin_required();
  state.locked_until = until->number;
  state.pin_required = pin->boolean;
  return state;
}

Status write_lockout(const std::string& path, const LockoutState& state) {
  char text[256];
  std::snprintf(text, sizeof text,
                "{\"format\": 1, \"failures\": %lld, \"total_failures\": %lld, \"locked_until\": %.6f, "
                "\"pin_required\": %s}\n",
                static_cast<long long>(state.failures), static_cast<long long>(state.total_failures),
                state.locked_until, state.pin_required ? "true" : "false");
  return write_atomic(path, text);
}

LockoutState record_attempt(LockoutState state, bool accepted, double now) {
  if (accepted) return LockoutState{};
  state.failures++;
  state.total_failures++;
  if (state.failures >= kLockoutAfter) {
    double seconds = kLockoutSeconds * std::pow(2.0, static_cast<double>(std::min<int64_t>(state.failures - kLockoutAfter, 16)));
    state.locked_until = now + std::min(seconds, kLockoutMaxSeconds);
  }
  if (state.total_failures >= kPinAfter) state.pin_required = true;
  return state;
}

double lock_remaining(const LockoutState& state, double now) {
  return std::max(0.0, std::min(state.locked_until - now, kLockoutMaxSeconds));
}

hv_status attempt_allowed(const LockoutState& state, double now) {
  if (state.pin_required) return HV_PIN_REQUIRED;
  if (lock_remaining(state, now) > 0) return HV_LOCKED_OUT;
  return HV_OK;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace hyperverify

// Internal result type: a value, or a status code (hyperverify.h) and a message.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "hyperverify.h"

namespace hyperverify {

struct Error {
  hv_status code;
  std::string message;
};

template <typename T>
class Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(state_); }
  const Error& error() const { return std::get<Error>(state_); }
  T& value() { return std::get<T>(state_); }
  const T& value() const { return std::get<T>(state_); }

 private:
  std::variant<T, Error> state_;
};

// For operations without a value.
struct Ok {};
using Status = Result<Ok>;

inline Error fail(hv_status code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace hyperverify

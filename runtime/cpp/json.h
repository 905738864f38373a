// A strict JSON reader (RFC 8259) for the bundle manifest and the lockout
// state file: the same acceptance as Python's json.loads with the checks of
// runtime/manifest.py (no NaN/Infinity, no duplicate keys, strict UTF-8, no
// lone surrogates, nesting at most kMaxJsonDepth, integers of at most 4300
// digits as Python's int() allows). Numbers that overflow become infinite,
// as in Python; the caller decides whether a field may be infinite.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "status.h"

namespace hyperverify {

constexpr int kMaxJsonDepth = 16;

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Null;
  bool boolean = false;
  double number = 0.0;
  bool integer = false;  // written without fraction or exponent
  std::string text;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;  // in file order, keys unique

  const Json* get(const std::string& key) const;
};

// Parse a whole document; any problem is an error of code `code`.
Result<Json> parse_json(const char* data, size_t size, hv_status code);

}  // namespace hyperverify

// The cascade: the C++ twin of runtime/cascade.py. f decides the frames it
// is sure of; a score inside the band goes to the backbone (the bundle's
// enrollment program), whose cosine to the user file's enrollment embedding
// decides. The manifest's "cascade" field holds one band per kind of user
// file and per number of enrollment photos, checked as Python checks it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "json.h"
#include "status.h"

namespace hyperverify {

struct Band {
  double escalate_from = 0.0;       // f scores below it are rejected by f
  double accept_from = 0.0;         // f scores at or above it are accepted by f
  double backbone_threshold = 0.0;  // in between: the backbone's cosine at or above it accepts

  bool escalates(float f) const;           // false for a non-finite score
  bool decide(float f, float backbone) const;  // backbone read only where escalates(f)
};

// kind ("backend", "device") -> enrollment photos -> band
using CascadeTable = std::map<std::string, std::map<int, Band>>;

// The manifest's "cascade" object, checked as runtime/cascade.py valid_table.
Result<CascadeTable> parse_cascade(const Json& value);

// The band of a user file of `kind` ("backend", "device": present in the
// table) enrolled from `photos` photos (more photos than calibrated take the
// largest calibrated count's band), f's direct accept never below `threshold`
// (the user's, floored).
Band band_for(const CascadeTable& table, const std::string& kind, int photos, float threshold);

// Cosine of two embeddings of the same length (NaN when one is zero).
float cosine(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace hyperverify

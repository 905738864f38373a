// See cascade.h; the rule and the checks are documented in runtime/cascade.py.
#include "cascade.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace hyperverify {
namespace {

bool finite_number(const Json* value) {
  return value != nullptr && value->kind == Json::Number && std::isfinite(value->number);
}

Error bad() { return fail(HV_BUNDLE, "manifest.json: malformed manifest field 'cascade'"); }

// A photo count key: 1..255 in decimal, no leading zero (runtime/cascade.py _photo_key).
bool photo_key(const std::string& key, int* photos) {
  if (key.empty() || key.size() > 3 || key[0] == '0') return false;
  for (char c : key)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  *photos = std::stoi(key);
  return *photos >= 1 && *photos <= 255;
}

}  // namespace

bool Band::escalates(float f) const {
  return std::isfinite(f) && f >= escalate_from && f < accept_from;
}

bool Band::decide(float f, float backbone) const {
  if (escalates(f)) return std::isfinite(backbone) && backbone >= backbone_threshold;
  return std::isfinite(f) && f >= accept_from;
}

Result<CascadeTable> parse_cascade(const Json& value) {
  if (value.kind != Json::Object) return bad();
  for (const auto& member : value.members)
    if (member.first != "far" && member.first != "quantile" && member.first != "backend" &&
        member.first != "device")
      return bad();
  for (const char* name : {"far", "quantile"}) {
    const Json* number = value.get(name);
    if (!finite_number(number) || number->number <= 0 || number->number >= 1) return bad();
  }
  CascadeTable table;
  for (const char* kind : {"backend", "device"}) {
    const Json* bands = value.get(kind);
    if (bands == nullptr) {
      if (std::string(kind) == "backend") return bad();
      continue;
    }
    if (bands->kind != Json::Object || (std::string(kind) == "backend" && bands->members.empty())) return bad();
    for (const auto& entry : bands->members) {
      int photos = 0;
      if (!photo_key(entry.first, &photos) || entry.second.kind != Json::Object ||
          entry.second.members.size() != 3)
        return bad();
      const Json* lo = entry.second.get("escalate_from");
      const Json* hi = entry.second.get("accept_from");
      const Json* cos = entry.second.get("backbone_threshold");
      if (!finite_number(lo) || !finite_number(hi) || !finite_number(cos) || lo->number > hi->number ||
          cos->number < -1.0 || cos->number > 1.0)
        return bad();
      table[kind][photos] = Band{lo->number, hi->number, cos->number};
    }
  }
  return table;
}

Band band_for(const CascadeTable& table, const std::string& kind, int photos, float threshold) {
  const auto& bands = table.at(kind);
  auto chosen = bands.upper_bound(photos);  // the first count above `photos`
  Band band = chosen == bands.begin() ? chosen->second : std::prev(chosen)->second;
  band.accept_from = std::max(band.accept_from, static_cast<double>(threshold));
  return band;
}

float cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0.0, na = 0.0, nb = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); i++) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  double norm = std::sqrt(na * nb);
  return norm > 0 ? static_cast<float>(dot / norm) : std::nanf("");
}

}  // namespace hyperverify

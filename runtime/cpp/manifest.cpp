// See manifest.h; the rules are documented in runtime/manifest.py.
#include "manifest.h"

#include <cmath>
#include <set>

#include "crypto.h"
#include "files.h"
#include "json.h"

namespace hyperverify {
namespace {

// runtime/spec.py: the slice names of every tier, and the tiers (test_cpp_runtime checks both).
// The program's layout hash, not these names, binds a bundle to one tier's layout.
const std::set<std::string> kSliceNames = {
    "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias", "conv4.weight",
    "conv4.bias",   "conv5.weight", "conv5.bias", "conv6.weight", "conv6.bias", "head.weight", "head.bias"};
const std::set<std::string> kTiers = {"10k", "paper", "100k", "400k"};
const std::set<std::string> kRequired = {"model_version", "layout_hash", "generated", "threshold",
                                         "target_far", "files", "programs", "bundle_format"};
const std::set<std::string> kOptional = {"input", "versions", "enrollment", "cascade", "tier"};

bool lower_hex(const std::string& text, size_t size) {
  if (text.size() != size) return false;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool finite_number(const Json& value) { return value.kind == Json::Number && std::isfinite(value.number); }

Error bad(const std::string& what) { return fail(HV_BUNDLE, "manifest.json: " + what); }

}  // namespace

Result<Manifest> parse_manifest(const uint8_t* data, size_t size) {
  if (size > kMaxManifestBytes) return bad("larger than a manifest may be");
  auto parsed = parse_json(reinterpret_cast<const char*>(data), size, HV_BUNDLE);
  if (!parsed.ok()) return bad(parsed.error().message);
  const Json& root = parsed.value();
  if (root.kind != Json::Object) return bad("not a JSON object");
  const Json* format = root.get("bundle_format");
  if (format == nullptr || format->kind != Json::Number || format->number != kBundleFormat)
    return bad("bundle format is not " + std::to_string(kBundleFormat) +
               "; rebuild the bundle with `hyperverify build-sdk`");
  for (const auto& member : root.members)
    if (!kRequired.count(member.first) && !kOptional.count(member.first))
      return bad("unknown field '" + member.first + "'");
  for (const auto& name : kRequired)
    if (root.get(name) == nullptr) return bad("missing field '" + name + "'");
  for (const auto& name : kOptional)
    if (name != "tier" && root.get(name) != nullptr && root.get(name)->kind != Json::Object)
      return bad("field '" + name + "' is not an object");

  Manifest manifest;
  if (const Json* tier = root.get("tier")) {  // absent in bundles from before tiers: the paper's
    if (tier->kind != Json::String || !kTiers.count(tier->text)) return bad("unknown tier");
    manifest.tier = tier->text;
  }
  const Json& version = *root.get("model_version");
  if (version.kind != Json::String || !lower_hex(version.text, 16)) return bad("malformed model_version");
  manifest.model_version = version.text;
  const Json& layout = *root.get("layout_hash");
  if (layout.kind != Json::String || !lower_hex(layout.text, 16)) return bad("malformed layout_hash");
  manifest.layout_hash = layout.text;
  const Json& generated = *root.get("generated");
  if (generated.kind != Json::Array || generated.items.empty()) return bad("malformed generated");
  std::set<std::string> seen;
  for (const Json& name : generated.items) {
    if (name.kind != Json::String || !kSliceNames.count(name.text) || !seen.insert(name.text).second)
      return bad("unknown or repeated generated slice");
    manifest.generated.push_back(name.text);
  }
  const Json& threshold = *root.get("threshold");
  if (!finite_number(threshold)) return bad("threshold is not a finite number");
  manifest.threshold = threshold.number;
  if (!finite_number(*root.get("target_far"))) return bad("target_far is not a finite number");
  const Json& files = *root.get("files");
  if (files.kind != Json::Object) return bad("malformed files");
  for (const auto& member : files.members) {
    if (!safe_relative(member.first)) return bad("a file path leaves the bundle: " + member.first);
    if (member.second.kind != Json::String || !lower_hex(member.second.text, 64))
      return bad("malformed sha256 for " + member.first);
    manifest.files[member.first] = member.second.text;
  }
  const Json& programs = *root.get("programs");
  if (programs.kind != Json::Object) return bad("malformed programs");
  for (const auto& member : programs.members) {
    if (member.second.kind != Json::String || !safe_relative(member.second.text))
      return bad("a program path leaves the bundle");
    manifest.programs[member.first] = member.second.text;
  }
  for (const auto& program : manifest.programs) {  // a file, or a folder of files (a Core ML package)
    bool listed = manifest.files.count(program.second) > 0;
    for (const auto& file : manifest.files)
      listed = listed || file.first.compare(0, program.second.size() + 1, program.second + "/") == 0;
    if (!listed) return bad("a program is not listed among the files");
  }
  const Json* enrollment = root.get("enrollment");
  if (enrollment != nullptr) {
    // manifest.py: exactly {head: "refined", thresholds: 1 to max_crops finite numbers, max_crops 1..255}
    const Json* head = enrollment->get("head");
    const Json* thresholds = enrollment->get("thresholds");
    const Json* crops = enrollment->get("max_crops");
    if (enrollment->members.size() != 3 || head == nullptr || head->kind != Json::String || head->text != "refined" ||
        crops == nullptr || crops->kind != Json::Number || !crops->integer || crops->number < 1 ||
        crops->number > 255 || thresholds == nullptr || thresholds->kind != Json::Array ||
        thresholds->items.empty() || thresholds->items.size() > static_cast<size_t>(crops->number))
      return bad("malformed manifest field 'enrollment'");
    for (const Json& threshold : thresholds->items) {
      if (!finite_number(threshold)) return bad("malformed manifest field 'enrollment'");
      manifest.enrollment_thresholds.push_back(threshold.number);
    }
    manifest.max_crops = static_cast<int>(crops->number);
  }
  bool enrolls = enrollment != nullptr;
  if (enrolls != (manifest.programs.count(kEnrollmentRole) > 0) ||
      enrolls != (manifest.programs.count(kRefinementRole) > 0))
    return bad("the enrollment program, the refinement program and their settings must come together");
  if (const Json* cascade = root.get("cascade")) {
    auto table = parse_cascade(*cascade);
    if (!table.ok()) return table.error();
    if (!enrollment) return bad("a cascade needs the enrollment program (it runs the backbone)");
    manifest.cascade = std::move(table.value());
  }
  return manifest;
}

Result<Manifest> open_manifest(const std::string& bundle, const uint8_t* public_key32) {
  auto data = read_bounded(bundle + "/manifest.json", kMaxManifestBytes, HV_BUNDLE);
  if (!data.ok()) return data.error();
  if (public_key32 != nullptr) {
    auto signature = read_bounded(bundle + "/manifest.json.sig", kEd25519SignatureSize, HV_SIGNATURE);
    if (!signature.ok())
      return fail(HV_SIGNATURE, signature.error().message + "; the app requires a signed bundle");
    if (signature.value().size() != kEd25519SignatureSize ||
        !ed25519_verify(public_key32, signature.value().data(), data.value().data(), data.value().size()))
      return fail(HV_SIGNATURE, bundle + "/manifest.json.sig: the manifest is not signed by the app's key");
  }
  return parse_manifest(data.value().data(), data.value().size());
}

Result<std::vector<uint8_t>> checked_file(const std::string& bundle, const Manifest& manifest,
                                          const std::string& relative) {
  auto listed = manifest.files.find(relative);
  if (listed == manifest.files.end()) return fail(HV_BUNDLE, relative + " is not listed in the manifest");
  auto path = bundle_path(bundle, relative);
  if (!path.ok()) return path.error();
  auto data = read_bounded(path.value(), kMaxBundleFileBytes, HV_BUNDLE);
  if (!data.ok()) return data.error();
  uint8_t digest[32];
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  if (!sha256(data.value().data(), data.value().size(), digest)) return fail(HV_BUNDLE, "cannot hash");
  for (uint8_t byte : digest) {
    hex += kHex[byte >> 4];
    hex += kHex[byte & 15];
  }
  if (hex != listed->second)
    return fail(HV_BUNDLE, bundle + "/" + relative + ": checksum differs from the manifest (altered or corrupted)");
  return data;
}

}  // namespace hyperverify

// The bundle's manifest: the C++ twin of runtime/manifest.py and the
// manifest half of runtime/trust.py (open_manifest). The signature over the
// manifest's exact bytes is checked against the app's key before any byte of
// it is parsed; then the same field checks as Python, same refusals
// (HV_SIGNATURE for the signature, HV_BUNDLE for everything else).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cascade.h"
#include "status.h"

namespace hyperverify {

constexpr size_t kMaxManifestBytes = 1 << 20;      // manifest.py MAX_MANIFEST_BYTES
constexpr size_t kMaxBundleFileBytes = 256u << 20;  // manifest.py MAX_BUNDLE_FILE_BYTES
constexpr int kBundleFormat = 2;
constexpr const char* kProgramRole = "executorch-xnnpack";
constexpr const char* kEnrollmentRole = "enrollment-xnnpack";  // manifest.py ENROLLMENT_ROLE
constexpr const char* kRefinementRole = "refinement-xnnpack";  // manifest.py REFINEMENT_ROLE
constexpr const char* kDetectorRole = "detector-xnnpack";  // manifest.py DETECTOR_ROLE

struct Manifest {
  std::string model_version;
  std::string layout_hash;
  std::string tier = "paper";  // f's size (runtime/spec.py TIERS)
  std::vector<std::string> generated;
  double threshold = 0.0;  // the floor of every user's threshold
  std::map<std::string, std::string> files;     // relative path -> sha256 hex
  std::map<std::string, std::string> programs;  // role -> relative path
  std::optional<CascadeTable> cascade;          // with the enrollment program (the backbone) only
  // With the enrollment and refinement programs only (empty, 0 without): the refined heads'
  // thresholds by number of enrollment photos (entry k - 1 for k photos) and how many crops
  // enrollment takes at most.
  std::vector<double> enrollment_thresholds;
  int max_crops = 0;

  // The threshold of a head the device enrolled from `photos` (>= 1) photos; beyond the listed
  // counts, the last (manifest.py enrollment_threshold). Needs enrollment_thresholds.
  double enrollment_threshold_for(int photos) const {
    size_t listed = enrollment_thresholds.size();
    return enrollment_thresholds[std::min(static_cast<size_t>(photos), listed) - 1];
  }
};

// Check and parse manifest bytes (no signature check).
Result<Manifest> parse_manifest(const uint8_t* data, size_t size);

// Read bundle/manifest.json; with a key (32 raw bytes) first verify
// bundle/manifest.json.sig over its exact bytes; then parse.
Result<Manifest> open_manifest(const std::string& bundle, const uint8_t* public_key32);

// A listed bundle file's bytes, confined to the bundle and checked against
// the manifest's sha256.
Result<std::vector<uint8_t>> checked_file(const std::string& bundle, const Manifest& manifest,
                                          const std::string& relative);

}  // namespace hyperverify

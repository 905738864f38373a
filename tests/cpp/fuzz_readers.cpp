// Test harness: the C++ runtime's readers on many files in one process, so
// that tests/test_cpp_trust.py can run them under ASan + UBSan (no ExecuTorch
// needed). Prints one reason tag per file, in order.
//
//   fuzz_readers manifest LAYOUT SLICE,SLICE FILE...   -> ok | bundle
//     (LAYOUT and the slices stand for what hv_open checks against the program)
//   fuzz_readers user FILE...                       -> ok | <user file reason>
//   fuzz_readers state FILE...                      -> fresh | pin_required | locked | ok
#include <cstdio>
#include <set>
#include <string>

#include "files.h"
#include "hyperverify.h"
#include "lockout.h"
#include "manifest.h"
#include "user_file.h"

using namespace hyperverify;

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  std::string kind = argv[1];
  int first = kind == "manifest" ? 4 : 2;
  for (int i = first; i < argc; i++) {
    if (kind == "state") {
      LockoutState state = read_lockout(argv[i]);
      std::puts(state.pin_required ? "pin_required" : state.failures || state.total_failures ? "ok" : "fresh");
      continue;
    }
    auto data = read_bounded(argv[i], kind == "manifest" ? kMaxManifestBytes : kMaxUserFileBytes,
                             kind == "manifest" ? HV_BUNDLE : HV_LENGTH);
    if (!data.ok()) {
      std::puts(hv_status_string(data.error().code));
      continue;
    }
    if (kind == "manifest") {
      auto manifest = parse_manifest(data.value().data(), data.value().size());
      bool ok = manifest.ok() && manifest.value().layout_hash == argv[2];
      if (ok) {
        std::set<std::string> slices(manifest.value().generated.begin(), manifest.value().generated.end());
        std::set<std::string> expected;
        std::string list = argv[3];
        for (size_t start = 0, comma; start <= list.size(); start = comma + 1) {
          comma = list.find(',', start);
          if (comma == std::string::npos) comma = list.size();
          expected.insert(list.substr(start, comma - start));
        }
        ok = slices == expected;
      }
      std::puts(ok ? "ok" : "bundle");
    } else {
      auto weights = decode_user_file(data.value().data(), data.value().size(), DecodeOptions{});
      std::puts(weights.ok() ? "ok" : hv_status_string(weights.error().code));
    }
  }
  return 0;
}

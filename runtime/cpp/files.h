// Bounded file reads and atomic writes (the C++ twins of runtime/bounded_io.py
// and runtime/atomic.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "status.h"

namespace hyperverify {

// The bytes of regular file `path`: HV_IO when it cannot be opened or is not
// a regular file, `too_large` when it has more than `limit` bytes (checked on
// the open descriptor before reading; at most limit + 1 bytes are read).
Result<std::vector<uint8_t>> read_bounded(const std::string& path, size_t limit,
                                          hv_status too_large);

// Write to a temporary sibling, fsync, rename over `path`, fsync the folder.
Status write_atomic(const std::string& path, const std::string& data);

// True when `relative` is a bundle-relative POSIX path that cannot leave the
// bundle by its text (runtime/manifest.py safe_relative).
bool safe_relative(const std::string& relative);

// bundle/relative after checking that its real path (symlinks resolved) is
// inside the bundle's real path; HV_BUNDLE otherwise.
Result<std::string> bundle_path(const std::string& bundle, const std::string& relative);

}  // namespace hyperverify

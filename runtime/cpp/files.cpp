// See files.h.
#include "files.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace hyperverify {

namespace {

struct Fd {
  int fd;
  explicit Fd(int value) : fd(value) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::vector<uint8_t>> read_bounded(const std::string& path, size_t limit,
                                          hv_status too_large) {
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) return fail(HV_IO, path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat info;
  if (::fstat(file.fd, &info) != 0 || !S_ISREG(info.st_mode))
    return fail(HV_IO, path + ": not a regular file");
  if (static_cast<uint64_t>(info.st_size) > limit)
    return fail(too_large, path + ": " + std::to_string(info.st_size) + " bytes, more than the " +
                               std::to_string(limit) + " allowed");
  std::vector<uint8_t> data(static_cast<size_t>(info.st_size) + 1);
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(file.fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(HV_IO, path + ": cannot read");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > limit) return fail(too_large, path + ": more than the " + std::to_string(limit) + " bytes allowed");
  data.resize(got);
  return data;
}

Status write_atomic(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp-XXXXXX";
  std::vector<char> name(tmp.begin(), tmp.end());
  name.push_back('\0');
  int fd = ::mkstemp(name.data());
  if (fd < 0) return fail(HV_IO, path + ": cannot create a temporary file");
  bool ok = true;
  size_t done = 0;
  while (ok && done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  ok = ok && ::rename(name.data(), path.c_str()) == 0;
  if (!ok) {
    ::unlink(name.data());
    return fail(HV_IO, path + ": cannot write");
  }
  std::string folder = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (folder.empty()) folder = "/";
  Fd dir(::open(folder.c_str(), O_RDONLY | O_CLOEXEC));
  if (dir.fd >= 0) ::fsync(dir.fd);
  return Ok{};
}

bool safe_relative(const std::string& relative) {
  if (relative.empty() || relative[0] == '/' || relative.find('\0') != std::string::npos ||
      relative.find('\\') != std::string::npos)
    return false;
  size_t start = 0;
  while (true) {
    size_t slash = relative.find('/', start);
    std::string part = relative.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Result<std::string> bundle_path(const std::string& bundle, const std::string& relative) {
  if (!safe_relative(relative)) return fail(HV_BUNDLE, "'" + relative + "' is not a path inside the bundle");
  std::unique_ptr<char, decltype(&std::free)> root(::realpath(bundle.c_str(), nullptr), std::free);
  if (!root) return fail(HV_IO, bundle + ": no such bundle folder");
  std::string joined = bundle + "/" + relative;
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(joined.c_str(), nullptr), std::free);
  if (!real) return fail(HV_BUNDLE, joined + ": cannot read (missing)");
  std::string prefix = std::string(root.get()) + "/";
  if (std::strncmp(real.get(), prefix.c_str(), prefix.size()) != 0)
    return fail(HV_BUNDLE, joined + ": leads outside the bundle (symlink)");
  return std::string(real.get());
}

}  // namespace hyperverify

// See user_file.h; the layout is documented in runtime/user_file.py.
#include "user_file.h"

#include "crypto.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace hyperverify {
namespace {

constexpr char kMagic[4] = {'H', 'V', 'U', '1'};
constexpr uint8_t kFlagSigned = 1;
constexpr uint8_t kFlagDevice = 4;  // user_file.py FLAG_DEVICE

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

float le_float(const uint8_t* p) {
  uint32_t bits = le32(p);
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buffer[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  return buffer;
}

// Strict UTF-8, as Python's bytes.decode("utf-8"): no overlongs, no
// surrogates, nothing above U+10FFFF.
bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    size_t more;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) more = 1;
    else if (c == 0xE0) { more = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) more = 2;
    else if (c == 0xED) { more = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) more = 2;
    else if (c == 0xF0) { more = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) more = 3;
    else if (c == 0xF4) { more = 3; hi = 0x8F; }
    else return false;
    if (i + more >= n) return false;  // sequence cut by the end of the field
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k <= more; k++)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    i += more + 1;
  }
  return true;
}

// runtime/user_file.py _text(): NUL padding only at the end, then UTF-8.
Result<std::string> padded_text(const uint8_t* raw, size_t size, const char* field) {
  size_t n = size;
  while (n > 0 && raw[n - 1] == 0) n--;
  if (std::memchr(raw, 0, n) != nullptr)
    return fail(HV_INVALID, fmt("%s has bytes after its NUL padding", field));
  if (!valid_utf8(raw, n)) return fail(HV_INVALID, fmt("%s is not valid UTF-8", field));
  return std::string(reinterpret_cast<const char*>(raw), n);
}

}  // namespace

float half_to_float(uint16_t half) {
  uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  uint32_t exponent = (half >> 10) & 0x1Fu;
  uint32_t mantissa = half & 0x3FFu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;  // +-0
    } else {  // subnormal: renormalise
      int32_t e = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        e--;
      }
      bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3FFu) << 13);
    }
  } else if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf / NaN
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

bool valid_user_id(const std::string& user_id) {
  return user_id.size() <= 32 && user_id.find('\0') == std::string::npos &&
         valid_utf8(reinterpret_cast<const uint8_t*>(user_id.data()), user_id.size());
}

uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, sizeof x);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t exponent = (x >> 23) & 0xFFu, mantissa = x & 0x7FFFFFu;
  if (exponent == 0xFF) return sign | 0x7C00u | (mantissa ? 0x200u : 0u);  // inf, NaN
  int e = static_cast<int>(exponent) - 127 + 15;
  if (e >= 0x1F) return sign | 0x7C00u;  // overflow: inf
  uint32_t half, rest, halfway;
  if (e <= 0) {  // a binary16 subnormal (or zero)
    if (e < -10) return sign;
    int shift = 14 - e;
    uint32_t significand = mantissa | 0x800000u;
    half = significand >> shift;
    rest = significand & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
  } else {
    half = (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
    rest = mantissa & 0x1FFFu;
    halfway = 0x1000u;
  }
  if (rest > halfway || (rest == halfway && (half & 1u))) half++;  // a carry rounds into the exponent
  return static_cast<uint16_t>(sign | half);
}

namespace {

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_padded(std::vector<uint8_t>& out, const std::string& text, size_t size) {
  out.insert(out.end(), text.begin(), text.begin() + std::min(text.size(), size));
  out.insert(out.end(), size - std::min(text.size(), size), 0);
}

}  // namespace

std::vector<uint8_t> encode_device_file(const UserWeights& weights, const uint8_t* device_key,
                                        size_t device_key_size) {
  std::vector<uint8_t> out(kMagic, kMagic + sizeof kMagic);
  put16(out, kFormatVersion);
  out.push_back(2);  // float16
  out.push_back(kFlagDevice);
  put_padded(out, weights.layout_hash, kLayoutHashSize);
  put32(out, static_cast<uint32_t>(weights.theta.size()));
  uint32_t threshold;
  std::memcpy(&threshold, &weights.threshold, sizeof threshold);
  put32(out, threshold);
  put_padded(out, weights.model_version, 32);
  put_padded(out, weights.user_id, 32);
  for (float v : weights.theta) put16(out, float_to_half(v));
  out.push_back(static_cast<uint8_t>(weights.photos));
  out.push_back(0);
  put16(out, static_cast<uint16_t>(weights.embedding.size()));
  for (float v : weights.embedding) put16(out, float_to_half(v));
  uint8_t digest[32];
  sha256(out.data(), out.size(), digest);
  out.insert(out.end(), digest, digest + 32);
  uint8_t mac[32];
  hmac_sha256(device_key, device_key_size, out.data(), out.size(), mac);
  out.insert(out.end(), mac, mac + 32);
  return out;
}

std::string int_to_hash(int64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx",
                static_cast<unsigned long long>(static_cast<uint64_t>(value)));
  return text;
}

Result<UserWeights> decode_user_file(const uint8_t* data, size_t size,
                                     const DecodeOptions& options) {
  if (data == nullptr && size != 0) return fail(HV_BAD_INPUT, "no data");
  if (size < kHeaderSize)
    return fail(HV_TRUNCATED, fmt("file is %zu bytes, shorter than the %zu-byte header", size,
                                  kHeaderSize));
  if (std::memcmp(data, kMagic, sizeof kMagic) != 0)
    return fail(HV_BAD_MAGIC, "not a hyperverify user file (bad magic)");
  uint16_t version = le16(data + 4);
  if (version != kFOnlyVersion && version != kFormatVersion)
    return fail(HV_VERSION, fmt("format version %u, this runtime reads %u and %u", version,
                                kFOnlyVersion, kFormatVersion));
  uint8_t code = data[6];
  if (code != 1 && code != 2) return fail(HV_DTYPE, fmt("unknown dtype code %u", code));
  uint8_t flags = data[7];
  if ((flags & ~(kFlagSigned | kFlagDevice)) || flags == (kFlagSigned | kFlagDevice))
    return fail(HV_INVALID, fmt("unknown flags 0x%02x", flags));
  bool is_signed = (flags & kFlagSigned) != 0, device_made = (flags & kFlagDevice) != 0;
  uint32_t count = le32(data + 24);
  if (count == 0 || count > kMaxCount)
    return fail(HV_LENGTH, fmt("theta count %u is outside 1..%u", count, kMaxCount));
  size_t itemsize = code == 1 ? 4 : 2;
  size_t theta_end = kHeaderSize + static_cast<size_t>(count) * itemsize;  // count <= kMaxCount: no overflow
  bool cascade = version == kFormatVersion;
  size_t end = theta_end + (cascade ? kCascadeBlockSize + kEmbeddingSize * itemsize : 0);
  size_t expected = end + kChecksumSize + (is_signed ? kSignatureSize : device_made ? kMacSize : 0);
  if (expected > size)
    return fail(HV_TRUNCATED, fmt("file is %zu bytes; its header promises %zu", size, expected));
  if (expected < size)
    return fail(HV_LENGTH, fmt("%zu unexpected bytes after the end of the file", size - expected));
  uint8_t digest[32];
  if (!sha256(data, end, digest)) return fail(HV_CHECKSUM, "cannot compute SHA-256");
  if (CRYPTO_memcmp(digest, data + end, kChecksumSize) != 0)
    return fail(HV_CHECKSUM, "checksum mismatch: the file is corrupted");
  if (is_signed && options.public_key != nullptr) {
    if (!ed25519_verify(options.public_key, data + end + kChecksumSize, data, end + kChecksumSize))
      return fail(HV_SIGNATURE, "bad signature: not issued by this backend's key");
  } else if (device_made && options.device_key != nullptr) {
    uint8_t mac[32];
    if (options.device_key_size < kMinDeviceKeyBytes ||
        !hmac_sha256(options.device_key, options.device_key_size, data, end + kChecksumSize, mac) ||
        CRYPTO_memcmp(mac, data + end + kChecksumSize, kMacSize) != 0)
      return fail(HV_SIGNATURE, "bad device authentication: not made with this device's key");
  } else if (options.require_signature) {
    return fail(HV_SIGNATURE,
                is_signed     ? "a signature is required but no public key was given"
                : device_made ? "the file is device-made but the app's policy accepts only backend-signed files"
                              : "the file is unsigned but a signature is required");
  }
  const uint8_t* layout = data + 8;
  for (size_t i = 0; i < kLayoutHashSize; i++)
    if (layout[i] >= 0x80) return fail(HV_LAYOUT, "layout hash is not ASCII");
  std::string layout_text(reinterpret_cast<const char*>(layout), kLayoutHashSize);
  if (options.expected_layout && layout_text != *options.expected_layout)
    return fail(HV_LAYOUT, "weights are for verifier layout " + layout_text + ", the program is " +
                               *options.expected_layout);
  float threshold = le_float(data + 28);
  if (!std::isfinite(threshold)) return fail(HV_VALUES, "threshold is NaN or infinite");
  auto value_at = [code](const uint8_t* values, size_t i) {
    return code == 1 ? le_float(values + 4 * i) : half_to_float(le16(values + 2 * i));
  };
  UserWeights weights;
  weights.theta.resize(count);
  for (uint32_t i = 0; i < count; i++) {
    float v = value_at(data + kHeaderSize, i);
    if (!std::isfinite(v)) return fail(HV_VALUES, "theta holds NaN or infinite values");
    weights.theta[i] = v;
  }
  if (cascade) {
    const uint8_t* block = data + theta_end;
    uint16_t embedding_count = le16(block + 2);
    if (block[0] == 0 || block[1] != 0 || embedding_count != kEmbeddingSize)
      return fail(HV_LENGTH, fmt("cascade block: photos %u, reserved %u, embedding count %u "
                                 "(expected 1..255, 0, %zu)", block[0], block[1], embedding_count,
                                 kEmbeddingSize));
    weights.embedding.resize(kEmbeddingSize);
    bool finite = true, nonzero = false;
    for (size_t i = 0; i < kEmbeddingSize; i++) {
      float v = value_at(block + kCascadeBlockSize, i);
      finite = finite && std::isfinite(v);
      nonzero = nonzero || v != 0.0f;
      weights.embedding[i] = v;
    }
    if (!finite || !nonzero)
      return fail(HV_VALUES, "the embedding holds NaN or infinite values, or only zeros");
    weights.photos = block[0];
  }
  auto model_version = padded_text(data + 32, 32, "model_version");
  if (!model_version.ok()) return model_version.error();
  auto user_id = padded_text(data + 64, 32, "user_id");
  if (!user_id.ok()) return user_id.error();
  weights.threshold = threshold;
  weights.layout_hash = std::move(layout_text);
  weights.model_version = std::move(model_version.value());
  weights.user_id = std::move(user_id.value());
  weights.float16 = code == 2;
  weights.is_signed = is_signed;
  weights.device_made = device_made;
  return weights;
}

}  // namespace hyperverify

// The per-user weights file (.hvu) reader: the C++ twin of runtime/user_file.py.
//
// Same layout, same checks, same order, same reason codes, so that one set of
// test vectors (tests/vectors/) is refused identically by both readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "status.h"

namespace hyperverify {

constexpr size_t kHeaderSize = 96;
constexpr size_t kChecksumSize = 32;
constexpr size_t kSignatureSize = 64;
constexpr size_t kMacSize = 32;            // HMAC-SHA256 of a device-made file
constexpr size_t kMinDeviceKeyBytes = 32;  // user_file.py MIN_DEVICE_KEY_BYTES
constexpr uint16_t kFOnlyVersion = 1;  // user_file.py F_ONLY_VERSION
constexpr uint16_t kFormatVersion = 2;  // with the cascade's block (photos, embedding)
constexpr uint32_t kMaxCount = 389985;  // spec.MAX_THETA: every slice of the largest tier's theta
constexpr size_t kEmbeddingSize = 128;  // spec.EMBEDDING_SIZE
constexpr size_t kCascadeBlockSize = 4;  // photos, reserved, embedding count
constexpr size_t kLayoutHashSize = 16;
// The largest valid file (fp32, format 2, signed): larger ones are refused
// (HV_LENGTH) from their size, before they are read (user_file.py MAX_FILE_SIZE).
constexpr size_t kMaxUserFileBytes = kHeaderSize + kMaxCount * 4 + kCascadeBlockSize +
                                     kEmbeddingSize * 4 + kChecksumSize + kSignatureSize;

struct UserWeights {
  std::vector<float> theta;  // fp32 (fp16 files converted exactly)
  float threshold = 0.0f;
  std::string layout_hash;   // 16 ASCII hex digits
  std::string model_version;
  std::string user_id;
  bool float16 = false;
  bool is_signed = false;
  std::vector<float> embedding;  // format 2: the pooled unit backbone embedding; empty in format 1
  int photos = 0;                // format 2: enrollment photos; 0 in format 1
  bool device_made = false;      // authenticated by a device key's HMAC (flags bit 2)
};

struct DecodeOptions {
  const uint8_t* public_key = nullptr;  // Ed25519, 32 raw bytes, or null
  const uint8_t* device_key = nullptr;  // the device's HMAC key (>= kMinDeviceKeyBytes), or null
  size_t device_key_size = 0;
  bool require_signature = false;
  std::optional<std::string> expected_layout;  // the program's layout hash
};

// Parse and validate; the error names the first problem found.
Result<UserWeights> decode_user_file(const uint8_t* data, size_t size,
                                     const DecodeOptions& options);

// A device-made user file (format 2, float16, HMAC'd with device_key): the
// bytes runtime/user_file.py encode(weights, device_key=...) writes.
std::vector<uint8_t> encode_device_file(const UserWeights& weights, const uint8_t* device_key,
                                        size_t device_key_size);

// A user id the file format can hold: valid UTF-8, no NUL, at most 32 bytes.
bool valid_user_id(const std::string& user_id);

// IEEE 754 binary32 -> binary16, round to nearest even (numpy's astype).
uint16_t float_to_half(float value);

// IEEE 754 binary16 -> binary32 (exact for every value, NaN payloads kept).
float half_to_float(uint16_t half);

// A 16-hex-digit hash as stored in constant methods (hash_to_int) and back.
std::string int_to_hash(int64_t value);

}  // namespace hyperverify

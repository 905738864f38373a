// SHA-256, HMAC-SHA256 and Ed25519 verification through OpenSSL libcrypto.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hyperverify {

constexpr size_t kEd25519KeySize = 32;
constexpr size_t kEd25519SignatureSize = 64;

bool sha256(const uint8_t* data, size_t size, uint8_t out[32]);

bool hmac_sha256(const uint8_t* key, size_t key_size, const uint8_t* data, size_t size, uint8_t out[32]);

// True only for a valid signature of message by key32 (32 raw bytes).
bool ed25519_verify(const uint8_t* key32, const uint8_t* signature64, const uint8_t* message,
                    size_t size);

}  // namespace hyperverify

// See crypto.h.
#include "crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>

namespace hyperverify {

bool sha256(const uint8_t* data, size_t size, uint8_t out[32]) {
  unsigned int length = 0;
  return EVP_Digest(data, size, out, &length, EVP_sha256(), nullptr) == 1 && length == 32;
}

bool hmac_sha256(const uint8_t* key, size_t key_size, const uint8_t* data, size_t size, uint8_t out[32]) {
  unsigned int length = 0;
  return HMAC(EVP_sha256(), key, static_cast<int>(key_size), data, size, out, &length) != nullptr &&
         length == 32;
}

bool ed25519_verify(const uint8_t* key32, const uint8_t* signature64, const uint8_t* message,
                    size_t size) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key32, kEd25519KeySize), EVP_PKEY_free);
  if (!key) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1)
    return false;
  return EVP_DigestVerify(ctx.get(), signature64, kEd25519SignatureSize, message, size) == 1;
}

}  // namespace hyperverify

// The C ABI (hyperverify.h) over the C++ pieces: user_file, preprocess, runner.
#include "hyperverify.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "preprocess.h"
#include "runner.h"
#include "user_file.h"

struct hv_handle {
  std::unique_ptr<hyperverify::Runner> runner;
  hyperverify::UserWeights weights;
};

namespace {

int report(const hyperverify::Error& error, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) {
    size_t n = std::min(error.message.size(), err_len - 1);
    std::memcpy(err, error.message.data(), n);
    err[n] = '\0';
  }
  return error.code;
}

int open_impl(const char* pte_path, const char* user_path, const uint8_t* public_key32,
              int require_signature, hv_handle** out, char* err, size_t err_len) {
  using namespace hyperverify;
  if (out == nullptr || pte_path == nullptr || user_path == nullptr)
    return report(fail(HV_BAD_INPUT, "hv_open needs a program path, a user file path and out"), err,
                  err_len);
  // The program first: the user file is checked against its layout hash.
  auto runner = Runner::load(pte_path);
  if (!runner.ok()) return report(runner.error(), err, err_len);
  auto data = read_file(user_path);
  if (!data.ok()) return report(data.error(), err, err_len);
  DecodeOptions options;
  options.public_key = public_key32;
  options.require_signature = require_signature != 0;
  options.expected_layout = int_to_hash(runner.value()->layout_hash());
  auto weights = decode_user_file(data.value().data(), data.value().size(), options);
  if (!weights.ok()) {
    Error error = weights.error();
    error.message = std::string(user_path) + ": " + error.message;
    return report(error, err, err_len);
  }
  std::string program_version = int_to_hash(runner.value()->model_version());
  if (weights.value().model_version != program_version)
    return report(fail(HV_MODEL_VERSION, std::string(user_path) + ": enrolled with model " +
                                             weights.value().model_version + ", the program is model " +
                                             program_version + "; re-enroll the user"),
                  err, err_len);
  auto set = runner.value()->set_user_values(weights.value().theta);
  if (!set.ok()) return report(set.error(), err, err_len);
  auto handle = std::make_unique<hv_handle>();
  handle->runner = std::move(runner.value());
  handle->weights = std::move(weights.value());
  *out = handle.release();
  return HV_OK;
}

int finish(hv_handle* handle, const hyperverify::Result<float>& logit, float* out_logit,
           int* accepted) {
  if (!logit.ok()) return logit.error().code;
  if (out_logit != nullptr) *out_logit = logit.value();
  if (accepted != nullptr) *accepted = logit.value() >= handle->weights.threshold ? 1 : 0;
  return HV_OK;
}

}  // namespace

extern "C" {

int hv_open(const char* pte_path, const char* user_path, const uint8_t* public_key32,
            int require_signature, hv_handle** out, char* err, size_t err_len) {
  if (out != nullptr) *out = nullptr;
  if (err != nullptr && err_len > 0) err[0] = '\0';
  try {
    return open_impl(pte_path, user_path, public_key32, require_signature, out, err, err_len);
  } catch (const std::bad_alloc&) {
    return report(hyperverify::fail(HV_IO, "out of memory"), err, err_len);
  } catch (const std::exception& e) {
    return report(hyperverify::fail(HV_PROGRAM, e.what()), err, err_len);
  }
}

int hv_preprocess_crop(const uint8_t* rgb, int height, int width, int channels,
                       float* input_chw) {
  auto status = hyperverify::preprocess_crop(rgb, height, width, channels, input_chw);
  return status.ok() ? HV_OK : status.error().code;
}

int hv_score_input(hv_handle* handle, const float* input_chw, float* logit, int* accepted) {
  if (handle == nullptr || input_chw == nullptr) return HV_BAD_INPUT;
  try {
    std::memcpy(handle->runner->input(), input_chw, HV_INPUT_VALUES * sizeof(float));
    return finish(handle, handle->runner->forward(), logit, accepted);
  } catch (const std::exception&) {
    return HV_PROGRAM;
  }
}

int hv_score_crop(hv_handle* handle, const uint8_t* rgb, int height, int width, int channels,
                  float* logit, int* accepted) {
  if (handle == nullptr) return HV_BAD_INPUT;
  auto status = hyperverify::preprocess_crop(rgb, height, width, channels, handle->runner->input());
  if (!status.ok()) return status.error().code;
  try {
    return finish(handle, handle->runner->forward(), logit, accepted);
  } catch (const std::exception&) {
    return HV_PROGRAM;
  }
}

float hv_threshold(const hv_handle* handle) {
  return handle == nullptr ? std::nanf("") : handle->weights.threshold;
}

void hv_close(hv_handle* handle) { delete handle; }

const char* hv_status_string(int status) {
  switch (status) {
    case HV_OK: return "ok";
    case HV_BAD_MAGIC: return "bad_magic";
    case HV_VERSION: return "version";
    case HV_TRUNCATED: return "truncated";
    case HV_LENGTH: return "length";
    case HV_CHECKSUM: return "checksum";
    case HV_SIGNATURE: return "signature";
    case HV_LAYOUT: return "layout";
    case HV_VALUES: return "values";
    case HV_DTYPE: return "dtype";
    case HV_INVALID: return "invalid";
    case HV_IO: return "io";
    case HV_BAD_INPUT: return "bad_input";
    case HV_PROGRAM: return "program";
    case HV_MODEL_VERSION: return "model_version";
    default: return "unknown";
  }
}

}  // extern "C"

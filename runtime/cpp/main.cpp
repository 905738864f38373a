// hyperverify_cli: score one aligned crop with the C API (hyperverify.h).
//
//   hyperverify_cli <bundle> <user.hvu> <crop.raw> (--pubkey HEX | --allow-unsigned)
//                   [--lockout STATE.json [--pin-verified]] [--shape H,W,C]
//                   [--dump-input FILE] [--bench N] [--f-only]
//
// The trust policy is the caller's: --pubkey (the backend's Ed25519 key, 64
// hex digits) or the explicit opt-out --allow-unsigned; without either,
// hv_open refuses (error=signature). --lockout keeps the lockout in a state
// file (hv_lockout_attach); --pin-verified stands for the app's PIN path and
// clears it before scoring.
//
// crop.raw holds raw RGB bytes, row-major (no image decoder here): 112x112x3
// (an aligned crop) or 64x64x3 (already reduced), told apart by size unless
// --shape says otherwise. Prints "score=<logit> accepted=<0|1>" and, when the
// cascade runs (--f-only turns it off: HV_F_ONLY), a second line
// "cascade escalated=<0|1> backbone=<cosine|nan>"; or "error=<reason>: message"
// on stderr with exit status 1 (2 for bad usage).
// --dump-input writes f's preprocessed input (3x64x64 float32 CHW).
// --bench N times N calls of the network alone (hv_score_input) and N calls of
// hv_score_crop (resize + normalise + network), on the calling thread, and
// prints their medians in microseconds.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "hyperverify.h"

namespace {

int fail(int status, const std::string& message, int exit_code = 1) {
  std::fprintf(stderr, "error=%s: %s\n", hv_status_string(status), message.c_str());
  return exit_code;
}

int usage(const std::string& why) {
  return fail(HV_BAD_INPUT,
              why + "\nusage: hyperverify_cli <bundle> <user.hvu> <crop.raw> (--pubkey HEX | --allow-unsigned) "
                    "[--lockout STATE.json [--pin-verified]] [--shape H,W,C] [--dump-input FILE] [--bench N] [--f-only]",
              2);
}

bool parse_hex32(const char* text, uint8_t out[32]) {
  if (std::strlen(text) != 64) return false;
  for (int i = 0; i < 32; i++) {
    unsigned value;
    if (std::sscanf(text + 2 * i, "%2x", &value) != 1 ||
        !std::isxdigit(static_cast<unsigned char>(text[2 * i])) ||
        !std::isxdigit(static_cast<unsigned char>(text[2 * i + 1])))
      return false;
    out[i] = static_cast<uint8_t>(value);
  }
  return true;
}

double median_us(std::vector<double>& samples) {
  std::sort(samples.begin(), samples.end());
  size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

template <typename F>
std::vector<double> time_calls(long calls, F&& call) {
  std::vector<double> samples;
  samples.reserve(calls);
  for (long i = 0; i < calls; i++) {
    auto start = std::chrono::steady_clock::now();
    call();
    auto stop = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
  }
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  uint8_t key[32];
  bool have_key = false, allow_unsigned = false, pin_verified = false, f_only = false;
  std::string lockout_path;
  int height = 0, width = 0, channels = 0;
  std::string dump_path;
  long bench = 0;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--pubkey" && has_value) {
      if (!parse_hex32(argv[++i], key)) return usage("--pubkey needs 64 hex digits (Ed25519)");
      have_key = true;
    } else if (arg == "--allow-unsigned") {
      allow_unsigned = true;
    } else if (arg == "--lockout" && has_value) {
      lockout_path = argv[++i];
    } else if (arg == "--pin-verified") {
      pin_verified = true;
    } else if (arg == "--f-only") {
      f_only = true;
    } else if (arg == "--shape" && has_value) {
      if (std::sscanf(argv[++i], "%d,%d,%d", &height, &width, &channels) != 3 || height <= 0 ||
          width <= 0 || channels <= 0)
        return usage("--shape needs H,W,C");
    } else if (arg == "--dump-input" && has_value) {
      dump_path = argv[++i];
    } else if (arg == "--bench" && has_value) {
      bench = std::strtol(argv[++i], nullptr, 10);
      if (bench <= 0) return usage("--bench needs a positive number of calls");
    } else if (arg.rfind("--", 0) == 0) {
      return usage("unknown or incomplete option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 3) return usage("need a bundle, a user file and a crop");
  if (pin_verified && lockout_path.empty()) return usage("--pin-verified needs --lockout");

  std::ifstream in(positional[2], std::ios::binary);
  if (!in) return fail(HV_IO, positional[2] + ": cannot open");
  constexpr std::streamsize kMaxCropBytes = 1 << 20;
  std::vector<uint8_t> crop(kMaxCropBytes + 1);
  in.read(reinterpret_cast<char*>(crop.data()), kMaxCropBytes + 1);
  crop.resize(static_cast<size_t>(in.gcount()));
  if (crop.size() > static_cast<size_t>(kMaxCropBytes))
    return fail(HV_BAD_INPUT, positional[2] + ": larger than any crop");
  if (height == 0) {  // infer the shape from the size
    int side = crop.size() == 112u * 112 * 3 ? 112 : crop.size() == 64u * 64 * 3 ? 64 : 0;
    if (side == 0)
      return fail(HV_BAD_INPUT, positional[2] + ": " + std::to_string(crop.size()) +
                                    " bytes is neither a 112x112x3 nor a 64x64x3 raw RGB crop");
    height = width = side;
    channels = 3;
  }
  if (crop.size() != static_cast<size_t>(height) * width * channels)
    return fail(HV_BAD_INPUT, positional[2] + ": size does not match --shape");

  char err[512];
  hv_handle* handle = nullptr;
  int status = hv_open(positional[0].c_str(), positional[1].c_str(), have_key ? key : nullptr,
                       (allow_unsigned ? HV_ALLOW_UNSIGNED : 0u) | (f_only ? HV_F_ONLY : 0u), &handle, err,
                       sizeof err);
  if (status != HV_OK) return fail(status, err);
  if (!lockout_path.empty()) {
    status = hv_lockout_attach(handle, lockout_path.c_str());
    if (status == HV_OK && pin_verified) status = hv_lockout_pin_verified(handle);
    if (status != HV_OK) {
      hv_close(handle);
      return fail(status, lockout_path + ": cannot use the lockout state file");
    }
  }

  hv_decision decision;
  status = hv_verify_crop(handle, crop.data(), height, width, channels, &decision);
  if (status == HV_LOCKED_OUT || status == HV_PIN_REQUIRED) {
    double locked_for = 0.0;
    int pin = 0;
    hv_lockout_status(handle, &locked_for, &pin);
    hv_close(handle);
    return fail(status, pin ? std::string("only the PIN unlocks now")
                            : "locked for " + std::to_string(locked_for) + " s");
  }
  if (status != HV_OK) {
    hv_close(handle);
    return fail(status, "cannot score " + positional[2]);
  }
  std::printf("score=%.9g accepted=%d\n", decision.logit, decision.accepted);
  if (hv_mode(handle) == 1)
    std::printf("cascade escalated=%d backbone=%.9g\n", decision.escalated, decision.backbone_score);

  std::vector<float> input(HV_INPUT_VALUES);
  hv_preprocess_crop(crop.data(), height, width, channels, input.data());
  if (!dump_path.empty()) {
    std::ofstream out(dump_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(input.data()), input.size() * sizeof(float));
    if (!out) {
      hv_close(handle);
      return fail(HV_IO, dump_path + ": cannot write");
    }
  }
  if (bench > 0) {
    float sink = 0.0f;
    time_calls(std::min(bench, 100L), [&] { hv_score_input(handle, input.data(), &sink, nullptr); });
    auto forward = time_calls(bench, [&] { hv_score_input(handle, input.data(), &sink, nullptr); });
    auto full = time_calls(bench, [&] {
      hv_score_crop(handle, crop.data(), height, width, channels, &sink, nullptr);
    });
    std::printf("bench calls=%ld threads=1 forward_median_us=%.2f crop_median_us=%.2f\n", bench,
                median_us(forward), median_us(full));
  }
  hv_close(handle);
  return 0;
}

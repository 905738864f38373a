// hyperverify_cli: score one aligned crop with the C API (hyperverify.h), or
// enroll on the device (hv_enroll).
//
//   hyperverify_cli <bundle> <user.hvu> <crop.raw> (--pubkey HEX | --allow-unsigned)
//                   [--device-key HEX --user-files device|either]
//                   [--lockout STATE.json [--pin-verified]] [--shape H,W,C]
//                   [--dump-input FILE] [--bench N] [--f-only] [--frame H,W,LAYOUT]
//   hyperverify_cli enroll <bundle> <out.hvu> <crop.raw>... --pubkey HEX --device-key HEX [--user-id ID]
//
// enroll: 1 to the manifest's max_crops 112x112x3 raw RGB aligned crops of one
// person -> a device-made user file; prints "enrolled photos=<K> path=<out>".
// --device-key: the device's secret HMAC key (at least 64 hex digits).
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
// --frame H,W,LAYOUT: the file is a whole camera frame (LAYOUT bgr, rgb, bgra
// or rgba) and hv_verify_frame decides on it: prints "reason=<tag> score=<logit>
// accepted=<0|1> escalated=<0|1> backbone=<cosine|nan>" and, when a face was
// chosen, "face box=x,y,w,h score=<detector score> landmarks=x1,y1,...,x5,y5";
// --bench N then times N whole frames (detection to decision) instead.
// --dump-input writes f's preprocessed input (3x64x64 float32 CHW).
// --bench N times N calls of the network alone (hv_score_input) and N calls of
// hv_score_crop (resize + normalise + network), on the calling thread, and
// prints their medians in microseconds.
#include <algorithm>
#include <cctype>
#include <cmath>
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
                    "[--device-key HEX --user-files device|either] [--lockout STATE.json [--pin-verified]] [--shape H,W,C] "
                    "[--dump-input FILE] [--bench N] [--f-only] [--frame H,W,LAYOUT]\n       hyperverify_cli enroll <bundle> <out.hvu> "
                    "<crop.raw>... --pubkey HEX --device-key HEX [--user-id ID]",
              2);
}

bool parse_hex(const char* text, std::vector<uint8_t>& out) {
  size_t n = std::strlen(text);
  if (n == 0 || n % 2) return false;
  out.resize(n / 2);
  for (size_t i = 0; i < n / 2; i++) {
    unsigned value;
    if (std::sscanf(text + 2 * i, "%2x", &value) != 1 ||
        !std::isxdigit(static_cast<unsigned char>(text[2 * i])) ||
        !std::isxdigit(static_cast<unsigned char>(text[2 * i + 1])))
      return false;
    out[i] = static_cast<uint8_t>(value);
  }
  return true;
}

bool parse_hex32(const char* text, uint8_t out[32]) {
  std::vector<uint8_t> bytes;
  if (!parse_hex(text, bytes) || bytes.size() != 32) return false;
  std::memcpy(out, bytes.data(), 32);
  return true;
}

// Read a raw crop file of at most `limit` bytes; empty on failure.
bool read_file(const std::string& path, size_t limit, std::vector<uint8_t>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.resize(limit + 1);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(limit + 1));
  out.resize(static_cast<size_t>(in.gcount()));
  return true;
}

int enroll_main(int argc, char** argv) {
  std::vector<std::string> positional;
  uint8_t key[32];
  std::vector<uint8_t> device_key;
  bool have_key = false;
  std::string user_id = "owner";
  for (int i = 2; i < argc; i++) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--pubkey" && has_value) {
      if (!parse_hex32(argv[++i], key)) return usage("--pubkey needs 64 hex digits (Ed25519)");
      have_key = true;
    } else if (arg == "--device-key" && has_value) {
      if (!parse_hex(argv[++i], device_key)) return usage("--device-key needs hex digits");
    } else if (arg == "--user-id" && has_value) {
      user_id = argv[++i];
    } else if (arg.rfind("--", 0) == 0) {
      return usage("unknown or incomplete option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() < 3) return usage("enroll needs a bundle, an output file and at least one crop");
  if (!have_key || device_key.empty()) return usage("enroll needs --pubkey and --device-key");
  constexpr size_t kCrop = 112u * 112 * 3;
  std::vector<uint8_t> crops;
  for (size_t k = 2; k < positional.size(); k++) {
    std::vector<uint8_t> crop;
    if (!read_file(positional[k], kCrop, crop)) return fail(HV_IO, positional[k] + ": cannot open");
    if (crop.size() != kCrop) return fail(HV_BAD_INPUT, positional[k] + ": not a 112x112x3 raw RGB crop");
    crops.insert(crops.end(), crop.begin(), crop.end());
  }
  hv_trust trust{key, device_key.data(), device_key.size(), HV_USER_FILES_DEVICE};
  char err[512];
  int count = static_cast<int>(positional.size() - 2);
  int status = hv_enroll(positional[0].c_str(), &trust, crops.data(), count, user_id.c_str(),
                         positional[1].c_str(), err, sizeof err);
  if (status != HV_OK) return fail(status, err);
  std::printf("enrolled photos=%d path=%s\n", count, positional[1].c_str());
  return 0;
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

int frame_layout(const std::string& name) {
  if (name == "bgr") return HV_FRAME_BGR;
  if (name == "rgb") return HV_FRAME_RGB;
  if (name == "bgra") return HV_FRAME_BGRA;
  if (name == "rgba") return HV_FRAME_RGBA;
  return -1;
}

// The --frame path: one hv_verify_frame call (or --bench N of them, lockout detached).
int verify_frame_main(hv_handle* handle, const std::vector<uint8_t>& pixels, int height, int width, int layout,
                      long bench) {
  size_t row_bytes = pixels.size() / static_cast<size_t>(height);
  hv_frame_decision decided;
  if (bench > 0) {
    auto frames = time_calls(bench, [&] { hv_verify_frame(handle, pixels.data(), height, width, row_bytes, layout, &decided); });
    std::printf("bench frames=%ld threads=1 frame_median_us=%.2f\n", bench, median_us(frames));
    return 0;
  }
  int status = hv_verify_frame(handle, pixels.data(), height, width, row_bytes, layout, &decided);
  if (status != HV_OK) return fail(status, "cannot decide on the frame");
  const hv_decision& d = decided.decision;
  bool judged = decided.reason <= HV_REASON_REJECTED;  // a gated frame's decision is all zero: print NaN, not 0
  std::printf("reason=%s score=%.9g accepted=%d escalated=%d backbone=%.9g\n", hv_reason_string(decided.reason),
              judged ? d.logit : std::nanf(""), d.accepted, d.escalated, judged ? d.backbone_score : std::nanf(""));
  if (decided.reason != HV_REASON_NO_FACE) {
    std::printf("face box=%.6f,%.6f,%.6f,%.6f score=%.6f landmarks=", decided.box[0], decided.box[1],
                decided.box[2], decided.box[3], decided.detector_score);
    for (int k = 0; k < 10; k++) std::printf(k ? ",%.6f" : "%.6f", decided.landmarks[k]);
    std::printf("\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "enroll") return enroll_main(argc, argv);
  std::vector<std::string> positional;
  std::vector<uint8_t> device_key;
  int user_files = HV_USER_FILES_BACKEND;
  uint8_t key[32];
  bool have_key = false, allow_unsigned = false, pin_verified = false, f_only = false;
  std::string lockout_path;
  int height = 0, width = 0, channels = 0;
  std::string dump_path;
  long bench = 0;
  int frame = -1;  // a frame layout (HV_FRAME_*) with --frame
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--pubkey" && has_value) {
      if (!parse_hex32(argv[++i], key)) return usage("--pubkey needs 64 hex digits (Ed25519)");
      have_key = true;
    } else if (arg == "--allow-unsigned") {
      allow_unsigned = true;
    } else if (arg == "--device-key" && has_value) {
      if (!parse_hex(argv[++i], device_key)) return usage("--device-key needs hex digits");
    } else if (arg == "--user-files" && has_value) {
      std::string which = argv[++i];
      if (which == "device") user_files = HV_USER_FILES_DEVICE;
      else if (which == "either") user_files = HV_USER_FILES_EITHER;
      else if (which != "backend") return usage("--user-files is backend, device or either");
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
    } else if (arg == "--frame" && has_value) {
      char layout[8] = "";
      if (std::sscanf(argv[++i], "%d,%d,%7s", &height, &width, layout) != 3 || height <= 0 || width <= 0 ||
          height > HV_MAX_FRAME_SIDE || width > HV_MAX_FRAME_SIDE || (frame = frame_layout(layout)) < 0)
        return usage("--frame needs H,W,LAYOUT with LAYOUT bgr, rgb, bgra or rgba");
      channels = frame == HV_FRAME_BGR || frame == HV_FRAME_RGB ? 3 : 4;
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
  const std::streamsize kMaxCropBytes = frame >= 0 ? std::streamsize{height} * width * channels : 1 << 20;
  std::vector<uint8_t> crop(kMaxCropBytes + 1);
  in.read(reinterpret_cast<char*>(crop.data()), kMaxCropBytes + 1);
  crop.resize(static_cast<size_t>(in.gcount()));
  if (crop.size() > static_cast<size_t>(kMaxCropBytes))
    return fail(HV_BAD_INPUT, positional[2] + (frame >= 0 ? ": larger than --frame says" : ": larger than any crop"));
  if (height == 0) {  // infer the shape from the size
    int side = crop.size() == 112u * 112 * 3 ? 112 : crop.size() == 64u * 64 * 3 ? 64 : 0;
    if (side == 0)
      return fail(HV_BAD_INPUT, positional[2] + ": " + std::to_string(crop.size()) +
                                    " bytes is neither a 112x112x3 nor a 64x64x3 raw RGB crop");
    height = width = side;
    channels = 3;
  }
  if (crop.size() != static_cast<size_t>(height) * width * channels)
    return fail(HV_BAD_INPUT, positional[2] + ": size does not match --shape or --frame");

  char err[512];
  hv_handle* handle = nullptr;
  hv_trust trust{have_key ? key : nullptr, device_key.empty() ? nullptr : device_key.data(), device_key.size(),
                 user_files};
  int status = hv_open_trusted(positional[0].c_str(), positional[1].c_str(), &trust,
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

  if (frame >= 0) {
    int done = verify_frame_main(handle, crop, height, width, frame, bench);
    hv_close(handle);
    return done;
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

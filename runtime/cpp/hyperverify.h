/*
 * hyperverify C runtime: one user's face verifier on a device.
 *
 * A plain C interface (no C++ types cross it), so Swift imports it through a
 * module map / bridging header and Kotlin through a thin JNI shim.
 *
 *   hv_handle* h = NULL;
 *   char err[256];
 *   int s = hv_open("verifier.pte", "alice.hvu", backend_key32, 1, &h, err, sizeof err);
 *   if (s != HV_OK) { report(hv_status_string(s), err); }
 *   float logit; int accepted;
 *   s = hv_score_crop(h, rgb, 112, 112, 3, &logit, &accepted);
 *   hv_close(h);
 *
 * Inputs and meaning (the contract lives in runtime/spec.py):
 *   - the crop is the ALIGNED face (runtime/faces.py: YuNet landmarks, similarity
 *     warp to the 112x112 ArcFace template), RGB, uint8, rows of width*3 bytes;
 *   - it is reduced to 64x64 by area interpolation with the same weights and
 *     rounding as OpenCV's cv::resize(INTER_AREA) (what spec.reduce_crop does),
 *     then normalised to (p - 127.5) / 127.5, channels first;
 *   - a 64x64x3 crop is taken as already reduced (no resize);
 *   - the logit is f(x; theta_user); accepted = logit >= the user's threshold.
 *
 * Status codes: the reason tags of runtime/user_file.py (UserFileError.reason)
 * plus io, bad_input, program and model_version; hv_status_string() returns
 * the tag.
 *
 * Threads: a handle is not thread-safe; use one per thread (or lock). The
 * network runs on the calling thread (no thread pool): for a 3 MFLOP model a
 * pool costs more than it saves.
 */
#ifndef HYPERVERIFY_H
#define HYPERVERIFY_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define HV_API __declspec(dllexport)
#else
#define HV_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hv_status {
  HV_OK = 0,
  HV_BAD_MAGIC = 1,    /* not a user weights file */
  HV_VERSION = 2,      /* user file format version this runtime cannot read */
  HV_TRUNCATED = 3,    /* the user file is shorter than its header promises */
  HV_LENGTH = 4,       /* theta count out of range, or bytes after the end */
  HV_CHECKSUM = 5,     /* SHA-256 mismatch: the user file is corrupted */
  HV_SIGNATURE = 6,    /* bad Ed25519 signature, or unsigned when one is required */
  HV_LAYOUT = 7,       /* weights made for another verifier layout than the program's */
  HV_VALUES = 8,       /* NaN or infinite threshold or theta */
  HV_DTYPE = 9,        /* unknown theta dtype code */
  HV_INVALID = 10,     /* any other malformed field (unknown flags, bad text) */
  HV_IO = 11,          /* a file cannot be read */
  HV_BAD_INPUT = 12,   /* a bad argument: NULL pointer, wrong crop shape */
  HV_PROGRAM = 13,     /* the .pte cannot be loaded or run, or is not a verifier */
  HV_MODEL_VERSION = 14 /* weights enrolled with another model than the program's */
} hv_status;

#define HV_CROP_SIZE 112    /* side of the aligned crop */
#define HV_INPUT_SIZE 64    /* side of f's input */
#define HV_INPUT_VALUES (3 * HV_INPUT_SIZE * HV_INPUT_SIZE)

typedef struct hv_handle hv_handle;

/*
 * Load the shared program and one user's weights file, checking the file in
 * the same order as runtime/user_file.py decode() and then against the
 * program's constant methods (layout_hash, model_version, input_size).
 *
 * public_key32: the backend's Ed25519 public key (32 raw bytes) or NULL; a
 * signed file is verified against it. require_signature != 0 refuses an
 * unsigned file (and a signed one when no key is given).
 * On failure *out is NULL and err (if not NULL) holds a NUL-terminated message.
 */
HV_API int hv_open(const char* pte_path, const char* user_path,
                   const uint8_t* public_key32, int require_signature,
                   hv_handle** out, char* err, size_t err_len);

/*
 * Score one aligned RGB crop: height x width x channels uint8, row-major,
 * 112x112x3 (resized) or 64x64x3 (used as is). Anything else is HV_BAD_INPUT.
 * logit and accepted may each be NULL.
 */
HV_API int hv_score_crop(hv_handle* handle, const uint8_t* rgb, int height,
                         int width, int channels, float* logit, int* accepted);

/* The preprocessing alone: crop as for hv_score_crop -> HV_INPUT_VALUES floats (CHW). */
HV_API int hv_preprocess_crop(const uint8_t* rgb, int height, int width,
                              int channels, float* input_chw);

/* The network alone, on an already preprocessed 1x3x64x64 CHW input. */
HV_API int hv_score_input(hv_handle* handle, const float* input_chw,
                          float* logit, int* accepted);

/* The user's calibrated threshold on the logit (NaN for a NULL handle). */
HV_API float hv_threshold(const hv_handle* handle);

/* Release everything; NULL is allowed. */
HV_API void hv_close(hv_handle* handle);

/* The reason tag of a status ("ok", "bad_magic", ...), "unknown" otherwise. */
HV_API const char* hv_status_string(int status);

#ifdef __cplusplus
}
#endif

#endif /* HYPERVERIFY_H */

// hv_status_string: the reason tag of each status (hyperverify.h), shared by
// the C ABI and the readers' test harness.
#include "hyperverify.h"

extern "C" {

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
    case HV_BUNDLE: return "bundle";
    case HV_LOCKED_OUT: return "locked_out";
    case HV_PIN_REQUIRED: return "pin_required";
    default: return "unknown";
  }
}

}  // extern "C"

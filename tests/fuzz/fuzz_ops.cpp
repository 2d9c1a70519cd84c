// libFuzzer entry point; the target is in targets.h (scripts/fuzz.sh builds and runs it).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  brain::fuzz::ops(data, size);
  return 0;
}

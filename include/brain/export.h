// Symbol visibility for the public API. libbrain is built with default visibility; the macro
// marks what is public so a hidden-visibility build stays a one-line change.
#pragma once

#if defined(BRAIN_BUILDING_LIBRARY)
#define BRAIN_API __attribute__((visibility("default")))
#else
#define BRAIN_API
#endif

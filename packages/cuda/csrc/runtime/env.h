// Switches read from the environment (A/B timing toggles, FLASHSERVE_*=1).
#pragma once
#include <cstdlib>

namespace flashserve {

// Whether the variable is set to a value starting with '1'. Callers read it once (a function-local
// static): a switch holds for the process.
inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && v[0] == '1';
}

}  // namespace flashserve

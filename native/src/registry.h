// Native modules register their exports here (static registrars), so each module lives in its
// own files and addon.cc never needs to know them.
#pragma once
#include <napi.h>
#include <vector>

namespace ha {

using InitFn = void (*)(Napi::Env env, Napi::Object exports);

inline std::vector<InitFn>& Registry() {
  static std::vector<InitFn> fns;
  return fns;
}

struct Registrar {
  explicit Registrar(InitFn fn) { Registry().push_back(fn); }
};

}  // namespace ha

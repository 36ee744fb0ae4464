// Native objects owned by a JS handle (a Napi::External): closed and freed by the External's
// finalizer, and closed when the Node environment exits (env cleanup hook) if JS never closed
// them. Close() is idempotent and removes the hook. Boxes derive from OwnedHandle<Box> (CRTP) and
// implement OnClose().
#pragma once
#include <napi.h>

namespace ha {

template <typename Box>
class OwnedHandle {
 public:
  // Hooks the environment's cleanup and returns the JS handle owning `box`.
  static Napi::External<Box> Wrap(Napi::Env env, Box* box) {
    static_cast<OwnedHandle*>(box)->env_ = env;
    napi_add_env_cleanup_hook(env, &OwnedHandle::Hook, box);
    return Napi::External<Box>::New(env, box, [](Napi::Env, Box* b) {
      b->Close();
      delete b;
    });
  }

  // The box behind info[0], or nullptr after throwing (not a handle).
  static Box* Unwrap(const Napi::CallbackInfo& info, const char* what) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::Error e = Napi::Error::New(info.Env(), std::string("not a ") + what + " handle");
      e.Set("code", "ERR_RFS_HANDLE");
      e.ThrowAsJavaScriptException();
      return nullptr;
    }
    return info[0].As<Napi::External<Box>>().Data();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    static_cast<Box*>(this)->OnClose();
    if (env_ != nullptr) napi_remove_env_cleanup_hook(env_, &OwnedHandle::Hook, static_cast<Box*>(this));
  }

  bool closed() const { return closed_; }

 private:
  static void Hook(void* arg) { static_cast<Box*>(arg)->Close(); }
  napi_env env_ = nullptr;
  bool closed_ = false;
};

}  // namespace ha

// Events from native threads to JS, shared by the native modules: a type and named fields,
// delivered to a JS callback as (type, object) through a ThreadSafeFunction called with
// NonBlockingCall, so a native thread never waits on the JS thread; Close() releases it.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ha {

struct JsEvent {
  std::string type;
  std::vector<std::pair<std::string, std::string>> strings;
  std::vector<std::pair<std::string, double>> nums;
  std::vector<std::pair<std::string, bool>> flags;

  // A string field; an empty value is left out unless keep_empty.
  JsEvent& Str(const char* name, std::string value, bool keep_empty = false) {
    if (!value.empty() || keep_empty) strings.emplace_back(name, std::move(value));
    return *this;
  }
  JsEvent& Num(const char* name, double value) { nums.emplace_back(name, value); return *this; }
  JsEvent& Flag(const char* name, bool value) { flags.emplace_back(name, value); return *this; }
};

namespace detail {
inline void CallJsEvent(Napi::Env env, Napi::Function fn, std::nullptr_t*, JsEvent* ev) {
  if (env != nullptr && fn != nullptr) {
    Napi::Object o = Napi::Object::New(env);
    for (auto& [k, v] : ev->strings) o.Set(k, v);
    for (auto& [k, v] : ev->nums) o.Set(k, v);
    for (auto& [k, v] : ev->flags) o.Set(k, v);
    fn.Call({Napi::String::New(env, ev->type), o});
  }
  delete ev;
}
}  // namespace detail

using JsEventTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, JsEvent, detail::CallJsEvent>;

class JsEvents {
 public:
  static std::shared_ptr<JsEvents> Make(Napi::Env env, Napi::Function fn, const char* name) {
    auto e = std::make_shared<JsEvents>();
    e->tsfn_ = JsEventTsfn::New(env, fn, name, 0, 1);
    e->live_ = true;
    return e;
  }
  // From any thread until Close(); dropped (never blocks) when the queue refuses it.
  void Send(JsEvent&& e) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!live_) return;
    auto* p = new JsEvent(std::move(e));
    if (tsfn_.NonBlockingCall(p) != napi_ok) delete p;
  }
  void Close() {
    std::lock_guard<std::mutex> lk(mu_);
    if (!live_) return;
    live_ = false;
    tsfn_.Release();
  }
  // Ref/Unref from the JS thread (whether pending events keep the process alive).
  JsEventTsfn& tsfn() { return tsfn_; }
  // Unref from the JS thread if not closed yet.
  void Unref(Napi::Env env) {
    std::lock_guard<std::mutex> lk(mu_);
    if (live_) tsfn_.Unref(env);
  }

 private:
  std::mutex mu_;
  bool live_ = false;
  JsEventTsfn tsfn_;
};

}  // namespace ha

// The Node-API surface of the native addon. JS (src/native.ts) validates arguments; this file
// converts them, runs blocking work on the libuv thread pool (never on the JS thread) and
// settles promises.
#include <napi.h>

#include "arp.h"
#include "registry.h"

namespace {

class ArpProbeWorker : public Napi::AsyncWorker {
 public:
  ArpProbeWorker(Napi::Env env, std::string ifname, std::string ip, int window_ms, int probes)
      : Napi::AsyncWorker(env, "ha:arpProbe"), deferred_(Napi::Promise::Deferred::New(env)),
        ifname_(std::move(ifname)), ip_(std::move(ip)), window_ms_(window_ms), probes_(probes) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { result_ = ha::ArpProbe(ifname_, ip_, window_ms_, probes_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!result_.error.empty()) {
      deferred_.Reject(Napi::Error::New(env, result_.error).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("inUse", Napi::Boolean::New(env, result_.in_use));
    if (result_.in_use) o.Set("mac", Napi::String::New(env, result_.mac));
    o.Set("ms", Napi::Number::New(env, result_.ms));
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string ifname_, ip_;
  int window_ms_, probes_;
  ha::ArpProbeResult result_;
};

// arpProbe(ifname, ip, windowMs, probes) -> Promise<{ inUse, mac?, ms }>
Napi::Value ArpProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "arpProbe(ifname: string, ip: string, windowMs: number, probes: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new ArpProbeWorker(env, info[0].As<Napi::String>(), info[1].As<Napi::String>(),
                               info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// arpAnnounce(ifname, ip, count): one non-blocking raw send per copy; throws on error.
Napi::Value ArpAnnounce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "arpAnnounce(ifname: string, ip: string, count: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string err = ha::ArpAnnounce(info[0].As<Napi::String>(), info[1].As<Napi::String>(), info[2].As<Napi::Number>().Int32Value());
  if (!err.empty()) Napi::Error::New(env, err).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("arpProbe", Napi::Function::New(env, ArpProbe, "arpProbe"));
  exports.Set("arpAnnounce", Napi::Function::New(env, ArpAnnounce, "arpAnnounce"));
  exports.Set("version", Napi::Number::New(env, 1));
  // Modules in their own files (rfs/...) add their exports.
  for (ha::InitFn fn : ha::Registry()) fn(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ha_native, Init)

// Node-API surface of the dirty tracker (src/rfs-dirty.ts validates arguments before they get
// here). The calls are synchronous and small; the hot path is the C++ API used by native threads.
#include <napi.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "../registry.h"
#include "dirty.h"

namespace ha::rfs {
namespace {

// Tags the external that carries a tracker to other native modules.
const napi_type_tag kTrackerTag = {0x6861726673646972ull, 0x74795f7472616b31ull};

Napi::Value ThrowStatus(Napi::Env env, const DirtyStatus& s) {
  Napi::Error e = Napi::Error::New(env, s.message);
  e.Set("code", Napi::String::New(env, s.code));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

uint64_t U64(const Napi::Value& v) {
  if (v.IsBigInt()) { bool lossless; return v.As<Napi::BigInt>().Uint64Value(&lossless); }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d > 0)) return 0;
  if (d >= 18446744073709551615.0) return UINT64_MAX;
  return static_cast<uint64_t>(d);
}

class TrackerWrap : public Napi::ObjectWrap<TrackerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RfsDirtyTracker", {
      InstanceMethod<&TrackerWrap::MarkData>("markData"),
      InstanceMethod<&TrackerWrap::MarkPath>("markPath"),
      InstanceMethod<&TrackerWrap::MarkMany>("markMany"),
      InstanceMethod<&TrackerWrap::MarkRename>("markRename"),
      InstanceMethod<&TrackerWrap::MarkUnlink>("markUnlink"),
      InstanceMethod<&TrackerWrap::Checkpoint>("checkpoint"),
      InstanceMethod<&TrackerWrap::ClearUpTo>("clearUpTo"),
      InstanceMethod<&TrackerWrap::ClearAll>("clearAll"),
      InstanceMethod<&TrackerWrap::ClearEntries>("clearEntries"),
      InstanceMethod<&TrackerWrap::Snapshot>("snapshot"),
      InstanceMethod<&TrackerWrap::Stats>("stats"),
      InstanceMethod<&TrackerWrap::Compact>("compact"),
      InstanceMethod<&TrackerWrap::Flush>("flush"),
      InstanceMethod<&TrackerWrap::Close>("close"),
      InstanceMethod<&TrackerWrap::SetCompactThreshold>("setCompactThreshold"),
      InstanceMethod<&TrackerWrap::External>("external"),
      InstanceMethod<&TrackerWrap::Bench>("bench"),
    });
  }

  // new RfsDirtyTracker(dir, zoneBytes)
  TrackerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrackerWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "RfsDirtyTracker(dir: string, zoneBytes: number)").ThrowAsJavaScriptException();
      return;
    }
    DirtyStatus s = DirtyTracker::Open(info[0].As<Napi::String>(), U64(info[1]), &tracker_);
    if (!s.ok()) { ThrowStatus(env, s); return; }
    // Close (flush, release the lock) when the environment goes away without close().
    hook_ = new std::weak_ptr<DirtyTracker>(tracker_);
    env_ = env;
    napi_add_env_cleanup_hook(env, &TrackerWrap::Cleanup, hook_);
  }

  ~TrackerWrap() override {
    if (hook_) {
      napi_remove_env_cleanup_hook(env_, &TrackerWrap::Cleanup, hook_);
      delete hook_;
    }
  }

 private:
  static void Cleanup(void* arg) {
    auto* w = static_cast<std::weak_ptr<DirtyTracker>*>(arg);
    if (auto t = w->lock()) t->Close();
  }

  Napi::Value Epoch(Napi::Env env, const DirtyStatus& s, uint64_t epoch) {
    if (!s.ok()) return ThrowStatus(env, s);
    return Napi::Number::New(env, static_cast<double>(epoch));
  }
  Napi::Value Done(Napi::Env env, const DirtyStatus& s) {
    if (!s.ok()) return ThrowStatus(env, s);
    return env.Undefined();
  }

  Napi::Value MarkData(const Napi::CallbackInfo& info) {
    uint64_t epoch = 0;
    DirtyStatus s = tracker_->MarkData(info[0].As<Napi::String>(), U64(info[1]), U64(info[2]), &epoch);
    return Epoch(info.Env(), s, epoch);
  }
  // markMany(paths: string[], offsets: Float64Array, lengths: Float64Array, meta: Uint8Array)
  Napi::Value MarkMany(const Napi::CallbackInfo& info) {
    Napi::Array paths = info[0].As<Napi::Array>();
    Napi::Float64Array offs = info[1].As<Napi::Float64Array>();
    Napi::Float64Array lens = info[2].As<Napi::Float64Array>();
    Napi::Uint8Array meta = info[3].As<Napi::Uint8Array>();
    const uint32_t n = paths.Length();
    std::vector<DirtyMark> marks(n);
    for (uint32_t i = 0; i < n; i++) {
      marks[i].path = paths.Get(i).As<Napi::String>();
      marks[i].offset = static_cast<uint64_t>(offs[i]);
      marks[i].length = static_cast<uint64_t>(lens[i]);
      marks[i].meta = meta[i] != 0;
    }
    uint64_t epoch = 0;
    DirtyStatus s = tracker_->MarkMany(marks, &epoch);
    return Epoch(info.Env(), s, epoch);
  }
  Napi::Value MarkPath(const Napi::CallbackInfo& info) {
    uint64_t epoch = 0;
    DirtyStatus s = tracker_->MarkPath(info[0].As<Napi::String>(), &epoch);
    return Epoch(info.Env(), s, epoch);
  }
  Napi::Value MarkRename(const Napi::CallbackInfo& info) {
    uint64_t epoch = 0;
    DirtyStatus s = tracker_->MarkRename(info[0].As<Napi::String>(), info[1].As<Napi::String>(),
                                         static_cast<uint32_t>(U64(info[2])), &epoch);
    return Epoch(info.Env(), s, epoch);
  }
  Napi::Value MarkUnlink(const Napi::CallbackInfo& info) {
    uint64_t epoch = 0;
    DirtyStatus s = tracker_->MarkUnlink(info[0].As<Napi::String>(), &epoch);
    return Epoch(info.Env(), s, epoch);
  }
  Napi::Value Checkpoint(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(tracker_->Checkpoint()));
  }
  Napi::Value ClearUpTo(const Napi::CallbackInfo& info) { return Done(info.Env(), tracker_->ClearUpTo(U64(info[0]))); }
  Napi::Value ClearAll(const Napi::CallbackInfo& info) { return Done(info.Env(), tracker_->ClearAll()); }
  Napi::Value ClearEntries(const Napi::CallbackInfo& info) {
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<std::string> paths;
    paths.reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); i++) paths.push_back(a.Get(i).As<Napi::String>());
    uint64_t max = info.Length() > 1 && info[1].IsNumber() ? U64(info[1]) : UINT64_MAX;
    return Done(info.Env(), tracker_->ClearEntries(paths, max));
  }
  Napi::Value Snapshot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<DirtyEntry> v = tracker_->Snapshot();
    Napi::Array out = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) {
      const DirtyEntry& d = v[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("path", Napi::String::New(env, d.path));
      Napi::Array zones = Napi::Array::New(env, d.zones.size());
      for (size_t k = 0; k < d.zones.size(); k++) {
        Napi::Array r = Napi::Array::New(env, 2);
        r.Set(0u, Napi::Number::New(env, static_cast<double>(d.zones[k].first)));
        r.Set(1u, Napi::Number::New(env, static_cast<double>(d.zones[k].second)));
        zones.Set(static_cast<uint32_t>(k), r);
      }
      o.Set("zones", zones);
      o.Set("meta", Napi::Boolean::New(env, d.meta));
      o.Set("epoch", Napi::Number::New(env, static_cast<double>(d.epoch)));
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    DirtyStats s = tracker_->Stats();
    Napi::Object o = Napi::Object::New(env);
    auto n = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
    n("entries", s.entries); n("ranges", s.ranges); n("zones", s.zones); n("metaEntries", s.metaEntries);
    n("logBytes", s.logBytes); n("snapshotBytes", s.snapshotBytes); n("fsyncs", s.fsyncs); n("marks", s.marks);
    n("loggedMarks", s.loggedMarks); n("compactions", s.compactions); n("generation", s.generation);
    n("epoch", s.epoch); n("zoneBytes", s.zoneBytes);
    return o;
  }
  Napi::Value Compact(const Napi::CallbackInfo& info) { return Done(info.Env(), tracker_->Compact()); }
  Napi::Value Flush(const Napi::CallbackInfo& info) { return Done(info.Env(), tracker_->Flush()); }
  Napi::Value Close(const Napi::CallbackInfo& info) { return Done(info.Env(), tracker_->Close()); }
  Napi::Value SetCompactThreshold(const Napi::CallbackInfo& info) {
    tracker_->SetCompactThreshold(U64(info[0]));
    return info.Env().Undefined();
  }
  // An opaque value other native modules turn back into the tracker (DirtyTrackerFromValue).
  Napi::Value External(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto* holder = new std::shared_ptr<DirtyTracker>(tracker_);
    auto ext = Napi::External<std::shared_ptr<DirtyTracker>>::New(env, holder, [](Napi::Env, std::shared_ptr<DirtyTracker>* p) { delete p; });
    ext.TypeTag(&kTrackerTag);
    return ext;
  }
  // bench(threads, marksPerThread, fresh, prefix) -> { ms, marks, fsyncs }: native threads mark
  // zones of their own file (fresh: a new zone every time; else the same zone). For the tests'
  // group-commit check and the marks/s figures. Blocks the JS thread.
  Napi::Value Bench(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int threads = static_cast<int>(U64(info[0]));
    const uint64_t per = U64(info[1]);
    const bool fresh = info[2].ToBoolean();
    const std::string prefix = info[3].As<Napi::String>();
    const uint64_t fs0 = tracker_->Stats().fsyncs;
    std::atomic<bool> failed{false};
    std::string err;
    std::mutex err_mu;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++) {
      ts.emplace_back([&, t]() {
        const std::string path = prefix + std::to_string(t);
        const uint64_t zb = tracker_->zoneBytes();
        for (uint64_t i = 0; i < per && !failed; i++) {
          DirtyStatus s = tracker_->MarkData(path, fresh ? i * 2 * zb : 4096, 4096);
          if (!s.ok()) { std::lock_guard<std::mutex> g(err_mu); err = s.code + ": " + s.message; failed = true; }
        }
      });
    }
    for (auto& t : ts) t.join();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (failed) { Napi::Error::New(env, err).ThrowAsJavaScriptException(); return env.Undefined(); }
    Napi::Object o = Napi::Object::New(env);
    o.Set("ms", Napi::Number::New(env, ms));
    o.Set("marks", Napi::Number::New(env, static_cast<double>(per * static_cast<uint64_t>(threads))));
    o.Set("fsyncs", Napi::Number::New(env, static_cast<double>(tracker_->Stats().fsyncs - fs0)));
    return o;
  }

  std::shared_ptr<DirtyTracker> tracker_;
  std::weak_ptr<DirtyTracker>* hook_ = nullptr;
  napi_env env_ = nullptr;
};

void InitDirty(Napi::Env env, Napi::Object exports) {
  exports.Set("RfsDirtyTracker", TrackerWrap::Define(env));
}

ha::Registrar reg(InitDirty);

}  // namespace

std::shared_ptr<DirtyTracker> DirtyTrackerFromValue(Napi::Env env, Napi::Value value) {
  (void)env;
  if (!value.IsExternal()) return nullptr;
  auto ext = value.As<Napi::External<std::shared_ptr<DirtyTracker>>>();
  if (!ext.CheckTypeTag(&kTrackerTag)) return nullptr;
  return *ext.Data();
}

}  // namespace ha::rfs

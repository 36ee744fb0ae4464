// Node-API surface of the write interceptor. JS (src/rfs-fuse.ts) validates and normalises
// arguments (dir canonical and absolute); this file converts them. Mounting is quick (one
// mount(2)); unmounting waits for in-flight operations, so it runs on the libuv pool. Events
// cross to JS through a ThreadSafeFunction with non-blocking calls. An env cleanup hook unmounts
// whatever is still mounted when the process exits.
#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "../registry.h"
#include "fuse_fs.h"

namespace ha::rfs {
namespace {

using SinkHandle = Napi::External<std::shared_ptr<ChangeSink>>;

Napi::Error CodedError(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// Delivers events to JS; safe to Post from any thread, also after Close.
struct EventPort {
  struct Event { std::string kind, code, message; };
  std::mutex mu;
  Napi::ThreadSafeFunction tsfn;
  bool live = false;

  void Post(const std::string& kind, const std::string& code, const std::string& message) {
    std::lock_guard<std::mutex> lk(mu);
    if (!live) return;
    auto* ev = new Event{kind, code, message};
    napi_status st = tsfn.NonBlockingCall(ev, [](Napi::Env env, Napi::Function cb, Event* e) {
      if (env != nullptr && cb != nullptr) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("kind", e->kind);
        o.Set("code", e->code);
        o.Set("message", e->message);
        cb.Call({o});
      }
      delete e;
    });
    if (st != napi_ok) delete ev;
  }
  void Close() {
    std::lock_guard<std::mutex> lk(mu);
    if (!live) return;
    live = false;
    tsfn.Release();
  }
};

struct MountRef {
  std::shared_ptr<Interceptor> fs;
  std::shared_ptr<EventPort> port;
};

// Mounts still up, for the env cleanup hook.
std::mutex g_mu;
std::vector<std::shared_ptr<MountRef>> g_live;

void Forget(const std::shared_ptr<MountRef>& m) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_live.erase(std::remove(g_live.begin(), g_live.end(), m), g_live.end());
}

using MountHandle = Napi::External<std::shared_ptr<MountRef>>;

std::shared_ptr<MountRef> MountOf(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "expected an interceptor handle").ThrowAsJavaScriptException();
    return nullptr;
  }
  return *info[0].As<MountHandle>().Data();
}

// rfsFuseMount(dir, sinkHandle, { maxThreads, attrTimeout, entryTimeout, writeback }, onEvent) -> handle
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsExternal() || !info[2].IsObject() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "rfsFuseMount(dir: string, sink: handle, opts: object, onEvent: function)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  InterceptorOptions opts;
  opts.dir = info[0].As<Napi::String>();
  auto* sp = info[1].As<SinkHandle>().Data();
  if (!sp || !*sp) {
    CodedError(env, "ERR_RFS_ARG", "the sink handle holds no sink").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  opts.sink = *sp;
  Napi::Object o = info[2].As<Napi::Object>();
  if (o.Get("maxThreads").IsNumber()) opts.max_threads = o.Get("maxThreads").As<Napi::Number>().Uint32Value();
  if (o.Get("attrTimeout").IsNumber()) opts.attr_timeout = o.Get("attrTimeout").As<Napi::Number>().DoubleValue();
  if (o.Get("entryTimeout").IsNumber()) opts.entry_timeout = o.Get("entryTimeout").As<Napi::Number>().DoubleValue();
  if (o.Get("maxInodeFds").IsNumber()) opts.max_inode_fds = o.Get("maxInodeFds").As<Napi::Number>().Uint32Value();
  if (o.Get("writeback").IsBoolean()) opts.writeback = o.Get("writeback").As<Napi::Boolean>().Value();
  if (o.Get("directLocalWrites").IsBoolean()) opts.direct_local_writes = o.Get("directLocalWrites").As<Napi::Boolean>().Value();
  if (o.Get("overlapLocalWrites").IsBoolean()) opts.overlap_local_writes = o.Get("overlapLocalWrites").As<Napi::Boolean>().Value();

  auto port = std::make_shared<EventPort>();
  port->tsfn = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "ha:rfsFuseEvents", 0, 1);
  port->tsfn.Unref(env);  // events never keep the process alive
  port->live = true;
  std::string code, err;
  int stale = StaleMountCleanup(opts.dir, &code, &err);
  if (stale < 0) {
    port->Close();
    CodedError(env, code, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto fs = Interceptor::Mount(opts, [port](const std::string& k, const std::string& c, const std::string& m) { port->Post(k, c, m); }, &code, &err);
  if (!fs) {
    port->Close();
    CodedError(env, code, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (stale > 0) port->Post("stale", "", "detached " + std::to_string(stale) + " stale ha-rfs mount(s) at " + opts.dir);
  auto ref = std::make_shared<MountRef>(MountRef{fs, port});
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_live.push_back(ref);
  }
  return MountHandle::New(env, new std::shared_ptr<MountRef>(ref), [](Napi::Env, std::shared_ptr<MountRef>* p) { delete p; });
}

class UnmountWorker : public Napi::AsyncWorker {
 public:
  UnmountWorker(Napi::Env env, std::shared_ptr<MountRef> ref, bool lazy, int timeout_ms)
      : Napi::AsyncWorker(env, "ha:rfsFuseUnmount"), deferred_(Napi::Promise::Deferred::New(env)), ref_(std::move(ref)), lazy_(lazy), timeout_ms_(timeout_ms) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { err_ = ref_->fs->Unmount(lazy_, timeout_ms_, &code_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!ref_->fs->Mounted()) {
      Forget(ref_);
      ref_->port->Close();
    }
    if (!err_.empty()) deferred_.Reject(CodedError(env, code_, err_).Value());
    else deferred_.Resolve(env.Undefined());
  }
  // Execute threw (node-addon-api caught it): the promise must settle all the same.
  void OnError(const Napi::Error& e) override { deferred_.Reject(CodedError(Env(), "ERR_RFS_UNMOUNT", e.Message()).Value()); }
 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<MountRef> ref_;
  bool lazy_;
  int timeout_ms_;
  std::string err_, code_;
};

// rfsFuseUnmount(handle, lazy, timeoutMs) -> Promise<void>
Napi::Value Unmount(const Napi::CallbackInfo& info) {
  auto ref = MountOf(info);
  if (!ref) return info.Env().Undefined();
  bool lazy = info.Length() > 1 && info[1].ToBoolean().Value();
  int timeout = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 5000;
  auto* w = new UnmountWorker(info.Env(), ref, lazy, timeout);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// rfsFuseStats(handle) -> object
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ref = MountOf(info);
  if (!ref) return env.Undefined();
  InterceptorStats s = ref->fs->Stats();
  Napi::Object ops = Napi::Object::New(env);
  for (int i = 0; i < kStatSlots; i++) {
    const char* n = OpName(i);
    if (n) ops.Set(n, Napi::Number::New(env, static_cast<double>(s.ops[i])));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("ops", ops);
  o.Set("bytesWritten", Napi::Number::New(env, static_cast<double>(s.bytes_written)));
  o.Set("bytesRead", Napi::Number::New(env, static_cast<double>(s.bytes_read)));
  o.Set("errors", Napi::Number::New(env, static_cast<double>(s.errors)));
  o.Set("notReplicated", Napi::Number::New(env, static_cast<double>(s.not_replicated)));
  o.Set("unrecorded", Napi::Number::New(env, static_cast<double>(s.unrecorded)));
  o.Set("maxWrite", Napi::Number::New(env, static_cast<double>(s.max_write)));
  o.Set("inodes", Napi::Number::New(env, static_cast<double>(s.inodes)));
  o.Set("inodeFds", Napi::Number::New(env, static_cast<double>(s.inode_fds)));
  o.Set("inodeFdsMax", Napi::Number::New(env, static_cast<double>(s.inode_fds_max)));
  o.Set("fdReopens", Napi::Number::New(env, static_cast<double>(s.fd_reopens)));
  o.Set("fdEvictions", Napi::Number::New(env, static_cast<double>(s.fd_evictions)));
  o.Set("directWrites", Napi::Number::New(env, static_cast<double>(s.direct_writes)));
  o.Set("alignedCopies", Napi::Number::New(env, static_cast<double>(s.aligned_copies)));
  o.Set("reconciledWrites", Napi::Number::New(env, static_cast<double>(s.reconciled_writes)));
  o.Set("overlappedWrites", Napi::Number::New(env, static_cast<double>(s.overlapped_writes)));
  o.Set("lateLocalErrors", Napi::Number::New(env, static_cast<double>(s.late_local_errors)));
  o.Set("directUnsupported", Napi::Boolean::New(env, s.direct_unsupported));
  o.Set("mounted", Napi::Boolean::New(env, ref->fs->Mounted()));
  return o;
}

Napi::Value DirFn(const Napi::CallbackInfo& info, const char* sig) {
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(info.Env(), std::string(sig) + "(dir: string)").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  return info[0];
}

// rfsStaleMountCleanup(dir) -> number of stale mounts detached
Napi::Value StaleCleanup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value d = DirFn(info, "rfsStaleMountCleanup");
  if (d.IsEmpty()) return env.Undefined();
  std::string code, err;
  int n = StaleMountCleanup(d.As<Napi::String>(), &code, &err);
  if (n < 0) { CodedError(env, code, err).ThrowAsJavaScriptException(); return env.Undefined(); }
  return Napi::Number::New(env, n);
}

Napi::Value RoBind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value d = DirFn(info, "rfsReadOnlyBind");
  if (d.IsEmpty()) return env.Undefined();
  std::string code;
  std::string err = ReadOnlyBind(d.As<Napi::String>(), &code);
  if (!err.empty()) CodedError(env, code, err).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value UndoRoBind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value d = DirFn(info, "rfsUndoReadOnlyBind");
  if (d.IsEmpty()) return env.Undefined();
  std::string code;
  std::string err = UndoReadOnlyBind(d.As<Napi::String>(), &code);
  if (!err.empty()) CodedError(env, code, err).ThrowAsJavaScriptException();
  return env.Undefined();
}

void Cleanup() {
  std::vector<std::shared_ptr<MountRef>> live;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    live.swap(g_live);
  }
  for (auto& m : live) {
    std::string code;
    m->fs->Unmount(true, 200, &code);  // clean if possible, else detach and abort
    m->port->Close();
  }
}

// process.exit() skips env cleanup hooks: the exit() path runs this instead (threads still run;
// the JS environment is not touched).
void AtExit() {
  std::vector<std::shared_ptr<MountRef>> live;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    live.swap(g_live);
  }
  for (auto& m : live) {
    std::string code;
    m->fs->Unmount(true, 200, &code);
  }
}

void Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(AtExit); });
  exports.Set("rfsFuseMount", Napi::Function::New(env, Mount, "rfsFuseMount"));
  exports.Set("rfsFuseUnmount", Napi::Function::New(env, Unmount, "rfsFuseUnmount"));
  exports.Set("rfsFuseStats", Napi::Function::New(env, Stats, "rfsFuseStats"));
  exports.Set("rfsStaleMountCleanup", Napi::Function::New(env, StaleCleanup, "rfsStaleMountCleanup"));
  exports.Set("rfsReadOnlyBind", Napi::Function::New(env, RoBind, "rfsReadOnlyBind"));
  exports.Set("rfsUndoReadOnlyBind", Napi::Function::New(env, UndoRoBind, "rfsUndoReadOnlyBind"));
  env.AddCleanupHook(Cleanup);
}

ha::Registrar reg(Init);

}  // namespace
}  // namespace ha::rfs

// JS bindings of the replicated directory (ReplicationSink + resync), validated and typed by
// src/rfs-repl.ts. Events (lost, error, progress, resync results) reach JS through one
// ThreadSafeFunction per directory, called with NonBlockingCall; an env cleanup hook aborts a
// running resync, joins its thread and closes the sink when the process exits.
#include <napi.h>

#include "../js_events.h"
#include "../owned_handle.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../registry.h"
#include "repl_sink.h"
#include "resync.h"
#include "transport_sender.h"

namespace ha::rfs {
namespace {

Napi::Error CodedError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

using ha::JsEvent;
using Events = ha::JsEvents;

struct Box : ha::OwnedHandle<Box> {
  std::shared_ptr<ReplicationSink> sink;
  std::shared_ptr<Events> events;
  std::thread resync;
  std::shared_ptr<ResyncControl> ctl;
  std::shared_ptr<std::atomic<bool>> running = std::make_shared<std::atomic<bool>>(false);
  void JoinResync() {
    if (ctl) ctl->abort = true;
    if (resync.joinable()) resync.join();
  }
  void OnClose() {
    JoinResync();
    if (sink) sink->Close();
    if (events) events->Close();
  }
};

Box* GetBox(const Napi::CallbackInfo& info) {
  Box* b = Box::Unwrap(info, "replicated directory");
  if (!b) return nullptr;
  if (b->closed()) {
    CodedError(info.Env(), "ERR_RFS_REPL_CLOSED", "the replicated directory is closed").ThrowAsJavaScriptException();
    return nullptr;
  }
  return b;
}

uint64_t U64(const Napi::Value& v) {
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d > 0)) return 0;
  if (d >= 18446744073709551615.0) return UINT64_MAX;
  return static_cast<uint64_t>(d);
}

// rfsReplOpen({ dir, stateDir, zoneBytes, barrierIntervalMs, onEvent }) -> handle
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  ReplSinkOptions opts;
  opts.dir = o.Get("dir").As<Napi::String>();
  opts.stateDir = o.Get("stateDir").As<Napi::String>();
  opts.zoneBytes = U64(o.Get("zoneBytes"));
  opts.barrierIntervalMs = o.Get("barrierIntervalMs").As<Napi::Number>().Int32Value();
  auto events = ha::JsEvents::Make(env, o.Get("onEvent").As<Napi::Function>(), "rfsReplEvents");
  events->tsfn().Unref(env);  // events do not keep the process alive
  std::string code, message;
  auto sink = ReplicationSink::Open(
      opts,
      [events](ReplEvent&& e) {
        JsEvent j;
        j.type = e.type;
        j.Str("code", e.code).Str("message", e.message);
        events->Send(std::move(j));
      },
      &code, &message);
  if (!sink) {
    events->Close();
    CodedError(env, code, message).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* box = new Box();
  box->sink = sink;
  box->events = events;
  return Box::Wrap(env, box);
}

Napi::Value SinkHandle(const Napi::CallbackInfo& info) {
  Box* b = GetBox(info);
  if (!b) return info.Env().Undefined();
  auto* sp = new std::shared_ptr<ChangeSink>(b->sink);
  return Napi::External<std::shared_ptr<ChangeSink>>::New(info.Env(), sp,
                                                         [](Napi::Env, std::shared_ptr<ChangeSink>* p) { delete p; });
}

// rfsReplAttach(h, senderSinkHandle, holdUntilResync?)
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Box* b = GetBox(info);
  if (!b) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsExternal()) {
    CodedError(env, "ERR_RFS_REPL_ARG", "attachSender: not a sender").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* sp = info[1].As<Napi::External<std::shared_ptr<ChangeSink>>>().Data();
  auto sender = sp ? std::dynamic_pointer_cast<Sender>(*sp) : nullptr;
  if (!sender) {
    CodedError(env, "ERR_RFS_REPL_ARG", "attachSender: the handle is not a replication sender").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string code, message;
  const bool hold = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  if (!b->sink->AttachSender(sender, &code, &message, hold)) CodedError(env, code, "attachSender: " + message).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value Detach(const Napi::CallbackInfo& info) {
  if (Box* b = GetBox(info)) b->sink->DetachSender();
  return info.Env().Undefined();
}

std::vector<DirtyEntry> Entries(Napi::Array a) {
  std::vector<DirtyEntry> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    DirtyEntry e;
    e.path = o.Get("path").As<Napi::String>();
    e.meta = o.Get("meta").As<Napi::Boolean>();
    Napi::Array z = o.Get("zones").As<Napi::Array>();
    for (uint32_t j = 0; j < z.Length(); j++) {
      Napi::Array r = z.Get(j).As<Napi::Array>();
      e.zones.push_back({U64(r.Get(0u)), U64(r.Get(1u))});
    }
    out.push_back(std::move(e));
  }
  return out;
}

// rfsReplResync(h, { full, extra, windowBytes, maxBytesPerSec, progressIntervalMs }) -> void;
// the result comes as a 'done' event (or 'busy' thrown synchronously).
Napi::Value Resync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Box* b = GetBox(info);
  if (!b) return env.Undefined();
  Napi::Object o = info[1].As<Napi::Object>();
  ResyncOptions opts;
  opts.full = o.Get("full").As<Napi::Boolean>();
  opts.extra = Entries(o.Get("extra").As<Napi::Array>());
  opts.windowBytes = U64(o.Get("windowBytes"));
  opts.maxBytesPerSec = U64(o.Get("maxBytesPerSec"));
  opts.progressIntervalMs = o.Get("progressIntervalMs").As<Napi::Number>().Int32Value();
  if (o.Has("sums") && o.Get("sums").IsBoolean()) opts.sums = o.Get("sums").As<Napi::Boolean>();
  if (b->running->load()) {
    CodedError(env, "ERR_RFS_REPL_BUSY", "a resynchronisation is already running").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (b->resync.joinable()) b->resync.join();  // the previous one has finished (its result was sent)
  auto ctl = std::make_shared<ResyncControl>();
  auto events = b->events;
  ctl->onProgress = [events](const ResyncProgress& p) {
    JsEvent j;
    j.type = "progress";
    j.nums = {{"bytesDone", static_cast<double>(p.bytesDone)}, {"bytesTotal", static_cast<double>(p.bytesTotal)},
              {"filesDone", static_cast<double>(p.entriesDone)}, {"filesTotal", static_cast<double>(p.entriesTotal)},
              {"filesKept", static_cast<double>(p.entriesKept)},
              {"rate", p.rate}, {"etaS", p.etaS}};
    events->Send(std::move(j));
  };
  b->ctl = ctl;
  auto sink = b->sink;
  auto running = b->running;
  running->store(true);
  events->tsfn().Ref(env);  // a pending resync keeps the process alive (rfsReplIdle unrefs)
  b->resync = std::thread([sink, ctl, events, opts, running]() {
    ResyncResult r = RunResync(sink, opts, *ctl);
    running->store(false);
    JsEvent j;
    j.type = "done";
    j.Str("code", r.code).Str("message", r.message);
    j.nums = {{"entries", static_cast<double>(r.entries)}, {"files", static_cast<double>(r.files)},
              {"bytesSent", static_cast<double>(r.bytesSent)}, {"records", static_cast<double>(r.records)},
              {"deferred", static_cast<double>(r.deferred)}, {"ms", r.ms},
              {"bytesMatched", static_cast<double>(r.bytesMatched)}, {"filesIdentical", static_cast<double>(r.filesIdentical)},
              {"holesPunched", static_cast<double>(r.holesPunched)}, {"sumsMs", r.sumsMs}};
    j.Str("sumsError", r.sumsError);
    j.flags = {{"ok", r.ok}, {"aborted", r.aborted}};
    events->Send(std::move(j));
  });
  return env.Undefined();
}

Napi::Value Idle(const Napi::CallbackInfo& info) {
  if (Box* b = GetBox(info)) {
    b->events->Unref(info.Env());
  }
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  if (Box* b = GetBox(info))
    if (b->ctl) b->ctl->abort = true;
  return info.Env().Undefined();
}

Napi::Value Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Box* b = GetBox(info);
  if (!b) return env.Undefined();
  auto snap = b->sink->tracker().Snapshot();
  Napi::Array a = Napi::Array::New(env, snap.size());
  for (size_t i = 0; i < snap.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", snap[i].path);
    Napi::Array z = Napi::Array::New(env, snap[i].zones.size());
    for (size_t j = 0; j < snap[i].zones.size(); j++) {
      Napi::Array r = Napi::Array::New(env, 2);
      r.Set(0u, static_cast<double>(snap[i].zones[j].first));
      r.Set(1u, static_cast<double>(snap[i].zones[j].second));
      z.Set(static_cast<uint32_t>(j), r);
    }
    o.Set("zones", z);
    o.Set("meta", snap[i].meta);
    o.Set("epoch", static_cast<double>(snap[i].epoch));
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Box* b = GetBox(info);
  if (!b) return env.Undefined();
  ReplSinkStats s = b->sink->Stats();
  DirtyStats d = b->sink->tracker().Stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("state", s.state);
  o.Set("generation", static_cast<double>(s.generation));
  o.Set("forwarded", static_cast<double>(s.forwarded));
  o.Set("notForwarded", static_cast<double>(s.notForwarded));
  o.Set("deferred", static_cast<double>(s.deferred));
  o.Set("barriers", static_cast<double>(s.barriers));
  o.Set("lastBarrierUs", static_cast<double>(s.lastBarrierUs));
  o.Set("markErrors", static_cast<double>(s.markErrors));
  if (!s.lastMarkError.empty()) o.Set("lastMarkError", s.lastMarkError);
  o.Set("losses", static_cast<double>(s.losses));
  o.Set("staleInFlight", static_cast<double>(s.staleInFlight));
  o.Set("resyncRunning", s.resyncRunning);
  Napi::Object t = Napi::Object::New(env);
  t.Set("entries", static_cast<double>(d.entries));
  t.Set("zones", static_cast<double>(d.zones));
  t.Set("metaEntries", static_cast<double>(d.metaEntries));
  t.Set("fsyncs", static_cast<double>(d.fsyncs));
  t.Set("marks", static_cast<double>(d.marks));
  t.Set("epoch", static_cast<double>(d.epoch));
  t.Set("zoneBytes", static_cast<double>(d.zoneBytes));
  o.Set("tracker", t);
  return o;
}

// Verify / compareDirs run on the libuv pool and resolve with { differences, entries, ... }.
class VerifyWorker : public Napi::AsyncWorker {
 public:
  VerifyWorker(Napi::Env env, std::function<VerifyResult()> fn)
      : Napi::AsyncWorker(env, "ha:rfsVerify"), deferred_(Napi::Promise::Deferred::New(env)), fn_(std::move(fn)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { res_ = fn_(); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!res_.ok) {
      deferred_.Reject(CodedError(env, res_.code, res_.message).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    Napi::Array a = Napi::Array::New(env, res_.differences.size());
    for (size_t i = 0; i < res_.differences.size(); i++) {
      const Difference& d = res_.differences[i];
      Napi::Object x = Napi::Object::New(env);
      x.Set("path", d.path);
      x.Set("kind", d.kind);
      x.Set("detail", d.detail);
      if (d.kind == "content") {
        x.Set("offset", static_cast<double>(d.offset));
        x.Set("blocks", static_cast<double>(d.blocks));
      }
      a.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("differences", a);
    o.Set("entries", static_cast<double>(res_.entries));
    o.Set("peerEntries", static_cast<double>(res_.peerEntries));
    o.Set("bytes", static_cast<double>(res_.bytes));
    o.Set("blockBytes", static_cast<double>(kSumBlock));
    o.Set("ms", res_.ms);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<VerifyResult()> fn_;
  VerifyResult res_;
};

// rfsReplVerify(h, timeoutMs) -> Promise
Napi::Value Verify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Box* b = GetBox(info);
  if (!b) return env.Undefined();
  int timeoutMs = info[1].As<Napi::Number>().Int32Value();
  auto sink = b->sink;
  auto* w = new VerifyWorker(env, [sink, timeoutMs] { return RunVerify(sink, timeoutMs); });
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// rfsCompareDirs(a, b) -> Promise
Napi::Value CompareDirsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string a = info[0].As<Napi::String>(), bdir = info[1].As<Napi::String>();
  auto* w = new VerifyWorker(env, [a, bdir] { return CompareDirs(a, bdir); });
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value CloseJs(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsExternal()) info[0].As<Napi::External<Box>>().Data()->Close();
  return info.Env().Undefined();
}

void InitRepl(Napi::Env env, Napi::Object exports) {
  exports.Set("rfsReplOpen", Napi::Function::New(env, Open));
  exports.Set("rfsReplSink", Napi::Function::New(env, SinkHandle));
  exports.Set("rfsReplAttach", Napi::Function::New(env, Attach));
  exports.Set("rfsReplDetach", Napi::Function::New(env, Detach));
  exports.Set("rfsReplResync", Napi::Function::New(env, Resync));
  exports.Set("rfsReplAbort", Napi::Function::New(env, Abort));
  exports.Set("rfsReplIdle", Napi::Function::New(env, Idle));
  exports.Set("rfsReplSnapshot", Napi::Function::New(env, Snapshot));
  exports.Set("rfsReplStats", Napi::Function::New(env, Stats));
  exports.Set("rfsReplClose", Napi::Function::New(env, CloseJs));
  exports.Set("rfsReplVerify", Napi::Function::New(env, Verify));
  exports.Set("rfsCompareDirs", Napi::Function::New(env, CompareDirsJs));
}

ha::Registrar reg(InitRepl);

}  // namespace
}  // namespace ha::rfs

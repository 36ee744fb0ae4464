// JS bindings of the replication transport (validated and typed by src/rfs-transport.ts).
// Events reach JS through ThreadSafeFunctions called with NonBlockingCall; every handle is closed
// by an env cleanup hook when the process exits.
#include <napi.h>

#include "../js_events.h"
#include "../owned_handle.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>

#include "../registry.h"
#include "transport_receiver.h"
#include "transport_sender.h"

namespace ha::rfs {
namespace {

Napi::Error CodedError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

using ha::JsEvent;
using EventSink = ha::JsEvents;

std::shared_ptr<EventSink> MakeSink(Napi::Env env, Napi::Function fn, const char* name) { return ha::JsEvents::Make(env, fn, name); }

// ---------------------------------------------------------------- receiver

struct ReceiverBox : ha::OwnedHandle<ReceiverBox> {
  std::unique_ptr<Receiver> receiver;
  std::shared_ptr<EventSink> events;
  bool drain = false;  // set by rfsReceiverClose before Close()
  void OnClose() {
    if (receiver) receiver->Close(drain);
    if (events) events->Close();
  }
};

ReceiverBox* GetReceiver(const Napi::CallbackInfo& info) { return ReceiverBox::Unwrap(info, "receiver"); }

Napi::Value ReceiverStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  ReceiverOptions opts;
  opts.dir = o.Get("dir").As<Napi::String>();
  opts.bind = o.Get("bind").As<Napi::String>();
  opts.port = o.Get("port").As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> key = o.Get("key").As<Napi::Buffer<uint8_t>>();
  opts.key.assign(key.Data(), key.Data() + key.Length());
  opts.durable = o.Get("durable").As<Napi::Boolean>();
  Napi::Function onEvent = o.Get("onEvent").As<Napi::Function>();
  auto events = MakeSink(env, onEvent, "rfsReceiverEvents");
  std::string code, message;
  auto rcv = Receiver::Start(
      opts,
      [events](ReceiverEvent&& e) {
        JsEvent j;
        j.type = e.type;
        j.Str("peer", e.peer).Str("code", e.code).Str("message", e.message).Str("path", e.path, e.type == "apply-failed");
        if (e.err) j.Num("errno", e.err);
        if (e.seq) j.Num("seq", static_cast<double>(e.seq));
        events->Send(std::move(j));
      },
      code, message);
  if (!rcv) {
    events->Close();
    CodedError(env, code, message).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* box = new ReceiverBox();
  box->receiver = std::move(rcv);
  box->events = events;
  return ReceiverBox::Wrap(env, box);
}

Napi::Value ReceiverPort(const Napi::CallbackInfo& info) {
  auto* b = GetReceiver(info);
  if (!b) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), b->receiver ? b->receiver->Port() : 0);
}

Napi::Value ReceiverStatsJs(const Napi::CallbackInfo& info) {
  auto* b = GetReceiver(info);
  if (!b) return info.Env().Undefined();
  Napi::Env env = info.Env();
  ReceiverStats s = b->receiver->Stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("recordsApplied", static_cast<double>(s.recordsApplied));
  o.Set("bytesApplied", static_cast<double>(s.bytesApplied));
  o.Set("lastSeqReceived", static_cast<double>(s.lastSeqReceived));
  o.Set("lastSeqApplied", static_cast<double>(s.lastSeqApplied));
  o.Set("lag", static_cast<double>(s.lag));
  o.Set("connections", static_cast<double>(s.connections));
  o.Set("receivedAcks", static_cast<double>(s.receivedAcks));
  o.Set("connected", s.connected);
  if (!s.peer.empty()) o.Set("peer", s.peer);
  return o;
}

Napi::Value ReceiverClose(const Napi::CallbackInfo& info) {
  const bool drain = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  if (auto* b = GetReceiver(info)) {
    b->drain = drain;
    b->Close();
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------- sender

struct SenderBox : ha::OwnedHandle<SenderBox> {
  std::shared_ptr<Sender> sender;
  std::shared_ptr<EventSink> events;
  void OnClose() {
    if (sender) sender->Close();
    if (events) events->Close();
  }
};

SenderBox* GetSender(const Napi::CallbackInfo& info) { return SenderBox::Unwrap(info, "sender"); }

class ConnectWorker : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, std::string host, int port, std::vector<uint8_t> key, SenderOptions opts,
                Napi::Function onEvent)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), host_(std::move(host)), port_(port),
        key_(std::move(key)), opts_(opts), onEvent_(Napi::Persistent(onEvent)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { sender_ = Sender::Connect(host_, port_, key_, opts_, code_, message_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!sender_) {
      deferred_.Reject(CodedError(env, code_, message_).Value());
      return;
    }
    auto events = MakeSink(env, onEvent_.Value(), "rfsSenderEvents");
    sender_->OnLost([events](const std::string& code, const std::string& reason) {
      JsEvent j;
      j.type = "lost";
      j.Str("code", code).Str("message", reason);
      events->Send(std::move(j));
    });
    auto* box = new SenderBox();
    box->sender = sender_;
    box->events = events;
    auto ext = SenderBox::Wrap(env, box);
    Napi::Object o = Napi::Object::New(env);
    o.Set("handle", ext);
    o.Set("peer", sender_->Peer());
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string host_;
  int port_;
  std::vector<uint8_t> key_;
  SenderOptions opts_;
  Napi::FunctionReference onEvent_;
  std::shared_ptr<Sender> sender_;
  std::string code_, message_;
};

Napi::Value SenderConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  SenderOptions opts;
  std::string host = o.Get("host").As<Napi::String>();
  int port = o.Get("port").As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> key = o.Get("key").As<Napi::Buffer<uint8_t>>();
  std::vector<uint8_t> k(key.Data(), key.Data() + key.Length());
  opts.mode = std::string(o.Get("mode").As<Napi::String>()) == "received" ? AckMode::Received : AckMode::Written;
  opts.ackTimeoutMs = o.Get("ackTimeoutMs").As<Napi::Number>().Int32Value();
  opts.maxQueueBytes = static_cast<size_t>(o.Get("maxQueueBytes").As<Napi::Number>().Int64Value());
  opts.connectTimeoutMs = o.Get("connectTimeoutMs").As<Napi::Number>().Int32Value();
  auto* w = new ConnectWorker(env, host, port, std::move(k), opts, o.Get("onEvent").As<Napi::Function>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value SenderSink(const Napi::CallbackInfo& info) {
  auto* b = GetSender(info);
  if (!b) return info.Env().Undefined();
  auto* sp = new std::shared_ptr<ChangeSink>(b->sender);
  return Napi::External<std::shared_ptr<ChangeSink>>::New(info.Env(), sp,
                                                         [](Napi::Env, std::shared_ptr<ChangeSink>* p) { delete p; });
}

Timespec GetTs(Napi::Object o, const char* key) {
  Timespec t;
  Napi::Value v = o.Get(key);
  if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    t.sec = a.Get(0u).As<Napi::Number>().Int64Value();
    t.nsec = a.Get(1u).As<Napi::Number>().Int64Value();
  }
  return t;
}

Napi::Value SenderSubmit(const Napi::CallbackInfo& info) {
  auto* b = GetSender(info);
  if (!b) return info.Env().Undefined();
  Napi::Object o = info[1].As<Napi::Object>();
  Record r;
  r.op = static_cast<Op>(o.Get("op").As<Napi::Number>().Uint32Value());
  auto str = [&](const char* k) { Napi::Value v = o.Get(k); return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(); };
  auto num = [&](const char* k, double d) { Napi::Value v = o.Get(k); return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : d; };
  r.path = str("path");
  r.path2 = str("path2");
  r.name = str("name");
  r.offset = static_cast<uint64_t>(num("offset", 0));
  r.length = static_cast<uint64_t>(num("length", 0));
  r.mode = static_cast<uint32_t>(num("mode", 0));
  r.flags = static_cast<uint32_t>(num("flags", 0));
  r.uid = static_cast<uint32_t>(num("uid", 4294967295.0));
  r.gid = static_cast<uint32_t>(num("gid", 4294967295.0));
  r.rdev = static_cast<uint64_t>(num("rdev", 0));
  r.atime = GetTs(o, "atime");
  r.mtime = GetTs(o, "mtime");
  Napi::Value d = o.Get("data");
  if (d.IsTypedArray()) {
    Napi::Uint8Array a = d.As<Napi::Uint8Array>();
    r.data.assign(a.Data(), a.Data() + a.ByteLength());
  }
  uint64_t seq = b->sender->Submit(std::move(r));
  return Napi::Number::New(info.Env(), static_cast<double>(seq));
}

class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, std::shared_ptr<Sender> s, uint64_t seq)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), s_(std::move(s)), seq_(seq) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { ok_ = s_->WaitAcked(seq_); }
  void OnOK() override { deferred_.Resolve(Napi::Boolean::New(Env(), ok_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Sender> s_;
  uint64_t seq_;
  bool ok_ = false;
};

Napi::Value SenderWaitAcked(const Napi::CallbackInfo& info) {
  auto* b = GetSender(info);
  if (!b) return info.Env().Undefined();
  auto* w = new WaitWorker(info.Env(), b->sender, static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Throughput helper: `count` writes of `size` bytes to `path` (offsets wrap at 64 MiB), each
// waited for when `sync` (else at most 16 MiB in flight), the last one always. Runs on the thread pool.
class BenchWorker : public Napi::AsyncWorker {
 public:
  BenchWorker(Napi::Env env, std::shared_ptr<Sender> s, std::string path, uint32_t count, uint32_t size, bool sync)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), s_(std::move(s)), path_(std::move(path)),
        count_(count), size_(size), sync_(sync) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<uint8_t> pattern(size_);
    for (size_t i = 0; i < pattern.size(); i++) pattern[i] = static_cast<uint8_t>(i * 131 + 7);
    auto t0 = std::chrono::steady_clock::now();
    uint64_t last = 0;
    ok_ = true;
    const uint64_t wrap = 64ull << 20;
    const uint64_t kWindow = std::max<uint64_t>(2, (16u << 20) / size_);
    for (uint32_t i = 0; i < count_ && ok_; i++) {
      Record r;
      r.op = Op::Write;
      r.path = path_;
      r.offset = (static_cast<uint64_t>(i) * size_) % wrap;
      r.data.assign(pattern.begin(), pattern.end());
      last = s_->Submit(std::move(r));
      if (sync_) ok_ = s_->WaitAcked(last);
      else if (last > kWindow) ok_ = s_->WaitAcked(last - kWindow);  // keep a bounded window in flight
    }
    if (ok_ && last) ok_ = s_->WaitAcked(last);
    ns_ = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("ok", ok_);
    o.Set("ns", ns_);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Sender> s_;
  std::string path_;
  uint32_t count_, size_;
  bool sync_;
  bool ok_ = false;
  double ns_ = 0;
};

Napi::Value SenderBench(const Napi::CallbackInfo& info) {
  auto* b = GetSender(info);
  if (!b) return info.Env().Undefined();
  auto* w = new BenchWorker(info.Env(), b->sender, info[1].As<Napi::String>(), info[2].As<Napi::Number>().Uint32Value(),
                            info[3].As<Napi::Number>().Uint32Value(), info[4].As<Napi::Boolean>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value SenderStatsJs(const Napi::CallbackInfo& info) {
  auto* b = GetSender(info);
  if (!b) return info.Env().Undefined();
  Napi::Env env = info.Env();
  SenderStats s = b->sender->Stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("submitted", static_cast<double>(s.submitted));
  o.Set("received", static_cast<double>(s.received));
  o.Set("applied", static_cast<double>(s.applied));
  o.Set("pendingBytes", static_cast<double>(s.pendingBytes));
  o.Set("queuedRecords", static_cast<double>(s.queuedRecords));
  o.Set("bytesSent", static_cast<double>(s.bytesSent));
  o.Set("framesSent", static_cast<double>(s.framesSent));
  o.Set("lost", s.lost);
  if (s.lost) {
    o.Set("lostCode", s.lostCode);
    o.Set("lostReason", s.lostReason);
  }
  return o;
}

Napi::Value SenderTakeUnacked(const Napi::CallbackInfo& info) {
  auto* b = GetSender(info);
  if (!b) return info.Env().Undefined();
  Napi::Env env = info.Env();
  auto list = b->sender->TakeUnacked();
  Napi::Array a = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("seq", static_cast<double>(list[i].seq));
    o.Set("op", static_cast<double>(static_cast<int>(list[i].op)));
    o.Set("path", list[i].path);
    if (!list[i].path2.empty()) o.Set("path2", list[i].path2);
    o.Set("offset", static_cast<double>(list[i].offset));
    o.Set("length", static_cast<double>(list[i].length));
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Value SenderClose(const Napi::CallbackInfo& info) {
  if (auto* b = GetSender(info)) b->Close();
  return info.Env().Undefined();
}

Napi::Value CipherImplementationJs(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ha::rfs::CipherImplementation());
}

void InitTransport(Napi::Env env, Napi::Object exports) {
  exports.Set("rfsCipherImplementation", Napi::Function::New(env, CipherImplementationJs));
  exports.Set("rfsReceiverStart", Napi::Function::New(env, ReceiverStart));
  exports.Set("rfsReceiverPort", Napi::Function::New(env, ReceiverPort));
  exports.Set("rfsReceiverStats", Napi::Function::New(env, ReceiverStatsJs));
  exports.Set("rfsReceiverClose", Napi::Function::New(env, ReceiverClose));
  exports.Set("rfsSenderConnect", Napi::Function::New(env, SenderConnect));
  exports.Set("rfsSenderSink", Napi::Function::New(env, SenderSink));
  exports.Set("rfsSenderSubmit", Napi::Function::New(env, SenderSubmit));
  exports.Set("rfsSenderWaitAcked", Napi::Function::New(env, SenderWaitAcked));
  exports.Set("rfsSenderBench", Napi::Function::New(env, SenderBench));
  exports.Set("rfsSenderStats", Napi::Function::New(env, SenderStatsJs));
  exports.Set("rfsSenderTakeUnacked", Napi::Function::New(env, SenderTakeUnacked));
  exports.Set("rfsSenderClose", Napi::Function::New(env, SenderClose));
}

ha::Registrar reg(InitTransport);

}  // namespace
}  // namespace ha::rfs

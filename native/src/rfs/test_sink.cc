// The test sink and its JS accessors (rfsTestSinkCreate / rfsTestSinkTake / rfsTestSinkConfigure).
#include "test_sink.h"

#include <napi.h>

#include <chrono>
#include <memory>
#include <thread>

#include "../registry.h"
#include "fuse_fs.h"

namespace ha::rfs {

uint64_t Fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ull; }
  return h;
}

void TestSink::BeforeApply(const std::string& path, uint64_t offset, uint64_t length) {
  (void)path; (void)offset; (void)length;
  before_apply_.fetch_add(1, std::memory_order_relaxed);
}

uint64_t TestSink::Submit(Record&& r) {
  TestSinkEntry e;
  e.data_length = r.Size();
  if (hash.load(std::memory_order_relaxed)) e.data_hash = Fnv1a64(r.Bytes(), r.Size());
  std::lock_guard<std::mutex> lk(mu_);
  r.seq = next_seq_++;
  uint64_t seq = r.seq;
  if (keep.load(std::memory_order_relaxed)) {
    if (r.Size() > keep_data_max.load(std::memory_order_relaxed)) {
      r.borrowed = nullptr;
      r.borrowed_len = 0;
      r.data.clear();
      r.data.shrink_to_fit();
    } else {
      r.Own();  // lent bytes are only valid during Submit
    }
    e.record = std::move(r);
    entries_.push_back(std::move(e));
  }
  return seq;
}

bool TestSink::WaitAcked(uint64_t seq) {
  (void)seq;
  int64_t d = ack_delay_us.load(std::memory_order_relaxed);
  if (d > 0) std::this_thread::sleep_for(std::chrono::microseconds(d));
  return !refuse.load(std::memory_order_relaxed);
}

std::vector<TestSinkEntry> TestSink::Take() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<TestSinkEntry> out;
  out.swap(entries_);
  return out;
}

namespace {

using SinkHandle = Napi::External<std::shared_ptr<ChangeSink>>;

std::shared_ptr<TestSink> TestSinkOf(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "expected a test sink handle").ThrowAsJavaScriptException();
    return nullptr;
  }
  auto* sp = info[0].As<SinkHandle>().Data();
  auto ts = sp ? std::dynamic_pointer_cast<TestSink>(*sp) : nullptr;
  if (!ts) Napi::TypeError::New(info.Env(), "the handle is not a test sink").ThrowAsJavaScriptException();
  return ts;
}

void Configure(TestSink& s, Napi::Object o) {
  if (o.Has("ackDelayUs") && o.Get("ackDelayUs").IsNumber()) s.ack_delay_us = o.Get("ackDelayUs").As<Napi::Number>().Int64Value();
  if (o.Has("refuse") && o.Get("refuse").IsBoolean()) s.refuse = o.Get("refuse").As<Napi::Boolean>().Value();
  if (o.Has("hash") && o.Get("hash").IsBoolean()) s.hash = o.Get("hash").As<Napi::Boolean>().Value();
  if (o.Has("keep") && o.Get("keep").IsBoolean()) s.keep = o.Get("keep").As<Napi::Boolean>().Value();
}

// rfsTestSinkCreate(opts) -> External<shared_ptr<ChangeSink>>
Napi::Value Create(const Napi::CallbackInfo& info) {
  auto ts = std::make_shared<TestSink>();
  if (info.Length() > 0 && info[0].IsObject()) Configure(*ts, info[0].As<Napi::Object>());
  auto* holder = new std::shared_ptr<ChangeSink>(ts);
  return SinkHandle::New(info.Env(), holder, [](Napi::Env, std::shared_ptr<ChangeSink>* p) { delete p; });
}

Napi::Value ConfigureJs(const Napi::CallbackInfo& info) {
  auto ts = TestSinkOf(info);
  if (!ts) return info.Env().Undefined();
  if (info.Length() > 1 && info[1].IsObject()) Configure(*ts, info[1].As<Napi::Object>());
  return info.Env().Undefined();
}

Napi::Object Ts(Napi::Env env, const Timespec& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sec", Napi::Number::New(env, static_cast<double>(t.sec)));
  o.Set("nsec", Napi::Number::New(env, static_cast<double>(t.nsec)));
  return o;
}

// rfsTestSinkTake(handle) -> { records: [...], beforeApply: number }
Napi::Value Take(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ts = TestSinkOf(info);
  if (!ts) return env.Undefined();
  auto entries = ts->Take();
  Napi::Array arr = Napi::Array::New(env, entries.size());
  for (size_t i = 0; i < entries.size(); i++) {
    const Record& r = entries[i].record;
    Napi::Object o = Napi::Object::New(env);
    o.Set("seq", Napi::Number::New(env, static_cast<double>(r.seq)));
    const char* name = OpName(static_cast<int>(r.op));
    o.Set("op", Napi::String::New(env, name ? name : "unknown"));
    o.Set("path", Napi::String::New(env, r.path));
    o.Set("path2", Napi::String::New(env, r.path2));
    o.Set("name", Napi::String::New(env, r.name));
    o.Set("offset", Napi::Number::New(env, static_cast<double>(r.offset)));
    o.Set("length", Napi::Number::New(env, static_cast<double>(r.length)));
    o.Set("mode", Napi::Number::New(env, r.mode));
    o.Set("flags", Napi::Number::New(env, r.flags));
    o.Set("uid", Napi::Number::New(env, r.uid));
    o.Set("gid", Napi::Number::New(env, r.gid));
    o.Set("rdev", Napi::Number::New(env, static_cast<double>(r.rdev)));
    o.Set("atime", Ts(env, r.atime));
    o.Set("mtime", Ts(env, r.mtime));
    o.Set("dataLength", Napi::Number::New(env, static_cast<double>(entries[i].data_length)));
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(entries[i].data_hash));
    o.Set("dataHash", Napi::String::New(env, hex));
    if (!r.data.empty()) o.Set("data", Napi::Buffer<uint8_t>::Copy(env, r.data.data(), r.data.size()));
    arr.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("records", arr);
  out.Set("beforeApply", Napi::Number::New(env, static_cast<double>(ts->before_apply_calls())));
  return out;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("rfsTestSinkCreate", Napi::Function::New(env, Create, "rfsTestSinkCreate"));
  exports.Set("rfsTestSinkConfigure", Napi::Function::New(env, ConfigureJs, "rfsTestSinkConfigure"));
  exports.Set("rfsTestSinkTake", Napi::Function::New(env, Take, "rfsTestSinkTake"));
}

ha::Registrar reg(Init);

}  // namespace
}  // namespace ha::rfs

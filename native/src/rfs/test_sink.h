// A ChangeSink for tests of the interceptor: records a summary of every Record in memory (no
// data kept: its length and an FNV-1a 64 hash), acknowledges after an optional delay, or refuses
// acknowledgements (WaitAcked returns false: "not replicated") to test the primary going ALONE.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "record.h"

namespace ha::rfs {

struct TestSinkEntry {
  Record record;         // data cleared (moved out) unless kept (<= keep_data_max bytes)
  uint64_t data_length = 0;
  uint64_t data_hash = 0;  // FNV-1a 64 of the data (0 when hashing is off)
};

class TestSink final : public ChangeSink {
 public:
  void BeforeApply(const std::string& path, uint64_t offset, uint64_t length) override;
  uint64_t Submit(Record&& r) override;
  bool WaitAcked(uint64_t seq) override;

  std::vector<TestSinkEntry> Take();
  uint64_t before_apply_calls() const { return before_apply_.load(); }

  std::atomic<int64_t> ack_delay_us{0};
  std::atomic<bool> refuse{false};
  std::atomic<bool> hash{true};
  std::atomic<bool> keep{true};  // false: count only
  std::atomic<uint64_t> keep_data_max{256};

 private:
  std::mutex mu_;
  uint64_t next_seq_ = 1;
  std::vector<TestSinkEntry> entries_;
  std::atomic<uint64_t> before_apply_{0};
};

uint64_t Fnv1a64(const uint8_t* p, size_t n);

}  // namespace ha::rfs

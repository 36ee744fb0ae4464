// The primary's half of replication: a ChangeSink that streams Records to the secondary's
// receiver over a secure channel (channel.h) and waits for its cumulative acknowledgements.
//
// Threads: the caller's (Submit seals a record when nothing is queued, and sends a small frame
// itself when nothing is before it; it never blocks on the network but for that send; WaitAcked
// waits on a condition variable), a writer thread (sends sealed frames in order; seals queued and
// lent records, encrypting straight from each record's buffer into a frame buffer) and an ack
// thread (reads acks, wakes waiters).
// Any failure (link down, ack timeout, queue overflow, the secondary failing to apply) puts the
// sender in the final state "lost": WaitAcked returns false at once, and TakeUnacked lists what
// was submitted but not acknowledged. Reconnecting means a new Sender.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "channel.h"
#include "record.h"

namespace ha::rfs {

enum class AckMode { Received, Written };

struct SenderOptions {
  AckMode mode = AckMode::Written;
  int ackTimeoutMs = 2000;
  size_t maxQueueBytes = 64u << 20;  // submitted but not acknowledged (bytes on the wire)
  int connectTimeoutMs = 5000;
};

// What the dirty tracker needs to know of a change that was not acknowledged.
struct UnackedRecord {
  uint64_t seq = 0;
  Op op = Op::Barrier;
  std::string path;
  std::string path2;
  uint64_t offset = 0;
  uint64_t length = 0;  // Write: data length; Truncate: new size; Fallocate: length
};

struct SenderStats {
  uint64_t submitted = 0;    // last seq assigned
  uint64_t received = 0;     // acked as received up to
  uint64_t applied = 0;      // acked as applied up to
  uint64_t pendingBytes = 0; // submitted, not acknowledged
  uint64_t queuedRecords = 0;// not yet sent
  uint64_t bytesSent = 0;    // frame bytes written to the socket
  uint64_t framesSent = 0;
  bool lost = false;
  std::string lostCode;
  std::string lostReason;
};

class Sender : public ChangeSink, public std::enable_shared_from_this<Sender> {
 public:
  // Connects to host:port, runs the handshake, waits for the receiver's acceptance and starts the
  // threads. Returns null with code (ERR_RFS_CONNECT, ERR_RFS_AUTH, ERR_RFS_LINK) and message.
  static std::shared_ptr<Sender> Connect(const std::string& host, int port, const std::vector<uint8_t>& key,
                                         const SenderOptions& opts, std::string& code, std::string& message);
  ~Sender() override;

  uint64_t Submit(Record&& r) override;
  // The record is queued for the writer thread as it is (no copy of its lent bytes): encrypted
  // there while the caller makes its local write. ReleaseLent waits for that encryption.
  uint64_t SubmitLent(Record&& r) override;
  void ReleaseLent(uint64_t seq) override;
  bool WaitAcked(uint64_t seq) override;
  // Received mode: returns at once (true unless lost); Written mode: WaitAcked.
  bool WaitDurable(uint64_t seq) override;
  // Gives the link up (ERR_RFS_DIVERGED): the secondary's copy may differ from the primary's.
  void Diverged(const std::string& reason) override;
  // Waits until the secondary has APPLIED everything up to seq, whatever the ack mode: what the
  // dirty tracking may forget (a barrier's marks, a resync's finished entries) must be on the
  // secondary's files, not only in its memory (a SIGKILLed receiver loses what it had received).
  bool WaitApplied(uint64_t seq);

  // Once lost: moves out every record submitted but not acknowledged (in seq order), records
  // submitted later are added to the next call. While replicating: a snapshot (not cleared).
  std::vector<UnackedRecord> TakeUnacked();

  // Called once, on the thread that detected the loss (code, reason). Add before use.
  using LostFn = std::function<void(const std::string& code, const std::string& reason)>;
  void OnLost(LostFn fn);

  // Waits for the complete reply to the request record `id` (the seq Submit returned for a Sums
  // record): the concatenated payload in `out`. False with `err` when the sender is lost, the
  // secondary reported an error, or no part arrived for idleTimeoutMs.
  bool WaitReply(uint64_t id, std::vector<uint8_t>& out, std::string& err, int idleTimeoutMs);

  SenderStats Stats();
  std::string Peer() const { return peer_; }
  AckMode Mode() const { return opts_.mode; }
  bool Lost();
  // Stops the threads and closes the socket (lost with ERR_RFS_CLOSED if it was still up).
  void Close();

  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

 private:
  Sender(int fd, const SenderOptions& opts);
  uint64_t Enqueue(Record&& r, bool lent);
  void Lose(const char* code, const std::string& reason);
  void LoseSend(int err);  // a failed send (errno)
  bool WaitFor(uint64_t seq, bool applied);
  void WriterLoop();
  // Encrypts `batch` into one frame in `out` (sized to fit). Called by whoever holds sealing_.
  void Seal(std::vector<Record>& batch, size_t plain, std::vector<uint8_t>& out);
  // Writes a sealed frame to the socket. Called by whoever holds sending_.
  bool SendFrame(const std::vector<uint8_t>& frame);
  std::vector<uint8_t> SpareLocked();               // a frame buffer (mu_ held)
  void RecycleLocked(std::vector<uint8_t>&& buf);  // gives one back (mu_ held)
  void AckLoop();
  void OnAck(uint64_t received, uint64_t applied);
  uint64_t AckedLocked() const { return opts_.mode == AckMode::Received ? received_ : applied_; }

  int fd_;
  SenderOptions opts_;
  std::string peer_;
  FrameCipher tx_, rx_;

  std::mutex mu_;
  std::condition_variable ackCv_;
  std::condition_variable queueCv_;
  std::deque<Record> queue_;  // not yet sent (owns the data)
  // The send path is a pipeline of two stages, each owned by one thread at a time:
  //  - sealing_: the cipher. A submitting thread seals its own record when nothing is queued
  //    (encrypting straight from the caller's bytes: no copy), else the writer thread seals the
  //    queued records. Sealed frames join frames_ in the cipher's (nonce) order.
  //  - sending_: the socket. The writer thread sends frames_ in order; a small frame sealed when
  //    nothing waits and nobody sends is sent by its own thread (no hand-off for small writes).
  //  A large write's parts are sealed by the application's thread while the writer thread sends
  //  the previous part: encryption overlaps the socket's copy instead of adding to it.
  bool sealing_ = false;
  bool sending_ = false;
  uint64_t sealed_ = 0;               // every record up to this seq is sealed (or dropped: lost)
  std::condition_variable sealedCv_;  // ReleaseLent waits on it
  std::deque<std::vector<uint8_t>> frames_;  // sealed, not yet sent
  std::vector<std::vector<uint8_t>> spare_;  // frame buffers to reuse (fresh pages cost more than a copy)
  struct Pending { UnackedRecord rec; size_t bytes; };
  std::deque<Pending> unacked_;  // submitted, not acknowledged (metadata only)
  uint64_t nextSeq_ = 0;
  uint64_t received_ = 0, applied_ = 0;
  uint64_t pendingBytes_ = 0;
  uint64_t bytesSent_ = 0, framesSent_ = 0;
  bool lost_ = false;
  std::string lostCode_, lostReason_;
  std::vector<LostFn> lostFns_;
  struct Reply { std::vector<uint8_t> data; bool done = false; uint32_t status = 0; };
  std::map<uint64_t, Reply> replies_;  // by request id (guarded by mu_, signalled on ackCv_)

  std::mutex closeMu_;
  bool closed_ = false;
  std::thread writer_, acker_;
};

}  // namespace ha::rfs

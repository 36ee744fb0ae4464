#include "transport_sender.h"

#include <pthread.h>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport_wire.h"

namespace ha::rfs {

namespace {

constexpr size_t kBatchTarget = 256u << 10;  // frames grow up to this many plaintext bytes
// A large write goes as records of at most kSplitBytes: the secondary decrypts the first while
// the next is encrypted and sent (a pipeline over the two ends). Measured on a 2-core VM with
// 1 MiB writes: 512 KiB parts a little faster than 256 KiB (fewer wake-ups), 1 MiB slower.
constexpr size_t kSplitBytes = 512u << 10;
// Records up to this size may be sealed by the submitting thread itself (no copy, no hand-off).
constexpr size_t kDirectMax = kSplitBytes + (8u << 10);
// A sealed frame up to this size is sent by its own thread when nothing is before it (small
// changes: fsync latency); larger ones go to the writer thread, so the next part can be sealed
// meanwhile.
constexpr size_t kSendDirectMax = 64u << 10;
constexpr size_t kSpareFrames = 8;                                         // frame buffers kept for reuse
constexpr size_t kSpareMaxBytes = kFrameHeader + kDirectMax + kTagLen + 64;  // larger ones are freed

std::string PeerName(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  port = ntohs(in6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

void SetTimeouts(int fd, int ms) {
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Non-blocking connect bounded by timeoutMs; returns a blocking socket or -1 with message.
int ConnectTo(const std::string& host, int port, int timeoutMs, std::string& peer, std::string& message) {
  struct addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  std::string svc = std::to_string(port);
  int gai = getaddrinfo(host.c_str(), svc.c_str(), &hints, &res);
  if (gai != 0) { message = "cannot resolve " + host + ": " + gai_strerror(gai); return -1; }
  int fd = -1;
  message = "no address for " + host;
  for (auto* ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) { message = std::string("socket: ") + std::strerror(errno); continue; }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      rc = poll(&pfd, 1, timeoutMs);
      if (rc == 0) { errno = ETIMEDOUT; rc = -1; }
      else if (rc > 0) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { errno = err; rc = -1; } else rc = 0;
      }
    }
    if (rc == 0) {
      peer = PeerName(ai->ai_addr);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      break;
    }
    message = "connect to " + PeerName(ai->ai_addr) + ": " + std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

}  // namespace

Sender::Sender(int fd, const SenderOptions& opts) : fd_(fd), opts_(opts) {}

std::shared_ptr<Sender> Sender::Connect(const std::string& host, int port, const std::vector<uint8_t>& key,
                                        const SenderOptions& opts, std::string& code, std::string& message) {
  std::string peer;
  int fd = ConnectTo(host, port, opts.connectTimeoutMs, peer, message);
  if (fd < 0) { code = "ERR_RFS_CONNECT"; return nullptr; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SetTimeouts(fd, opts.connectTimeoutMs);
  ChannelKeys keys;
  if (!Handshake(fd, key, true, keys, code, message)) { close(fd); message = peer + ": " + message; return nullptr; }
  std::shared_ptr<Sender> s(new Sender(fd, opts));
  s->peer_ = peer;
  if (!s->tx_.Init(keys.send, true) || !s->rx_.Init(keys.recv, false)) {
    code = "ERR_RFS_AUTH"; message = "cipher initialisation failed"; return nullptr;
  }
  // The receiver's first sealed frame is its acceptance (an ack 0/0).
  std::vector<uint8_t> buf;
  size_t n = 0;
  if (!ReadFrame(fd, s->rx_, buf, n, code, message)) {
    if (code == "ERR_RFS_LINK") { code = "ERR_RFS_AUTH"; message = "the receiver closed the connection during the handshake (wrong key?)"; }
    message = peer + ": " + message;
    return nullptr;  // the destructor closes fd
  }
  if (n != wire::kAckLen || buf[0] != wire::kMsgAck) { code = "ERR_RFS_AUTH"; message = peer + ": unexpected first frame"; return nullptr; }
  SetTimeouts(fd, 0);
  {
    // A send blocked longer than the ack timeout (the secondary stopped reading: stalled, or a
    // partition with full buffers) fails with EAGAIN and the sender is lost, whichever thread
    // sends (the writer, or a FUSE thread sending its own record directly).
    struct timeval tv;
    tv.tv_sec = opts.ackTimeoutMs / 1000;
    tv.tv_usec = (opts.ackTimeoutMs % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  s->writer_ = std::thread([p = s.get()] {
    pthread_setname_np(pthread_self(), "rfs-tx-write");
    p->WriterLoop();
  });
  s->acker_ = std::thread([p = s.get()] {
    pthread_setname_np(pthread_self(), "rfs-tx-ack");
    p->AckLoop();
  });
  return s;
}

Sender::~Sender() {
  Close();
}

void Sender::Close() {
  {
    std::lock_guard<std::mutex> lk(closeMu_);
    if (closed_) return;
    closed_ = true;
  }
  Lose("ERR_RFS_CLOSED", "sender closed");
  if (writer_.joinable()) writer_.join();
  if (acker_.joinable()) acker_.join();
  std::unique_lock<std::mutex> lk(mu_);
  // A submitting thread may still be sealing or in send() (shut down: returns soon).
  queueCv_.wait(lk, [&] { return !sending_ && !sealing_; });
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void Sender::OnLost(LostFn fn) {
  std::lock_guard<std::mutex> lk(mu_);
  lostFns_.push_back(std::move(fn));
}

bool Sender::Lost() {
  std::lock_guard<std::mutex> lk(mu_);
  return lost_;
}

void Sender::Lose(const char* code, const std::string& reason) {
  std::vector<LostFn> fns;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (lost_) return;
    lost_ = true;
    lostCode_ = code;
    lostReason_ = reason;
    queue_.clear();  // unsent data is dropped; its metadata stays in unacked_
    frames_.clear();
    fns = lostFns_;
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);  // under mu_: Close() closes fd_ under it too
  }
  ackCv_.notify_all();
  queueCv_.notify_all();
  sealedCv_.notify_all();
  for (auto& fn : fns) fn(code, reason);
}

uint64_t Sender::Submit(Record&& r) { return Enqueue(std::move(r), false); }

uint64_t Sender::SubmitLent(Record&& r) { return Enqueue(std::move(r), true); }

void Sender::ReleaseLent(uint64_t seq) {
  std::unique_lock<std::mutex> lk(mu_);
  // Lost: the queue was dropped; wait only for a batch the writer may still be sealing.
  sealedCv_.wait(lk, [&] { return sealed_ >= seq || (lost_ && !sealing_); });
}

uint64_t Sender::Enqueue(Record&& r, bool lent) {
  // A large write goes as several records (the last seq covers all).
  if (r.op == Op::Write && r.Size() > kSplitBytes) {
    uint64_t last = 0;
    size_t off = 0;
    while (off < r.Size()) {
      size_t n = std::min(kSplitBytes, r.Size() - off);
      Record part;
      part.op = Op::Write;
      part.path = r.path;
      part.offset = r.offset + off;
      part.flags = r.flags | (off + n < r.Size() ? kWriteMore : 0);  // the receiver acks only the last part
      part.borrowed = r.Bytes() + off;  // still valid: we are inside the caller's Submit (or lent)
      part.borrowed_len = n;
      last = Enqueue(std::move(part), lent);
      off += n;
    }
    return last;
  }
  size_t bytes = wire::EncodedSize(r);
  bool overflow = false;
  bool seal = false;
  bool wake = false;
  uint64_t seq;
  // A record up to kDirectMax (every record: large writes are split above) is sealed by the
  // submitting thread itself when nothing is queued and nobody seals: no copy of lent bytes, no
  // hand-off. Otherwise it is queued for the writer thread (concurrent submitters go on
  // meanwhile); lent bytes can only be read during Submit, so a queued record owns a copy (made
  // outside the lock).
  // A lent record is always queued, as it is: the writer thread seals it while the caller writes.
  const bool small = bytes <= kDirectMax;
  if (r.borrowed && !lent) {
    bool own = !small;
    if (!own) {
      std::lock_guard<std::mutex> lk(mu_);
      own = !queue_.empty() || sealing_;
    }
    if (own) r.Own();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    seq = ++nextSeq_;
    r.seq = seq;
    Pending p;
    p.rec.seq = seq;
    p.rec.op = r.op;
    p.rec.path = r.path;
    p.rec.path2 = r.path2;
    p.rec.offset = r.offset;
    p.rec.length = r.op == Op::Write ? r.Size() : r.length;
    p.bytes = bytes;
    unacked_.push_back(std::move(p));
    if (lost_) return seq;
    if (pendingBytes_ > 0 && pendingBytes_ + bytes > opts_.maxQueueBytes) {
      overflow = true;
    } else {
      pendingBytes_ += bytes;
      // Nothing queued and nobody sealing: seal it on this thread (order is kept: whoever seals
      // next finds sealing_ set, or finds this frame already in frames_ or on the socket).
      if (small && !lent && queue_.empty() && !sealing_) {
        seal = sealing_ = true;
      } else {
        if (!lent) r.Own();  // rare: the state changed since the check above
        // The writer needs waking only for the first record queued (it takes the next ones as it
        // loops): on a busy machine each wake-up costs a context switch on the submitter's path.
        wake = queue_.empty();
        queue_.push_back(std::move(r));
      }
    }
  }
  if (overflow) {
    Lose("ERR_RFS_QUEUE_FULL", "replication queue overflow: the secondary fell behind by more than " +
                                   std::to_string(opts_.maxQueueBytes) + " bytes");
    return seq;
  }
  if (!seal) {
    if (wake) queueCv_.notify_all();
    return seq;
  }
  std::vector<uint8_t> frame;
  {
    std::lock_guard<std::mutex> lk(mu_);
    frame = SpareLocked();
  }
  std::vector<Record> one;
  one.push_back(std::move(r));
  Seal(one, bytes, frame);
  // The writer is woken only when it has something to do (a frame to send, records queued while
  // we sealed) or Close waits (lost): a wake-up for nothing costs a context switch per change.
  // A ReleaseLent waits on us only once the link is lost: a lent record queued while we sealed,
  // then dropped with the queue, is released when nobody seals any more.
  bool direct = false, wakeWriter = false, lost = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    sealing_ = false;
    sealed_ = std::max(sealed_, seq);
    if (lost_) {
      RecycleLocked(std::move(frame));
      wakeWriter = lost = true;
    } else if (frame.size() <= kSendDirectMax && frames_.empty() && !sending_) {
      direct = sending_ = true;  // a small frame, nothing before it: send it from here
    } else {
      frames_.push_back(std::move(frame));
      wakeWriter = true;
    }
    wakeWriter = wakeWriter || !queue_.empty();
  }
  if (wakeWriter) queueCv_.notify_all();
  if (lost) sealedCv_.notify_all();
  if (direct) {
    bool ok = SendFrame(frame);
    int err = errno;
    {
      std::lock_guard<std::mutex> lk(mu_);
      sending_ = false;
      RecycleLocked(std::move(frame));
      wakeWriter = !frames_.empty() || !queue_.empty() || lost_;
    }
    if (wakeWriter) queueCv_.notify_all();
    if (!ok) LoseSend(err);
  }
  return seq;
}

void Sender::Diverged(const std::string& reason) { Lose("ERR_RFS_DIVERGED", reason); }

bool Sender::WaitAcked(uint64_t seq) { return WaitFor(seq, opts_.mode == AckMode::Written); }

bool Sender::WaitApplied(uint64_t seq) { return WaitFor(seq, true); }

bool Sender::WaitFor(uint64_t seq, bool applied) {
  std::unique_lock<std::mutex> lk(mu_);
  auto level = [&] { return applied ? applied_ : received_; };
  if (level() >= seq) return true;
  if (lost_) return false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.ackTimeoutMs);
  while (!lost_ && level() < seq) {
    if (ackCv_.wait_until(lk, deadline) == std::cv_status::timeout && !lost_ && level() < seq) {
      lk.unlock();
      Lose("ERR_RFS_ACK_TIMEOUT", "seq " + std::to_string(seq) + " not acknowledged" + (applied ? " as applied" : "") +
                                      " within " + std::to_string(opts_.ackTimeoutMs) + " ms");
      return false;
    }
  }
  return level() >= seq;
}

bool Sender::WaitReply(uint64_t id, std::vector<uint8_t>& out, std::string& err, int idleTimeoutMs) {
  std::unique_lock<std::mutex> lk(mu_);
  size_t seen = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(idleTimeoutMs);
  while (true) {
    auto it = replies_.find(id);
    if (it != replies_.end() && it->second.done) {
      Reply r = std::move(it->second);
      replies_.erase(it);
      if (r.status != 0) {
        err = "the secondary could not answer: " + std::string(r.data.begin(), r.data.end());
        return false;
      }
      out = std::move(r.data);
      return true;
    }
    if (lost_) { err = "replication lost: " + lostReason_; replies_.erase(id); return false; }
    size_t have = it == replies_.end() ? 0 : it->second.data.size();
    if (have != seen) {
      seen = have;
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(idleTimeoutMs);
    }
    if (ackCv_.wait_until(lk, deadline) == std::cv_status::timeout) {
      auto again = replies_.find(id);
      if (again == replies_.end() || (!again->second.done && again->second.data.size() == seen)) {
        err = "no answer from the secondary within " + std::to_string(idleTimeoutMs) + " ms";
        replies_.erase(id);
        return false;
      }
    }
  }
}

bool Sender::WaitDurable(uint64_t seq) {
  if (opts_.mode == AckMode::Written) return WaitAcked(seq);
  std::lock_guard<std::mutex> lk(mu_);
  return !lost_;
}

std::vector<UnackedRecord> Sender::TakeUnacked() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<UnackedRecord> out;
  out.reserve(unacked_.size());
  if (lost_) {
    for (auto& p : unacked_) out.push_back(std::move(p.rec));
    unacked_.clear();
    pendingBytes_ = 0;
  } else {
    for (auto& p : unacked_) out.push_back(p.rec);
  }
  return out;
}

SenderStats Sender::Stats() {
  std::lock_guard<std::mutex> lk(mu_);
  SenderStats s;
  s.submitted = nextSeq_;
  s.received = received_;
  s.applied = applied_;
  s.pendingBytes = pendingBytes_;
  s.queuedRecords = queue_.size();
  s.bytesSent = bytesSent_;
  s.framesSent = framesSent_;
  s.lost = lost_;
  s.lostCode = lostCode_;
  s.lostReason = lostReason_;
  return s;
}

void Sender::LoseSend(int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    Lose("ERR_RFS_ACK_TIMEOUT", "the secondary " + peer_ + " stopped reading: a send stayed blocked for " +
                                    std::to_string(opts_.ackTimeoutMs) + " ms");
  } else {
    // The secondary may have closed the link right after telling why (an apply that failed: disk
    // full): give the ack thread a moment to read that, so the loss names the cause.
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (ackCv_.wait_for(lk, std::chrono::milliseconds(200), [this] { return lost_; })) return;
    }
    Lose("ERR_RFS_LINK", std::string("link down: send to ") + peer_ + ": " + std::strerror(err));
  }
}

std::vector<uint8_t> Sender::SpareLocked() {
  if (spare_.empty()) return std::vector<uint8_t>();
  std::vector<uint8_t> b = std::move(spare_.back());
  spare_.pop_back();
  return b;
}

void Sender::RecycleLocked(std::vector<uint8_t>&& buf) {
  if (spare_.size() < kSpareFrames && buf.capacity() <= kSpareMaxBytes) spare_.push_back(std::move(buf));
}

void Sender::Seal(std::vector<Record>& batch, size_t plain, std::vector<uint8_t>& out) {
  out.resize(kFrameHeader + plain + kTagLen);
  uint8_t* p = tx_.Begin(out.data(), plain);
  uint8_t hdr[wire::kRecordHeader];
  for (auto& r : batch) {
    wire::EncodeHeader(r, hdr);
    p = tx_.Update(p, hdr, sizeof hdr);
    p = tx_.Update(p, r.path.data(), r.path.size());
    p = tx_.Update(p, r.path2.data(), r.path2.size());
    p = tx_.Update(p, r.name.data(), r.name.size());
    p = tx_.Update(p, r.Bytes(), r.Size());
  }
  tx_.Finish(p);
  batch.clear();  // frees the write data before the (possibly slow) send
}

bool Sender::SendFrame(const std::vector<uint8_t>& frame) {
  bool ok = WriteAll(fd_, frame.data(), frame.size());
  if (ok) {
    std::lock_guard<std::mutex> lk(mu_);
    bytesSent_ += frame.size();
    framesSent_++;
  }
  return ok;
}

void Sender::WriterLoop() {
  std::vector<Record> batch;
  while (true) {
    std::vector<uint8_t> frame;
    size_t plain = 0;
    bool send = false;
    batch.clear();
    {
      std::unique_lock<std::mutex> lk(mu_);
      queueCv_.wait(lk, [&] {
        return lost_ || (!frames_.empty() && !sending_) || (!queue_.empty() && !sealing_);
      });
      if (lost_) return;
      if (!frames_.empty() && !sending_) {
        frame = std::move(frames_.front());
        frames_.pop_front();
        send = sending_ = true;
      } else {
        while (!queue_.empty()) {
          size_t sz = wire::EncodedSize(queue_.front());
          if (!batch.empty() && (plain + sz > kBatchTarget || plain + sz > kMaxFramePlain)) break;
          plain += sz;
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        sealing_ = true;
        frame = SpareLocked();
      }
    }
    if (!send) {
      uint64_t last = batch.empty() ? 0 : batch.back().seq;
      Seal(batch, plain, frame);  // after it, nothing lent in the batch is read any more
      {
        std::lock_guard<std::mutex> lk(mu_);
        sealing_ = false;
        sealed_ = std::max(sealed_, last);
        frames_.push_back(std::move(frame));  // sent at the next turn (or by nobody: lost)
      }
      sealedCv_.notify_all();  // ReleaseLent
      continue;
    }
    bool ok = SendFrame(frame);
    int err = errno;
    {
      std::lock_guard<std::mutex> lk(mu_);
      sending_ = false;
      RecycleLocked(std::move(frame));
    }
    // Nobody else waits on queueCv_ for this thread's work: Close waits only after joining it.
    if (!ok) {
      LoseSend(err);
      return;
    }
  }
}

void Sender::OnAck(uint64_t received, uint64_t applied) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (received > received_) received_ = received;
    if (applied > applied_) applied_ = applied;
    uint64_t acked = AckedLocked();
    while (!unacked_.empty() && unacked_.front().rec.seq <= acked) {
      pendingBytes_ -= std::min<uint64_t>(pendingBytes_, unacked_.front().bytes);
      unacked_.pop_front();
    }
  }
  ackCv_.notify_all();
}

void Sender::AckLoop() {
  std::vector<uint8_t> buf;
  while (true) {
    size_t n = 0;
    std::string code, message;
    if (!ReadFrame(fd_, rx_, buf, n, code, message)) {
      Lose(code.c_str(), message + " (from " + peer_ + ")");
      return;
    }
    size_t i = 0;
    while (i < n) {
      uint8_t t = buf[i];
      if (t == wire::kMsgAck && n - i >= wire::kAckLen) {
        OnAck(wire::Get64(&buf[i + 1]), wire::Get64(&buf[i + 9]));
        i += wire::kAckLen;
      } else if (t == wire::kMsgReply && n - i >= wire::kReplyHeader) {
        uint64_t id = wire::Get64(&buf[i + 1]);
        bool last = buf[i + 9] != 0;
        uint32_t status = wire::Get32(&buf[i + 10]);
        {
          std::lock_guard<std::mutex> lk(mu_);
          Reply& r = replies_[id];
          r.data.insert(r.data.end(), buf.begin() + static_cast<std::ptrdiff_t>(i + wire::kReplyHeader), buf.begin() + static_cast<std::ptrdiff_t>(n));
          r.done = last;
          r.status = status;
        }
        ackCv_.notify_all();
        i = n;
      } else if (t == wire::kMsgFailed && n - i >= 17) {
        uint64_t seq = wire::Get64(&buf[i + 1]);
        int err = static_cast<int>(wire::Get32(&buf[i + 9]));
        size_t pl = wire::Get32(&buf[i + 13]);
        std::string path(reinterpret_cast<const char*>(&buf[i + 17]), std::min(pl, n - i - 17));
        Lose("ERR_RFS_APPLY", "the secondary could not apply seq " + std::to_string(seq) + " on '" + path +
                                  "': " + std::strerror(err));
        return;
      } else {
        Lose("ERR_RFS_FRAME", "malformed message from the receiver " + peer_);
        return;
      }
    }
  }
}

}  // namespace ha::rfs

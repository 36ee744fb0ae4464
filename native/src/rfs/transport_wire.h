// Messages inside the sealed frames of the replication channel (see channel.h).
//   0x01 record:  header (kRecordHeader bytes, little-endian fields below) + path + path2 + name + data
//   0x02 ack:     u64 received (all records up to it were received), u64 applied (applied, and
//                 for Fsync made durable, on the secondary)
//   0x03 failed:  u64 seq, i32 errno, u32 path length, path (the secondary could not apply seq)
//   0x04 reply:   u64 id (the seq of the request record, e.g. Sums), u8 last (1: final part),
//                 u32 status (0 ok; else the rest is an error text), then the payload to the end of
//                 the frame (parts are concatenated in order; a reply message is alone in its frame)
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "record.h"

namespace ha::rfs::wire {

enum : uint8_t { kMsgRecord = 1, kMsgAck = 2, kMsgFailed = 3, kMsgReply = 4 };
constexpr size_t kReplyHeader = 1 + 8 + 1 + 4;
constexpr size_t kReplyPart = 1u << 20;  // payload bytes per reply frame

// type(1) seq(8) op(1) offset(8) length(8) mode(4) flags(4) uid(4) gid(4) rdev(8)
// atime(16) mtime(16) pathLen(4) path2Len(4) nameLen(4) dataLen(4)
constexpr size_t kRecordHeader = 1 + 8 + 1 + 8 + 8 + 4 + 4 + 4 + 4 + 8 + 16 + 16 + 16;
constexpr size_t kAckLen = 17;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxName = 255;
constexpr size_t kMaxRecordData = 4u << 20;

inline uint8_t* Put64(uint8_t* p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i)); return p + 8; }
inline uint8_t* Put32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i)); return p + 4; }
inline uint64_t Get64(const uint8_t* p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }
inline uint32_t Get32(const uint8_t* p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }

inline size_t EncodedSize(const Record& r) {
  return kRecordHeader + r.path.size() + r.path2.size() + r.name.size() + r.Size();
}

inline void EncodeHeader(const Record& r, uint8_t h[kRecordHeader]) {
  uint8_t* p = h;
  *p++ = kMsgRecord;
  p = Put64(p, r.seq);
  *p++ = static_cast<uint8_t>(r.op);
  p = Put64(p, r.offset);
  p = Put64(p, r.length);
  p = Put32(p, r.mode);
  p = Put32(p, r.flags);
  p = Put32(p, r.uid);
  p = Put32(p, r.gid);
  p = Put64(p, r.rdev);
  p = Put64(p, static_cast<uint64_t>(r.atime.sec));
  p = Put64(p, static_cast<uint64_t>(r.atime.nsec));
  p = Put64(p, static_cast<uint64_t>(r.mtime.sec));
  p = Put64(p, static_cast<uint64_t>(r.mtime.nsec));
  p = Put32(p, static_cast<uint32_t>(r.path.size()));
  p = Put32(p, static_cast<uint32_t>(r.path2.size()));
  p = Put32(p, static_cast<uint32_t>(r.name.size()));
  Put32(p, static_cast<uint32_t>(r.Size()));
}

// Decodes one record at p (n bytes available, p[0] == kMsgRecord). Returns the bytes consumed,
// or 0 with `err` set when the record is malformed.
// The record's data is left where it is (r.borrowed, valid as long as p's buffer is): the caller
// copies it (Record::Own) or keeps the buffer with the record (Record::keep).
inline size_t DecodeRecord(const uint8_t* p, size_t n, Record& r, std::string& err) {
  if (n < kRecordHeader) { err = "truncated record header"; return 0; }
  const uint8_t* q = p + 1;
  r.seq = Get64(q); q += 8;
  r.op = static_cast<Op>(*q++);
  r.offset = Get64(q); q += 8;
  r.length = Get64(q); q += 8;
  r.mode = Get32(q); q += 4;
  r.flags = Get32(q); q += 4;
  r.uid = Get32(q); q += 4;
  r.gid = Get32(q); q += 4;
  r.rdev = Get64(q); q += 8;
  r.atime.sec = static_cast<int64_t>(Get64(q)); q += 8;
  r.atime.nsec = static_cast<int64_t>(Get64(q)); q += 8;
  r.mtime.sec = static_cast<int64_t>(Get64(q)); q += 8;
  r.mtime.nsec = static_cast<int64_t>(Get64(q)); q += 8;
  size_t pl = Get32(q), p2l = Get32(q + 4), nl = Get32(q + 8), dl = Get32(q + 12);
  q += 16;
  if (pl > kMaxPath || p2l > kMaxPath || nl > kMaxName || dl > kMaxRecordData + (1u << 16)) {
    err = "record field too long (seq " + std::to_string(r.seq) + ")";
    return 0;
  }
  size_t total = kRecordHeader + pl + p2l + nl + dl;
  if (total > n) { err = "truncated record (seq " + std::to_string(r.seq) + ")"; return 0; }
  r.path.assign(reinterpret_cast<const char*>(q), pl); q += pl;
  r.path2.assign(reinterpret_cast<const char*>(q), p2l); q += p2l;
  r.name.assign(reinterpret_cast<const char*>(q), nl); q += nl;
  r.data.clear();
  r.borrowed = q;
  r.borrowed_len = dl;
  return total;
}

}  // namespace ha::rfs::wire

// Secure channel for replication traffic: a mutually authenticated handshake over a connected TCP
// socket, then length-prefixed frames sealed with AES-256-GCM (one key per direction, a counter
// nonce per frame, so a replayed, reordered, dropped or altered frame fails to open).
//
// Handshake (both sides know the cluster key K):
//   C -> S  hello:  "HARFS" 0x01, 2 reserved bytes, Nc (32 random bytes)
//   S -> C  hello:  "HARFS" 0x01, 2 reserved bytes, Ns (32), HMAC(Ka, "server" | Nc | Ns)
//   C -> S  proof:  HMAC(Ka, "client" | Nc | Ns)
//   S -> C  first sealed frame (an ack 0/0): the server accepted the client.
// with Ka = HKDF-SHA256(K, info "ha-sdk/rfs/v1 auth"), and session keys
// HKDF-SHA256(K, salt Nc|Ns, info "ha-sdk/rfs/v1 c2s" / "ha-sdk/rfs/v1 s2c").
//
// Frame: u32 big-endian L (= ciphertext length + 16), ciphertext, 16-byte tag; the length prefix
// is the AAD; the nonce is 4 zero bytes and the frame counter (u64 big-endian) of that direction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace ha::rfs {

constexpr size_t kFrameHeader = 4;
constexpr size_t kTagLen = 16;
// Largest plaintext in one frame: a 4 MiB record plus its header and paths.
constexpr size_t kMaxFramePlain = (4u << 20) + (64u << 10);
constexpr size_t kMaxFrameLen = kMaxFramePlain + kTagLen;

// Which AES-256-GCM implementation FrameCipher uses in this process: "intel-ipsec-mb (avx512)"
// where the addon was built with Intel's intel-ipsec-mb and the CPU has VAES + VPCLMULQDQ
// (2.5x faster than OpenSSL 3.0 here), else "openssl". Both produce the same bytes (same frames,
// same tags): peers may use different ones. HA_RFS_AES=openssl in the environment forces OpenSSL
// (read at each FrameCipher::Init, that is at each link's handshake).
const char* CipherImplementation();

// One direction of AES-256-GCM with a frame counter.
class FrameCipher {
 public:
  FrameCipher() = default;
  ~FrameCipher();
  FrameCipher(const FrameCipher&) = delete;
  FrameCipher& operator=(const FrameCipher&) = delete;
  bool Init(const uint8_t key[32], bool encrypt);

  // Sealing, streamed: Begin writes the length prefix at out and prepares the cipher; Update
  // encrypts n bytes from p to out (returns the advanced pointer); Finish appends the tag.
  // The caller reserves kFrameHeader + plainLen + kTagLen bytes.
  uint8_t* Begin(uint8_t* out, size_t plainLen);
  uint8_t* Update(uint8_t* out, const void* p, size_t n);
  uint8_t* Finish(uint8_t* out);

  // Opening, streamed: BeginOpen with the frame's 4-byte prefix; Decrypt pieces (dst may equal
  // src); FinishOpen checks the tag. Nothing decrypted may be used before FinishOpen is true.
  bool BeginOpen(const uint8_t prefix[4]);
  bool Decrypt(const uint8_t* src, size_t n, uint8_t* dst);
  bool FinishOpen(const uint8_t tag[16]);

 private:
  void Nonce(uint8_t iv[12]) const;
  EVP_CIPHER_CTX* ctx_ = nullptr;
  struct Imb;            // intel-ipsec-mb key schedule and running state (channel.cc)
  Imb* imb_ = nullptr;   // set: this cipher uses intel-ipsec-mb, ctx_ is unused
  uint64_t counter_ = 0;
};

struct ChannelKeys {
  uint8_t send[32];
  uint8_t recv[32];
};

// Runs the handshake on a connected, blocking socket (timeouts set by the caller with
// SO_RCVTIMEO/SO_SNDTIMEO). On failure returns false with code (ERR_RFS_AUTH, ERR_RFS_LINK) and
// a message.
bool Handshake(int fd, const std::vector<uint8_t>& clusterKey, bool client, ChannelKeys& keys,
               std::string& code, std::string& message);

// Socket helpers: full write / full read (false on error or EOF, with errno or 0 for EOF).
bool WriteAll(int fd, const void* p, size_t n);
bool ReadAll(int fd, void* p, size_t n);

// Reads and opens one whole frame (blocking): on success buf[0..plainLen) is the plaintext.
// On failure: code ERR_RFS_LINK (socket error/EOF), ERR_RFS_FRAME (bad length) or ERR_RFS_AUTH.
bool ReadFrame(int fd, FrameCipher& rx, std::vector<uint8_t>& buf, size_t& plainLen,
               std::string& code, std::string& message);
// Seals a small plaintext into one frame and writes it (blocking).
bool WriteFrame(int fd, FrameCipher& tx, const uint8_t* plain, size_t n);

}  // namespace ha::rfs

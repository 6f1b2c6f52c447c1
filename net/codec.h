// The wire codec: engine messages (core/message.h) to and from Thrift TCompactProtocol frames
// (net/tessera.thrift), and the length-prefixed framing of a byte stream.
//
// A frame on the wire is a 4-byte big-endian body length followed by the body, an encoded
// wire::Frame union: one message, a batch of messages, a challenge or response of the
// connection handshake, or a heartbeat. Every decoder is written for hostile input: a frame
// over the limit, a truncated or malformed body, trailing bytes, a union with no or two members,
// an unknown message kind, packed keys or values whose length is not a multiple of 8, or counts
// that do not match are errors that say what was wrong; nothing is allocated beyond the limit.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/message.h"
#include "tessera/core/status.h"

namespace tessera::net {

inline constexpr std::uint32_t kDefaultMaxFrameBytes = 256u << 20;  // 256 MiB

// A decoded frame.
struct Frame {
  enum class Kind {
    kMessages,
    kChallenge,
    kResponse,
    kConfirm,
    kHeartbeat,
    kJoin,
    kPeers,
    kGoodbye
  };
  Kind kind = Kind::kMessages;
  std::vector<Message> messages;   // kMessages: one, or a batch
  std::string nonce;               // kChallenge, kResponse
  int rank = -1;                   // kResponse, kJoin: the process index
  std::string mac;                 // kResponse, kConfirm
  std::string address;             // kJoin
  std::vector<std::string> peers;  // kPeers
  std::uint64_t sequence = 0;      // kHeartbeat
  std::string reason;              // kGoodbye: empty for a clean finish
};

// Frame bodies (without the length prefix). One message encodes as a single message, more as a
// batch.
std::string EncodeMessages(std::span<const Message> messages);
// The same with the 4-byte length prefix in front (AppendFrame's output), in one buffer.
std::string EncodeFramedMessages(std::span<const Message> messages);
std::string EncodeChallenge(std::string_view nonce);
std::string EncodeResponse(int rank, std::string_view nonce, std::string_view mac);
std::string EncodeConfirm(std::string_view mac);
std::string EncodeHeartbeat(std::uint64_t sequence);
std::string EncodeJoin(int process, std::string_view address);
std::string EncodePeers(const std::vector<std::string>& addresses);
std::string EncodeGoodbye(std::string_view reason);

// Decodes one frame body of at most `max_frame_bytes`.
StatusOr<Frame> DecodeFrame(std::string_view body,
                            std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes);

// Appends the 4-byte big-endian length of `body`, then `body`, to `out`.
void AppendFrame(std::string& out, std::string_view body);

// Cuts a byte stream into frame bodies.
// A connection's buffers larger than this are freed once a frame that needed them has been
// read, so a process does not keep the largest frame it ever got on every connection.
inline constexpr std::size_t kKeptBufferBytes = 4u << 20;

class FrameReader {
 public:
  explicit FrameReader(std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_(max_frame_bytes) {}
  void Feed(const char* data, std::size_t n) {
    if (n == 0) return;  // (memcpy into a buffer not yet allocated is undefined even for 0)
    std::memcpy(Space(n), data, n), Commit(n);
  }
  // Or, without the copy: room for `n` bytes to read into, then Commit(the count read).
  char* Space(std::size_t n);
  void Commit(std::size_t n);
  // The next complete frame body, valid until the next Feed or Space; nullopt when more bytes
  // are needed; an error when the announced length is over the limit (the stream is then
  // unusable).
  StatusOr<std::optional<std::string_view>> Next();
  // The same, as bytes the caller may change in place (e.g. decrypt), with the same lifetime.
  StatusOr<std::optional<std::span<char>>> NextMutable();
  std::size_t buffered() const { return size_ - pos_; }

 private:
  void Compact();  // moves unread bytes to the front when that frees enough room
  std::uint32_t max_;
  std::unique_ptr<char[]> data_;  // not zero-filled on growth, unlike a string or vector
  std::size_t capacity_ = 0, size_ = 0;
  std::size_t pos_ = 0;  // first unread byte
};

}  // namespace tessera::net

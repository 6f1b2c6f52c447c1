// The frame decoder and the stream reader of the TCP transport: whatever a peer sends, the
// result is a frame or an error, never a crash, a hang or an allocation beyond the limit.
#include <algorithm>
#include <cstdint>
#include <string_view>

#include "tessera/net/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera::net;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  constexpr std::uint32_t kLimit = 1 << 20;
  (void)DecodeFrame(bytes, kLimit);
  // The same bytes as a stream of length-prefixed frames, fed in uneven pieces.
  FrameReader reader(kLimit);
  std::size_t at = 0, piece = 1;
  while (at < size) {
    const std::size_t n = std::min(piece, size - at);
    reader.Feed(bytes.data() + at, n);
    at += n;
    piece = piece * 3 % 257 + 1;
    for (;;) {
      auto body = reader.Next();
      if (!body.ok()) return 0;  // an oversize frame: the stream is dropped
      if (!*body) break;
      (void)DecodeFrame(**body, kLimit);
    }
  }
  return 0;
}

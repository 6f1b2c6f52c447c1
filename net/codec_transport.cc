#include "tessera/net/codec_transport.h"

#include "tessera/net/codec.h"

namespace tessera::net {

Status CodecTransport::Send(Rank to, Message msg) {
  msg.to = to;
  const Message one[] = {std::move(msg)};
  const std::string body = EncodeMessages(one);
  TESSERA_ASSIGN_OR_RETURN(Frame frame, DecodeFrame(body));
  if (frame.kind != Frame::Kind::kMessages || frame.messages.size() != 1) {
    return Internal("codec transport: a message did not decode as one message");
  }
  return inner_.Send(to, std::move(frame.messages[0]));
}

void UseCodecTransportByDefault() {
  SetDefaultTransportFactory(
      [](int endpoints) { return std::make_shared<CodecTransport>(endpoints); });
}

}  // namespace tessera::net

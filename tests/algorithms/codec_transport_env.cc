// With TESSERA_TEST_TRANSPORT=codec (the "codec." copies of these tests in ctest), every engine
// run that names no transport passes each message through the wire codec
// (net/codec_transport.h): an app whose workers share state other than by message fails them.
#include <cstdlib>
#include <string>

#include "tessera/net/codec_transport.h"

namespace {

const bool kCodecTransport = [] {
  const char* t = std::getenv("TESSERA_TEST_TRANSPORT");
  if (t == nullptr || std::string(t) != "codec") return false;
  tessera::net::UseCodecTransportByDefault();
  return true;
}();

}  // namespace

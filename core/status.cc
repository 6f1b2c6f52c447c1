#include "tessera/core/status.h"

namespace tessera {

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_;
}

}  // namespace tessera

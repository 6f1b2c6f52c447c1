#include "tessera/tools/builtin_commands.h"

namespace tessera {

void RegisterBuiltinCommands() {
  [[maybe_unused]] static const bool registered = [] {
    RegisterLassoCommand();
    RegisterMfCommand();
    RegisterLdaCommand();
    return true;
  }();
}

}  // namespace tessera

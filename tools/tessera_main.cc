// The `tessera` command line: the built-in app commands (tools/builtin_commands.h), plus
// `launch` and `compare` (tools/command.h).
#include "tessera/tools/builtin_commands.h"
#include "tessera/tools/command.h"

int main(int argc, char** argv) {
  tessera::RegisterBuiltinCommands();
  return tessera::RunCommandLine(
      argc, argv, "Tessera: distributed machine learning, model-parallel and data-parallel",
      "tessera 0.1.0");
}

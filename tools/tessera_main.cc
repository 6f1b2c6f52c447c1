// The `tessera` command line: the commands registered by the tools/*_command.cc files, plus
// `launch` and `compare` (tools/command.h).
#include "tessera/tools/command.h"

int main(int argc, char** argv) {
  return tessera::RunCommandLine(
      argc, argv, "Tessera: distributed machine learning, model-parallel and data-parallel",
      "tessera 0.1.0");
}

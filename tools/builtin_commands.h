// The built-in app commands (lasso, mf, lda) as a library: a user's program that registers its
// own schedulers, update functions or commands calls RegisterBuiltinCommands() before
// RunCommandLine and gets these commands too, with its own schedulers selectable by
// --scheduler.
#pragma once

namespace tessera {

// Registers lasso, mf and lda (once, however often it is called).
void RegisterBuiltinCommands();

// Each one alone.
void RegisterLassoCommand();
void RegisterMfCommand();
void RegisterLdaCommand();

}  // namespace tessera

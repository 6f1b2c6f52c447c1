// The model file readers (`tessera mf --output`, `tessera lda --output`, read back by
// `tessera mf predict` and friends): the first byte picks one, the rest is the file. Any input
// is a model or a `file:line:` error.
#include <cstdint>

#include "tessera/algorithms/lda/lda.h"
#include "tessera/algorithms/mf/mf.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  if (size == 0) return 0;
  fuzz::MemFile file(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto m = ReadMfModel(file.path());
    if (m.ok() && m->w.rows() > 0 && m->h.rows() > 0) (void)m->TopN(0, 3);
  } else {
    auto m = ReadLdaModel(file.path());
    if (m.ok() && m->topics > 0 && m->num_words() > 0) (void)m->TopWords(0, 3);
  }
  return 0;
}

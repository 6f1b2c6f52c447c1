// The data readers (LIBSVM, CSV, ratings, UCI bag of words, LIBSVM counts, text corpus): the
// first byte picks one, the rest is the file. Any input is a data set or a `file:line:` error.
#include <cstdint>

#include "tessera/core/corpus.h"
#include "tessera/core/dataset.h"
#include "tessera/core/ratings.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  if (size == 0) return 0;
  const int which = data[0] % 6;
  fuzz::MemFile file(data + 1, size - 1);
  const std::string path = file.path();
  switch (which) {
    case 0:
      (void)ReadLibsvm(path);
      break;
    case 1:
      (void)ReadCsv(path);
      break;
    case 2:
      (void)ReadRatings(path);
      break;
    case 3: {
      static const std::uint8_t kVocab[] = "alpha\nbeta\ngamma\ndelta\n";
      fuzz::MemFile vocab(kVocab, sizeof kVocab - 1);
      (void)ReadUciBagOfWords(path, vocab.path());
      break;
    }
    case 4:
      (void)ReadLibsvmCounts(path);
      break;
    case 5:
      (void)ReadTextCorpus(path, 1);
      break;
  }
  return 0;
}

#ifndef MM_TOKENIZERTOOLS_H
#define MM_TOKENIZERTOOLS_H

#include <string>
#include <vector>

namespace mm {

// `mmdata tokenizer ARGS...` and `mmdata tokenize ARGS...` (ARGS: after the subcommand); return the exit status.
int tokenizerTrainCommand(const std::vector<std::string> &args);
int tokenizeCommand(const std::vector<std::string> &args);

} // namespace mm

#endif // MM_TOKENIZERTOOLS_H

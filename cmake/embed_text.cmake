# Writes OUTPUT, a C++ file defining `extern const char SYMBOL[]` with the bytes of INPUT, so a
# page is served from memory and the binary needs no files beside it.
# Usage: cmake -DINPUT=... -DOUTPUT=... -DSYMBOL=... -P embed_text.cmake
file(READ "${INPUT}" hex HEX)
# every byte as a character literal '\xNN' (char may be signed: 0xNN would be a narrowing)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
file(WRITE "${OUTPUT}"
  "// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\n"
  "namespace netsvr {\nextern const char ${SYMBOL}[];\nconst char ${SYMBOL}[] = {${bytes}0};\n}\n")

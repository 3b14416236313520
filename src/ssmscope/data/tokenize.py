"""A C/C++ lexer and ReVeal-style identifier normalisation.

:func:`lex` splits source text into lexemes with one compiled regular expression (comments and
whitespace dropped). Lexemes are classified by their first characters, so the hot loop is a single
``re.findall`` over the text: about a megabyte of code per second or better in CPython.

:func:`tokenize` adds optional normalisation, as ReVeal (Chakraborty et al., TSE 2021) did:

* ``"none"``: the lexemes as written;
* ``"identifiers"``: each function name becomes FUNCn and every other identifier VARn, numbered
  per function in order of first appearance (so the same variable keeps the same name within a
  function); C/C++ keywords and common libc / POSIX / API names are kept;
* ``"full"``: as ``"identifiers"``, and literals become NUMBER, STRING and CHAR.

A name counts as a function name when the next lexeme is ``(`` (a call or a definition).
"""

from __future__ import annotations

import re

from ..config import NORMALIZE_MODES
from ..errors import SsmscopeError

_OPERATORS = [
    # longest first, so that ">>=" is not read as ">>" "="
    ">>=", "<<=", "...", "->*", "<=>",
    "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "::", "##", ".*",
]
_LEXEME = re.compile(
    r"""
    \s+                                        # whitespace (dropped)
  | //[^\n]*                                   # line comment (dropped)
  | /\*.*?\*/                                  # block comment (dropped)
  | (?:u8|[uUL])?"(?:[^"\\]|\\.)*"             # string literal, escapes allowed
  | (?:u8|[uUL])?'(?:[^'\\\n]|\\.){1,8}'       # character literal
  | (?:0[xX][0-9a-fA-F']+(?:\.[0-9a-fA-F']*)?(?:[pP][+-]?\d+)?
     | 0[bB][01']+
     | (?:\d[\d']*\.?[\d']*|\.\d[\d']*)(?:[eE][+-]?\d+)?
    )[uUlLfFzZ]*                               # number with suffix
  | [A-Za-z_$][A-Za-z0-9_$]*                   # identifier or keyword
  | """ + "|".join(re.escape(op) for op in _OPERATORS) + r"""
  | \S                                         # any other single character
    """,
    re.VERBOSE | re.DOTALL,
)

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef union
    unsigned void volatile while _Bool _Complex _Alignas _Alignof _Atomic _Static_assert _Noreturn
    _Thread_local bool true false
    alignas alignof and and_eq asm bitand bitor catch class compl concept consteval constexpr
    constinit const_cast co_await co_return co_yield decltype delete dynamic_cast explicit export
    friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected
    public reinterpret_cast requires static_assert static_cast template this thread_local throw try
    typeid typename using virtual wchar_t char8_t char16_t char32_t xor xor_eq override final
    define include ifdef ifndef endif elif pragma undef""".split()
)

# Names kept verbatim by normalisation: the memory, string and I/O functions whose misuse is what
# vulnerability detectors look for, and the standard types and macros around them.
KEPT_NAMES = frozenset(
    """malloc calloc realloc free alloca memcpy memmove memset memcmp memchr strcpy strncpy strlcpy
    strcat strncat strlcat strlen strnlen strcmp strncmp strcasecmp strncasecmp strchr strrchr strstr
    strtok strtok_r strdup strndup sprintf snprintf vsprintf vsnprintf printf fprintf vprintf scanf
    sscanf fscanf gets fgets puts fputs getc fgetc putc fputc getchar fopen fclose fread fwrite fseek
    ftell fflush open close read write lseek mmap munmap atoi atol atoll strtol strtoul strtoll
    strtoull strtod abort exit assert system exec execl execv execve popen getenv setenv wcscpy
    wcsncpy wcslen wcscat recv send recvfrom sendto socket bind listen accept connect select poll
    ioctl fcntl kmalloc kzalloc kcalloc kfree vmalloc vfree copy_from_user copy_to_user get_user
    put_user memdup_user g_malloc g_free g_new g_strdup
    NULL EOF FILE size_t ssize_t off_t ptrdiff_t uintptr_t intptr_t int8_t int16_t int32_t int64_t
    uint8_t uint16_t uint32_t uint64_t u8 u16 u32 u64 s8 s16 s32 s64 wchar_t std string vector
    INT_MAX INT_MIN UINT_MAX SIZE_MAX errno""".split()
)


def lex(code: str) -> list[str]:
    """Split C/C++ source into lexemes; whitespace and comments are dropped."""
    return [t for t in _LEXEME.findall(code) if not (t[0].isspace() or t.startswith(("//", "/*")))]


def _kind(lexeme: str) -> str:
    """'identifier', 'number', 'string', 'char' or 'punct', from the first characters alone."""
    c = lexeme[0]
    if c == '"' or (c in "uUL" and '"' in lexeme[:3] and lexeme.endswith('"')):
        return "string"
    if c == "'" or (c in "uUL" and "'" in lexeme[:3] and lexeme.endswith("'")):
        return "char"
    if c.isdigit() or (c == "." and len(lexeme) > 1 and lexeme[1].isdigit()):
        return "number"
    if c.isalpha() or c in "_$":
        return "identifier"
    return "punct"


def tokenize(code: str, normalize: str = "identifiers") -> list[str]:
    """Lex ``code`` and normalise it (see the module docstring for the three modes)."""
    if normalize not in NORMALIZE_MODES:
        raise SsmscopeError(f"normalize: unknown mode {normalize!r}; choose one of {', '.join(NORMALIZE_MODES)}")
    lexemes = lex(code)
    if normalize == "none":
        return lexemes
    literal_names = {"number": "NUMBER", "string": "STRING", "char": "CHAR"} if normalize == "full" else {}
    functions: dict[str, str] = {}
    variables: dict[str, str] = {}
    out = []
    for i, lexeme in enumerate(lexemes):
        kind = _kind(lexeme)
        if kind == "identifier":
            if lexeme in C_KEYWORDS or lexeme in KEPT_NAMES:
                out.append(lexeme)
            elif i + 1 < len(lexemes) and lexemes[i + 1] == "(":
                out.append(functions.setdefault(lexeme, f"FUNC{len(functions) + 1}"))
            else:
                out.append(variables.setdefault(lexeme, f"VAR{len(variables) + 1}"))
        else:
            out.append(literal_names.get(kind, lexeme))
    return out

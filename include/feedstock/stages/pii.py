"""The ``pii`` stage: replace personal data and credentials in a document's text with typed placeholders.

Contract. Input: a document's text. Output: the same text with every detected span swapped for a
placeholder (``<EMAIL>``, ``<PHONE>``, ``<IP_ADDRESS>``, ``<CREDIT_CARD>``, ``<IBAN>``, ``<SECRET>``); nothing
else changes, and a document is never dropped. :class:`PiiRedactor` adds ``pii:<type>`` counters to the
stage's stats and stores the per-type counts in ``doc.meta["pii"]``.

Detectors run in a fixed order (secrets, emails, IBANs, credit cards, IP addresses, phones) over the original
text and each one may only claim characters no earlier detector claimed, so a span is redacted at most once
and its type is the most specific one (a card number is never also a phone number). Detectors of types that
were not asked for still claim their spans when a requested type comes later, for the same reason.

Precision matters as much as recall here: a false positive corrupts training text (dates, versions, prices,
code), so the numeric types are checksum-gated (Luhn for cards, ISO 13616 mod-97 for IBANs) and phones and
IPs carry lookarounds that keep them off version strings, dates and longer digit runs.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator

from feedstock.stages.steps import Document, Step

__all__ = ["PII_TYPES", "PLACEHOLDERS", "PiiRedactor", "redact"]

# Detection order, which is also precedence: the earlier type owns a contested span.
PII_TYPES: tuple[str, ...] = ("secret", "email", "iban", "credit_card", "ip_address", "phone")
PLACEHOLDERS: dict[str, str] = {kind: f"<{kind.upper()}>" for kind in PII_TYPES}

# A detector yields (start, end, redact?) over the original text; redact=False claims the span without
# rewriting it, which shields near-misses such as a mistyped IBAN from being shredded by later detectors.
Span = tuple[int, int, bool]

_HAS_DIGIT = re.compile(r"\d")
_NON_DIGIT = re.compile(r"\D")

# Patterns below open with a lookahead on their first character before any lookbehind: sre can then skip
# ahead to candidate characters instead of evaluating the lookbehind at every position (2-3x faster).

# --- secrets ------------------------------------------------------------------------------------------------

# Whole key blocks, including ones pasted with literal "\n" escapes into JSON; a truncated block (no END line,
# common in scraped pages) is still taken up to the end of its base64 body, and never runs on into the next
# block's END, which would swallow all the prose in between.
_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:(?:(?!-----BEGIN ).)*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:[ \t]*\r?\n(?:(?:Proc-Type|DEK-Info|Version|Comment):[^\n]*|[A-Za-z0-9+/=]{16,}))*)",
    re.DOTALL,
)

# Vendor token formats; each starts with a fixed, distinctive prefix, so they are safe to match anywhere.
_TOKEN = re.compile(
    r"""
    (?=[Agxsre])(?<![A-Za-z0-9_\-])
    (?:
        (?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])               # AWS access key id
      | gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])                    # GitHub classic tokens
      | github_pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])                  # GitHub fine-grained tokens
      | xox[baprs]-[A-Za-z0-9\-]{10,}                                    # Slack
      | sk-(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}                      # OpenAI / Anthropic style
      | (?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}                         # Stripe secret / restricted
      | AIza[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_\-])                         # Google API key
      | eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*    # JWT (signature may be empty)
    )
    """,
    re.VERBOSE,
)

# scheme://user:password@host -- only the password is secret; the user name stays readable.
_URL_CREDENTIALS = re.compile(r"://[^\s:/@]{1,128}:(?P<val>[^\s:/@]{1,256})@")

_BEARER = re.compile(r"(?<![A-Za-z])Bearer[ \t]+(?P<val>[A-Za-z0-9._~+/\-]{16,}=*)")

# key = value assignments in configs, env files, code and JSON. The key must end in a credential word
# (db_password, AWS_SECRET_ACCESS_KEY, apiKey); only the value is replaced so the structure survives.
_ASSIGNMENT = re.compile(
    r"""
    (?:(?<![A-Za-z0-9])|(?<=[a-z])(?=[A-Z]))
    (?i:
        pass(?:word|wd|phrase)|pwd|secret|client[_\-]?secret
      | api[_\-]?key|apikey|access[_\-]?key|secret[_\-]?key|private[_\-]?key
      | (?:access|auth|api|refresh|session|bearer|id)?[_\-]?token
    )
    (?![A-Za-z0-9_])
    ["']?[ \t]*(?P<sep>:=|=>|[:=])[ \t]*
    (?:
        "(?P<dq>[^"\n]{1,512})"
      | '(?P<sq>[^'\n]{1,512})'
      | (?P<val>[^\s"'`,;&<>=(){}\[\]$%*|][^\s"'`,;&<>)\]}]*)
    )
    """,
    re.VERBOSE,
)

# The tail every key above ends with, followed by a separator; the longest key head before it is
# "refresh_" / "session_" / "client_" (8), so the full pattern is tried at most that far back.
_ASSIGNMENT_HINT = re.compile(r"(?=[WwPpSsKkTt])(?i:word|wd|phrase|pwd|secret|key|token)[\"']?[ \t]*[:=]")
_MAX_KEY_PREFIX = 8

# Values that are references or placeholders, not credentials: templating, env lookups, masks, code.
_NOT_A_SECRET = re.compile(
    r"""
    <[^<>]*> | \[[^\[\]]*\] | \{.*\} | \$\{.*\} | \$[A-Za-z_]\w* | %\(\w+\)s | %\w+%
  | \*+ | (?i:x{3,}) | \.{3,}
  | (?i:none|null|nil|true|false|undefined|empty|required|optional|string|str|redacted|hidden|your[_\-].*)
  | [A-Za-z_]+(?:\.[A-Za-z_]+)+(?:[(\[].*)?       # attribute access: settings.password, os.environ[
  | [A-Za-z_]\w*[(\[].*                           # call or lookup: getpass(, env[
    """,
    re.VERBOSE,
)


_IDENTIFIER = re.compile(r"[A-Za-z_]+")


def _is_secret_value(value: str, key: str, sep: str, quoted: bool) -> bool:
    if not value.strip() or _NOT_A_SECRET.fullmatch(value):
        return False
    if value.rstrip(".:").lower() == key.lower():  # password=password: a variable passed on, not a literal
        return False
    if sep == ":" and not quoted:
        # "Password: reset link" is prose and {"secret": load_secret} is code; "Password: hunter2" is
        # neither. Unquoted colon values must look machine-made (a digit or symbol) to count.
        return len(value) >= 6 and _IDENTIFIER.fullmatch(value) is None
    return True


def _find_secrets(text: str) -> Iterator[Span]:
    if "-----BEGIN" in text:
        for m in _PEM.finditer(text):
            yield m.start(), m.end(), True
    for m in _TOKEN.finditer(text):
        yield m.start(), m.end(), True
    if "://" in text:
        for m in _URL_CREDENTIALS.finditer(text):
            yield m.start("val"), m.end("val"), True
    if "Bearer" in text:
        for m in _BEARER.finditer(text):
            yield m.start("val"), m.end("val"), True
    yield from _find_assignments(text)


def _find_assignments(text: str) -> Iterator[Span]:
    # _ASSIGNMENT's boundary checks make it slow to scan with; _ASSIGNMENT_HINT (key ending + separator) is
    # cheap, so the full pattern is only tried in the few characters before each hint.
    pos = 0
    for hint in _ASSIGNMENT_HINT.finditer(text):
        end = hint.start()
        for start in range(max(pos, end - _MAX_KEY_PREFIX), end + 1):
            m = _ASSIGNMENT.match(text, start)
            if m is None:
                continue
            pos = m.end()
            group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "val"
            key = text[m.start() : m.start("sep")].strip("\"' \t")
            if _is_secret_value(m.group(group), key, m.group("sep"), quoted=group != "val"):
                yield m.start(group), m.end(group), True
            break


# --- emails -------------------------------------------------------------------------------------------------

# The local part is capped at 64 (RFC 5321) so a long token run with a stray "@" cannot go quadratic.
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?P<tld>[A-Za-z]{2,24})(?![\w\-])"
)
# icon@2x.png is an asset name, not an address.
_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "avif"}
)


def _find_emails(text: str) -> Iterator[Span]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        if m.group("tld").lower() not in _FILE_EXTENSIONS:
            yield m.start(), m.end(), True


# --- IBANs --------------------------------------------------------------------------------------------------

_IBAN = re.compile(
    r"(?=[A-Z])(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)

# Countries that issue IBANs. Per-country lengths are deliberately not enforced: the registry revises them
# (Costa Rica went from 21 to 22), and mod-97 on top of the strict shape is already a strong gate.
_IBAN_COUNTRIES = frozenset(
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI GL GR GT HN "
    "HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI NL NO OM PK PL PS PT QA "
    "RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE".split()
)


def _iban_checksum_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _find_ibans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        if m.group()[:2] not in _IBAN_COUNTRIES:
            continue
        candidate = m.group()
        # The pattern may swallow a trailing 4-character word ("... 1332 THEN"); retry without it.
        while True:
            compact = candidate.replace(" ", "")
            if len(compact) >= 15 and _iban_checksum_ok(compact):
                yield m.start(), m.start() + len(candidate), True
                break
            cut = candidate.rfind(" ")
            if cut <= 4:
                # A mistyped IBAN is still account data shaped like digit groups; claim it untouched so
                # the card and phone detectors do not redact fragments of it.
                yield m.start(), m.end(), False
                break
            candidate = candidate[:cut]


# --- credit cards -------------------------------------------------------------------------------------------

# Major networks start with 2-6 (Mastercard 2-series, Amex/Diners 3, Visa 4, Mastercard 5, Discover and
# UnionPay 6); excluding 0, 1, 7-9 keeps millisecond timestamps and most numeric ids out even when Luhn
# happens to pass.
_CARD = re.compile(
    r"""
    (?=[2-6])(?<![\d.,])(?<!\d[ \-])
    (?:
        [2-6]\d{12,18}
      | [2-6]\d{3}(?P<sep>[ \-])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?
      | 3\d{3}(?P<amex>[ \-])\d{6}(?P=amex)\d{4,5}
    )
    (?![\d]|[.,]\d)
    """,
    re.VERBOSE,
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _find_cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        candidate = m.group()
        digits = _NON_DIGIT.sub("", candidate)
        if _luhn_ok(digits):
            yield m.start(), m.end(), True
            continue
        # "4111 1111 1111 1111 123" (card then CVV) overshoots by one group; retry without it.
        sep = m.group("sep")
        if sep and candidate.count(sep) == 4:
            head = candidate[: candidate.rfind(sep)]
            if _luhn_ok(head.replace(sep, "")):
                yield m.start(), m.start() + len(head), True


# --- IP addresses -------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not glued to other dotted numbers, so build numbers like 1.2.3.4.5 and "v1.2.3.4" stay.
_IPV4 = re.compile(rf"(?=\d)(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\w)")
# A loose candidate shape; ipaddress does the real validation.
_IPV6 = re.compile(
    r"(?=[0-9A-Fa-f:])(?<![\w:.%])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})"
    r"(?:%[0-9A-Za-z_.]+)?(?![\w:]|\.\d)"
)


# What every match of each pattern holds: cheap to search for (sre skips ahead to the literal "." or ":"), so a
# text without it is not scanned with the full pattern, whose lookarounds are tried at every digit.
_IPV4_HINT = re.compile(r"\.\d{1,3}\.\d")
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")


def _plausible_ipv6(candidate: str) -> bool:
    address = candidate.split("%", 1)[0]
    if not _HAS_DIGIT.search(address):
        return False  # "Face::Add", "::" -- C++/Rust/Perl scope operators
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    if "::" in address:
        groups = [g for g in address.split(":") if g]
        # Python slices such as x[1::2] are valid compressed addresses; real ones have more to them.
        if len(groups) < 3 and max(len(g) for g in groups) < 3:
            return False
    return True


def _find_ips(text: str) -> Iterator[Span]:
    # Loopback and "any" addresses identify nobody and are everywhere in code and docs; private ranges are
    # still redacted because they map an organisation's network.
    if _IPV6_HINT.search(text):
        for m in _IPV6.finditer(text):
            if m.group() != "::1" and _plausible_ipv6(m.group()):
                yield m.start(), m.end(), True
    if _IPV4_HINT.search(text):
        for m in _IPV4.finditer(text):
            if not m.group().startswith("127.") and m.group() != "0.0.0.0":
                yield m.start(), m.end(), True


# --- phones -------------------------------------------------------------------------------------------------

# Bare digit runs never count (ids, amounts); a phone needs a "+" country code, a North American 3-3-4 shape,
# or a trunk "0" prefix with separators. The lookbehind keeps off order numbers (#12345), prices, paths,
# decimals and the tail of longer digit groups.
_PHONE = re.compile(
    r"""
    (?=[+(\d])(?<![\w#$€£¥+./\-])(?<!\d[ ])
    (?:
        \+\d{1,3}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-]?\d++){1,6}
      | (?:1[ .\-]?)?\(\d{3}\)[ .\-]?\d{3}[ .\-]?\d{4}
      | (?:1[ .\-])?\d{3}(?P<sep>[ .\-])\d{3}(?P=sep)\d{4}
      | (?:\(0\d{1,4}\)[ /\-]?|0\d{1,4}[ /\-])\d{2,8}(?:[ \-]\d{2,4}){0,3}
    )
    (?!\w|[\-./]\d)
    """,
    re.VERBOSE,
)
_DATE_SHAPED = re.compile(r"\d{4}[\-/. ]\d{1,2}[\-/. ]\d{1,2}|\d{1,2}[\-/. ]\d{1,2}[\-/. ]\d{2,4}")


def _find_phones(text: str) -> Iterator[Span]:
    for m in _PHONE.finditer(text):
        candidate = m.group()
        digits = len(_NON_DIGIT.sub("", candidate))
        if 7 <= digits <= 15 and not _DATE_SHAPED.fullmatch(candidate):
            yield m.start(), m.end(), True


# --- driver -------------------------------------------------------------------------------------------------

_DETECTORS = {
    "secret": _find_secrets,
    "email": _find_emails,
    "iban": _find_ibans,
    "credit_card": _find_cards,
    "ip_address": _find_ips,
    "phone": _find_phones,
}
_NEEDS_DIGITS = frozenset({"iban", "credit_card", "phone"})


def _resolve_types(types: Iterable[str] | None) -> frozenset[str]:
    if types is None:
        return frozenset(PII_TYPES)
    if isinstance(types, str):  # types="email" would otherwise be read as letters
        types = [types]
    chosen = frozenset(types)
    unknown = sorted(chosen - set(PII_TYPES))
    if unknown:
        raise ValueError(
            f"unknown PII type(s) {', '.join(map(repr, unknown))}; known: {', '.join(PII_TYPES)}"
        )
    return chosen


def redact(text: str, types: Iterable[str] | None = None) -> tuple[str, Counter]:
    """Replace PII in ``text`` with ``<TYPE>`` placeholders; return the new text and the count per type.

    ``types`` limits what is replaced (default: all of :data:`PII_TYPES`); an unknown type raises ValueError.
    """
    wanted = _resolve_types(types)
    counts: Counter = Counter()
    if not text or not wanted:
        return text, counts
    has_digit = _HAS_DIGIT.search(text) is not None
    last = max(PII_TYPES.index(kind) for kind in wanted)

    # Claimed spans, kept sorted and disjoint: starts/ends/kinds are parallel lists (kind None = shield).
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[str | None] = []
    for kind in PII_TYPES[: last + 1]:
        if kind in _NEEDS_DIGITS and not has_digit:
            continue
        for start, end, replace in _DETECTORS[kind](text):
            i = bisect_right(starts, start)
            if (i and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
                continue
            starts.insert(i, start)
            ends.insert(i, end)
            kinds.insert(i, kind if replace and kind in wanted else None)

    parts: list[str] = []
    pos = 0
    for start, end, kind in zip(starts, ends, kinds, strict=True):
        if kind is None:
            continue
        parts.append(text[pos:start])
        parts.append(PLACEHOLDERS[kind])
        counts[kind] += 1
        pos = end
    if not parts:
        return text, counts
    parts.append(text[pos:])
    return "".join(parts), counts


class PiiRedactor(Step):
    """Rewrite ``doc.text`` with PII replaced by typed placeholders; never drops a document."""

    stage = "pii"

    def __init__(self, types: Iterable[str] | None = None) -> None:
        self.types = _resolve_types(types)

    def process(self, doc: Document, stats: Counter) -> str | None:
        doc.text, counts = redact(doc.text, self.types)
        for kind, n in counts.items():
            stats[f"pii:{kind}"] += n
        doc.meta["pii"] = dict(counts)
        return None

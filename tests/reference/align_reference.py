#!/usr/bin/env python3
"""Plain-Python reference for token alignment and vocabulary mapping (DESIGN.md section 1).

Standard library + numpy only. This file is the executable statement of the semantics that
kernels/kokkos/{token_alignment,byte_span_alignment,vocab_mapping,apply_alignment}.hpp and
src/fusellm/align/ reproduce; tests/unit/align/ compare the C++ against fixtures written from it
(tests/reference/gen_align.py). It is written from the algorithm as DESIGN.md states it and as the
original FuseLLM code behaves (`dtw`, `transform_step_logits` in src/utils/others.py,
`vocab_mapping.py`, the collator's softmax over the kept entries in `data_collator.py`); where
fusellm deviates, the deviation is named here and in the C++.

1. Token normalization (the *normalized string* of a vocabulary entry, a byte string):
   - an added token (tokenizer.json "added_tokens": BOS/EOS, pad, user tokens): its literal
     content, UTF-8;
   - byte-level BPE (GPT-2/NeoX/MPT): every character through the inverse of GPT-2's
     bytes_to_unicode table (so `Ġ` -> 0x20, `Ċ` -> 0x0A, `Ã©` -> 0xC3 0xA9); a character outside
     the table stays as its UTF-8;
   - SentencePiece-style (Metaspace, Llama): a whole token `<0xHH>` (byte fallback) -> the byte
     0xHH; otherwise `▁` -> 0x20 and everything else its UTF-8;
   - anything else: the UTF-8 of the token.
   Equality of normalized strings is what "the two normalized token strings are equal" means (it
   replaces the original's marker swap `Ġ`<->`▁`, and also equates `Ċ`, `<0x0A>` and "\n"). The DTW
   cost string is the normalized string with every 0x20 byte removed (the original removes the
   marker: `a.replace(marker, '')`). Levenshtein distances are over bytes.

2. Vocabulary mapping (source -> target; the original `vocab_mapping.py`): for each source id
   - special added token: the lowest target *special* id with the same literal content (kind
     EXACT), else unmapped (the original pushed `<s>` through MinED to whatever string was nearest);
     explicit (source, target) overrides (e.g. EOS -> EOS from the two configs) win (kind OVERRIDE);
   - otherwise: the lowest candidate target id with the same normalized string (EXACT), else the
     candidate of minimum byte Levenshtein distance, ties to the lowest id (MINED). The original
     took the first minimum in dict order; DESIGN.md fixes the lowest id. Candidates: the
     non-special target tokens, less every byte-fallback entry `<0xHH>` whose byte a regular token
     also spells: `<0x32>` normalizes to "2" like the regular token "2" and has a lower id, but
     the original (comparing strings) maps "2" to "2"; a byte-fallback entry is the answer only
     for a byte no regular token has (a lone UTF-8 lead byte).
   - ids past the tokenizer's vocabulary (a config vocab_size larger than the tokenizer's: padding
     rows of the embedding) are unmapped.
   `exact[i]` is the target for EXACT/OVERRIDE entries (-1 else), `full[i]` the target of any kind.
   EM maps top-k ids through `exact` (only exact string matches survive), MinED and byte spans
   through `full`.

3. DTW alignment (EM, MinED), per document. Leading and trailing runs of special tokens (BOS, EOS)
   are taken out of the DP and paired from the content outwards (the last leading special of each
   side with each other, the first trailing with each other); an unpaired special (BOS that only
   one tokenizer adds) aligns to nothing. The content tokens in between go through the original
   `dtw(series_1=source, series_2=target)` exactly: M[i+1][j+1] = cost(i, j) + min(M[i][j+1],
   M[i+1][j], M[i][j]) with an infinite border and M[0][0] = 0, backtracking from the last cell
   while i > 0 or j > 0, choosing the first minimum of (diag, up, left) = (M[i-1][j-1], M[i-1][j],
   M[i][j-1]) on the trimmed matrix. Each target position gets the (contiguous) range of source
   positions the path visits with it. With no specials at all this is the original's DTW.
   Decision per target position (status codes below):
     no source -> UNALIGNED; more than one -> MANY; one source s:
       equal normalized strings -> EXACT; also EXACT at the first content position of both
       sides when one string is the other with one more leading 0x20 (a dummy prefix that one
       tokenizer inserted; the original's "special case for mpt" at i == 0);
       MinED only: full[src_id] == tgt_id -> MAPPED;
       else MISMATCH.
     paired edge specials -> SPECIAL (kept).

4. Exact byte spans (beyond the paper; tokenkit ALM, TRL GOLD): the byte end of a token is the
   cumulative length of the normalized strings up to and including it, where the leading and
   trailing runs of special tokens (BOS/EOS, added by the post-processor) count zero bytes, a
   special token inside the text counts its literal content (it was matched in the text), and the
   dummy-prefix space is not counted when the tokenizer inserted one (SentencePiece's prepended
   `▁`, ByteLevel's add_prefix_space): the leading space of the first content token. Exact where
   both tokenizers' normalizers keep the bytes (a normalizer that changes them, e.g. NFC on NFD
   text, shifts the ends after that point and the document aligns less).
   For each end offset e reached by both sides, the
   last non-special target position ending at e aligns with the last non-special source position
   ending at e (SPAN); the r-th special ending at e on one side aligns with the r-th special ending
   at e on the other (SPECIAL). Everything else is UNALIGNED (its span does not align one to one).

5. Apply (the original `transform_step_logits` + the collator's softmax): at a kept position the
   source's top-k row (probabilities, sorted descending) is walked in order; each id goes through
   the mapping (exact for EM, full otherwise); unmapped ids are dropped; a duplicate target id keeps
   the higher probability; the kept probabilities are divided by their sum (softmax of the kept
   logits = renormalized probabilities). With a tail bucket, nothing is renormalized: the dropped
   mass goes to the tail. Output rows are sorted by probability descending, ties by ascending id
   (the SparseRows invariant). If nothing survives, the position falls back (EMPTY; the original
   copied the target model's own row there, which this stage does not see). A fallback row is the
   one-hot of the NEXT gold target token (fusellm's fix of the original's issue #27), empty at the
   last position of a document; `onehot_current=True` is the original's one-hot of the current
   token.

6. The original's rules (OriginalRules below; `fusellm`'s [distill].align_compat, the C++
   src/fusellm/align/original_rules.hpp). Each flag switches one deviation of parts 1-5 back to
   what the original FuseLLM code does:
   - strings: token strings are the vocabulary strings with the source's word marker swapped for
     the target's (`x.replace('Ġ', '▁')`), not byte-normalized (so `Ċ` != `<0x0A>` != "\n" and
     byte-level `Ã©` != `é`); cost strings are the vocabulary strings with the marker removed;
     distances count code points (`editdistance.eval` on str), not bytes.
   - specials: special tokens are ordinary tokens: the vocabulary mapping maps every source token
     over every target token (specials included; `<|endoftext|>` goes wherever MinED sends it) and
     the DTW runs over the whole sequence, BOS/EOS included (no edge-run pairing, no SPECIAL).
   - dummy_prefix: the original's "special case for mpt": only at target position 0 of the
     document, only for a byte-level source, only when the target token starts with the word
     marker and the source token does not (the marker is then prepended to the source token).
     fusellm: at the first content position of both sides, in either direction.
   - empty_row: a kept position whose row loses every id to the mapping takes the target model's
     own row (the collator's "bad case"), given as `target_rows`; fusellm falls back to a one-hot.
   - onehot_current: a fallback row is the one-hot of the CURRENT target token (the original's
     issue #27), at the last position of a document too; fusellm: the next token, and an empty
     row at the last position.
"""
import functools
import json
import re

import numpy as np

# ---- status codes (identical in kernels/kokkos/token_alignment.hpp) -------------------------
KEPT_EXACT = 0
KEPT_MAPPED = 1
KEPT_SPAN = 2
KEPT_SPECIAL = 3
FB_MANY = 10
FB_MISMATCH = 11
FB_UNALIGNED = 12
FB_EMPTY = 13

KIND_UNMAPPED = 0
KIND_EXACT = 1
KIND_MINED = 2
KIND_OVERRIDE = 3

FLAG_ADDED = 1
FLAG_SPECIAL = 2

RULES = ("strings", "specials", "dummy_prefix", "empty_row", "onehot_current")


class OriginalRules:
    """Which of fusellm's deviations from the original FuseLLM code are switched back (part 6)."""

    def __init__(self, *names):
        if names == ("all",):
            names = RULES
        for n in names:
            if n not in RULES:
                raise ValueError("unknown rule %r (one of %s)" % (n, ", ".join(RULES)))
        for n in RULES:
            setattr(self, n, n in names)

    def __repr__(self):
        return "OriginalRules(%s)" % ", ".join(n for n in RULES if getattr(self, n))


FUSELLM = OriginalRules()
ORIGINAL = OriginalRules("all")

NORM_BYTE_LEVEL = "byte_level"
NORM_METASPACE = "metaspace"
NORM_PLAIN = "plain"

PREFIX_NONE = "none"
PREFIX_IF_NO_SPACE = "if_no_leading_space"
PREFIX_ALWAYS = "always"


# ---- 1. normalization ----------------------------------------------------------------------
def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def normalize_token(token, kind, added=False):
    if added:
        return token.encode("utf-8")
    if kind == NORM_BYTE_LEVEL:
        out = bytearray()
        for ch in token:
            b = BYTE_DECODER.get(ch)
            if b is None:
                out += ch.encode("utf-8")
            else:
                out.append(b)
        return bytes(out)
    if kind == NORM_METASPACE:
        m = _BYTE_FALLBACK.match(token)
        if m:
            return bytes([int(m.group(1), 16)])
        return token.replace("\u2581", " ").encode("utf-8")
    return token.encode("utf-8")


def cost_string(normalized):
    return normalized.replace(b" ", b"")


def original_string(token, own_marker, target_marker):
    """The original's string of a source token: the vocabulary string with the source's marker
    swapped for the target's (`x.replace(blending_marker, base_marker)`); for a target token both
    markers are the target's (the string as it is)."""
    return token.replace(own_marker, target_marker) if own_marker else token


def original_cost_string(token, marker):
    return token.replace(marker, "") if marker else token


class _Strings:
    """The strings the rules compare: per vocabulary, the equality string of each id (bytes or
    str: compared only with the same kind), the cost string, and the marker test. fusellm: the
    normalized bytes; the original (rules.strings): the vocabulary strings, marker swapped."""

    def __init__(self, vocab, target, original):
        if original:
            own, tm = vocab.marker(), target.marker()
            self.eq = [original_string(t, own, tm) for t in vocab.tokens]
            self.cost = [original_cost_string(t, own) for t in vocab.tokens]
            self.space = tm  # the target's marker, after the swap
        else:
            self.eq = list(vocab.normalized)
            self.cost = [cost_string(x) for x in vocab.normalized]
            self.space = b" "


def _types(node):
    """All `type` fields of a tokenizer.json component (Sequence members included)."""
    if not isinstance(node, dict):
        return []
    out = [node]
    for key in ("pretokenizers", "decoders", "normalizers"):
        for sub in node.get(key) or []:
            out += _types(sub)
    return out


class Vocab:
    """One tokenizer's vocabulary: id -> string, flags, normalization kind, dummy prefix."""

    def __init__(self, name, kind, tokens, flags, dummy_prefix=PREFIX_NONE):
        self.name = name
        self.kind = kind
        self.tokens = list(tokens)
        self.flags = list(flags)
        self.dummy_prefix = dummy_prefix
        self.normalized = [normalize_token(t, kind, bool(f & FLAG_ADDED))
                           for t, f in zip(self.tokens, self.flags)]

    def __len__(self):
        return len(self.tokens)

    def special(self, i):
        return bool(self.flags[i] & FLAG_SPECIAL)

    def hole(self, i):
        return not self.tokens[i] and not (self.flags[i] & FLAG_ADDED)

    def byte_fallback(self, i):
        return self.kind == NORM_METASPACE and not (self.flags[i] & FLAG_ADDED) and \
            _BYTE_FALLBACK.match(self.tokens[i]) is not None

    def marker(self):
        """The word marker the original swaps and removes (TOKENIZER_TO_SPECIAL_TOKEN)."""
        return {NORM_BYTE_LEVEL: "\u0120", NORM_METASPACE: "\u2581"}.get(self.kind, "")

    @staticmethod
    def from_tokenizer_json(path, name=None):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        model = tj["model"]
        vocab = dict(model["vocab"])
        added = {a["id"]: a for a in tj.get("added_tokens") or []}
        n = max(list(vocab.values()) + list(added.keys()) + [-1]) + 1
        tokens = [""] * n
        flags = [0] * n
        for t, i in vocab.items():
            tokens[i] = t
        for i, a in added.items():
            tokens[i] = a["content"]
            flags[i] = FLAG_ADDED | (FLAG_SPECIAL if a.get("special") else 0)
        comps = _types(tj.get("pre_tokenizer")) + _types(tj.get("decoder"))
        types = [c.get("type") for c in comps]
        norms = _types(tj.get("normalizer"))
        if "ByteLevel" in types:
            kind = NORM_BYTE_LEVEL
        elif "Metaspace" in types or any(c.get("type") == "Replace" and
                                         (c.get("pattern") or {}).get("String") == "\u2581"
                                         for c in comps):
            kind = NORM_METASPACE
        else:
            kind = NORM_PLAIN
        dummy = PREFIX_NONE
        if any(c.get("type") == "Prepend" and c.get("prepend") == "\u2581" for c in norms):
            dummy = PREFIX_ALWAYS
        for c in comps:
            if c.get("type") == "Metaspace" and (c.get("prepend_scheme") in ("first", "always") or
                                                 c.get("add_prefix_space")):
                dummy = PREFIX_IF_NO_SPACE
            if c.get("type") == "ByteLevel" and c.get("add_prefix_space") and \
                    c in _types(tj.get("pre_tokenizer")):
                dummy = PREFIX_IF_NO_SPACE
        return Vocab(name or path, kind, tokens, flags, dummy)

    def fingerprint(self):
        """FNV-1a 64 over kind, then each (id u32 LE, flags u8, len u32 LE, UTF-8 bytes)."""
        h = 0xCBF29CE484222325
        prime = 0x100000001B3
        mask = (1 << 64) - 1

        def feed(data):
            nonlocal h
            for b in data:
                h = ((h ^ b) * prime) & mask

        feed(self.kind.encode())
        for i, (t, f) in enumerate(zip(self.tokens, self.flags)):
            raw = t.encode("utf-8")
            feed(i.to_bytes(4, "little"))
            feed(bytes([f & 0xFF]))
            feed(len(raw).to_bytes(4, "little"))
            feed(raw)
        return "%016x" % h

    def dummy_inserted(self, text):
        """Whether encoding `text` inserted a dummy-prefix space the text does not have."""
        if not text:
            return False
        if self.dummy_prefix == PREFIX_ALWAYS:
            return True
        if self.dummy_prefix == PREFIX_IF_NO_SPACE:
            return not text.startswith(" ")
        return False


# ---- Levenshtein ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1 << 20)
def levenshtein(a, b):
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


# ---- 2. vocabulary mapping -----------------------------------------------------------------
def _lev_many(x, cands):
    """Levenshtein of x (bytes, or code points as ints) against every row of `cands` ([n, L]
    bytes or code points, all of length L)."""
    n, L = cands.shape
    prev = np.tile(np.arange(L + 1, dtype=np.int32), (n, 1))
    for i, c in enumerate(x, 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        neq = (cands != c).astype(np.int32)
        for j in range(1, L + 1):
            cur[:, j] = np.minimum(np.minimum(prev[:, j] + 1, cur[:, j - 1] + 1),
                                   prev[:, j - 1] + neq[:, j - 1])
        prev = cur
    return prev[:, L]


def mapping_candidates(tgt, rules=FUSELLM):
    """Target ids a source token may map to, ascending. fusellm: the non-special tokens less the
    byte-fallback entries whose byte a regular token spells; rules.specials: specials too;
    rules.strings: byte-fallback entries are strings like any other (`<0x32>` != "2")."""
    regular = set()
    if not rules.strings:
        regular = {tgt.normalized[j] for j in range(len(tgt))
                   if not tgt.special(j) and not tgt.hole(j) and not tgt.byte_fallback(j)}
    out = []
    for j in range(len(tgt)):
        if tgt.hole(j) or (tgt.special(j) and not rules.specials):
            continue
        if not rules.strings and tgt.byte_fallback(j) and tgt.normalized[j] in regular:
            continue
        out.append(j)
    return out


class _TargetIndex:
    def __init__(self, tgt, rules=FUSELLM, strings=None):
        strings = strings or _Strings(tgt, tgt, rules.strings)
        self.exact = {}
        self.special_exact = {}
        by_len = {}
        for j in range(len(tgt)):
            if tgt.special(j):
                self.special_exact.setdefault(tgt.normalized[j], j)
        for j in mapping_candidates(tgt, rules):
            s = strings.eq[j]
            self.exact.setdefault(s, j)
            by_len.setdefault(len(s), []).append(j)
        self.groups = {}
        for L, ids in by_len.items():
            if rules.strings:  # str: code points
                mat = np.array([ord(ch) for j in ids for ch in strings.eq[j]], dtype=np.int32)
                self.groups[L] = (np.array(ids, dtype=np.int64), mat.reshape(len(ids), L))
                continue
            mat = np.frombuffer(b"".join(strings.eq[j] for j in ids), dtype=np.uint8)
            self.groups[L] = (np.array(ids, dtype=np.int64), mat.reshape(len(ids), L))
        self.max_len = max(self.groups) if self.groups else 0


def map_token(x, index):
    """(target id, distance) of MinED for a non-special source string x (exact check first)."""
    j = index.exact.get(x)
    if j is not None:
        return j, 0
    best_d, best_j = None, None
    delta = 0
    a = len(x)
    # A lower bound on the distance is the length difference: scan length groups in order of
    # |L - a| and stop once it exceeds the best distance found (the result equals brute force).
    while best_d is None or delta <= best_d:
        if delta > max(a, index.max_len):
            break
        for L in sorted({a - delta, a + delta}):
            g = index.groups.get(L)
            if g is None:
                continue
            ids, mat = g
            if L == 0:
                d = np.full(len(ids), a, dtype=np.int32)
            else:
                d = _lev_many([ord(ch) for ch in x] if isinstance(x, str) else x, mat)
            k = int(np.argmin(d))  # first minimum = lowest id (ids ascend within a group)
            cand = (int(d[k]), int(ids[k]))
            if best_d is None or cand < (best_d, best_j):
                best_d, best_j = cand
        delta += 1
    return best_j, best_d


def vocab_mapping(src, tgt, src_model_vocab=None, overrides=(), only=None, rules=FUSELLM):
    """Arrays exact, full (int32), kind (uint8), dist (int32) over the source model vocab.

    `only`: restrict the work to these source ids (benchmark subsampling); others stay unmapped.
    `rules`: OriginalRules (part 6; strings and specials change the mapping)."""
    n = max(len(src), src_model_vocab or 0)
    exact = np.full(n, -1, dtype=np.int32)
    full = np.full(n, -1, dtype=np.int32)
    kind = np.zeros(n, dtype=np.uint8)
    dist = np.full(n, -1, dtype=np.int32)
    src_str = _Strings(src, tgt, rules.strings)
    tgt_str = _Strings(tgt, tgt, rules.strings)
    index = _TargetIndex(tgt, rules, tgt_str)
    ids = range(len(src)) if only is None else only
    for i in ids:
        x = src_str.eq[i]
        if src.special(i) and not rules.specials:
            j = index.special_exact.get(src.normalized[i])
            if j is not None:
                exact[i] = full[i] = j
                kind[i] = KIND_EXACT
                dist[i] = 0
            continue
        if src.hole(i):
            continue
        j, d = map_token(x, index)
        if j is None:
            continue
        full[i] = j
        dist[i] = d
        if d == 0 and tgt_str.eq[j] == x:
            exact[i] = j
            kind[i] = KIND_EXACT
        else:
            kind[i] = KIND_MINED
    for s, t in overrides:
        exact[s] = full[s] = t
        kind[s] = KIND_OVERRIDE
        dist[s] = 0
    return {"exact": exact, "full": full, "kind": kind, "dist": dist}


# ---- 3. DTW (the original `dtw`) -----------------------------------------------------------
def dtw(series_1, series_2, cost):
    """Returns, for each element of series_2, the list of series_1 indices aligned to it."""
    n, m = len(series_1), len(series_2)
    inf = float("inf")
    M = [[inf] * (m + 1) for _ in range(n + 1)]
    M[0][0] = 0
    for i in range(n):
        row_prev, row = M[i], M[i + 1]
        for j in range(m):
            row[j + 1] = cost(series_1[i], series_2[j]) + min(row_prev[j + 1], row[j], row_prev[j])
    T = [r[1:] for r in M[1:]]  # trimmed matrix
    i, j = n - 1, m - 1
    map2 = [[] for _ in range(m)]
    while i > 0 or j > 0:
        map2[j].append(i)
        diag = T[i - 1][j - 1] if i > 0 and j > 0 else inf
        up = T[i - 1][j] if i > 0 else inf
        left = T[i][j - 1] if j > 0 else inf
        opts = [diag, up, left]
        move = opts.index(min(opts))  # first minimum, as np.argmin
        if move == 0:
            i -= 1
            j -= 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    map2[0].append(0)
    for mp in map2:
        mp.reverse()
    return map2


def _edge_runs(ids, vocab):
    n = len(ids)
    lead = 0
    while lead < n and vocab.special(ids[lead]):
        lead += 1
    trail = 0
    while trail < n - lead and vocab.special(ids[n - 1 - trail]):
        trail += 1
    return lead, trail


def _dummy_equal(a, b, space=b" "):
    """Equal up to one extra leading space on one side: a dummy prefix (SentencePiece's `▁`)
    that only one tokenizer inserted. Both tokenizations start at byte 0 of the same text, so at
    the first content position such a space cannot come from the text."""
    k = len(space)
    return bool(space) and ((a.startswith(space) and a[k:] == b) or (b.startswith(space) and b[k:] == a))


_STRINGS_CACHE = {}


def _strings_of(src, tgt, original):
    key = (id(src), id(tgt), original)
    if key not in _STRINGS_CACHE:
        _STRINGS_CACHE[key] = (_Strings(src, tgt, original), _Strings(tgt, tgt, original))
    return _STRINGS_CACHE[key]


def _original_first_equal(a, b, space):
    """The original's "special case for mpt" (transform_step_logits, i == 0): the target token
    starts with the marker and the source token does not -> the marker is prepended to it."""
    return b.startswith(space) and not a.startswith(space) and space + a == b


def align_dtw(src_ids, tgt_ids, src, tgt, method, mapping, rules=FUSELLM):
    """Per target position: (lo, hi, status); lo = hi = -1 when unaligned (doc-local indices)."""
    n, m = len(src_ids), len(tgt_ids)
    lo = [-1] * m
    hi = [-1] * m
    status = [FB_UNALIGNED] * m
    if rules.specials:  # the original: BOS/EOS are tokens of the DTW like any other
        ls = ts = lt = tt = 0
    else:
        ls, ts = _edge_runs(src_ids, src)
        lt, tt = _edge_runs(tgt_ids, tgt)
    for r in range(1, min(ls, lt) + 1):
        lo[lt - r] = hi[lt - r] = ls - r
        status[lt - r] = KEPT_SPECIAL
    for r in range(min(ts, tt)):
        lo[m - tt + r] = hi[m - tt + r] = n - ts + r
        status[m - tt + r] = KEPT_SPECIAL
    sc = list(range(ls, n - ts))
    tc = list(range(lt, m - tt))
    if not sc or not tc:
        return lo, hi, status
    ss, st = _strings_of(src, tgt, rules.strings)
    cs = [ss.cost[src_ids[p]] for p in sc]
    ct = [st.cost[tgt_ids[p]] for p in tc]
    map2 = dtw(list(range(len(sc))), list(range(len(tc))), lambda a, b: levenshtein(cs[a], ct[b]))
    for jj, srcs in enumerate(map2):
        t = tc[jj]
        lo[t] = sc[srcs[0]]
        hi[t] = sc[srcs[-1]]
        if len(srcs) != 1:
            status[t] = FB_MANY
            continue
        s = lo[t]
        a = ss.eq[src_ids[s]]
        b = st.eq[tgt_ids[t]]
        if rules.dummy_prefix:
            first = t == 0 and src.kind == NORM_BYTE_LEVEL and _original_first_equal(a, b, st.space)
        else:
            first = jj == 0 and srcs[0] == 0 and _dummy_equal(a, b, st.space)
        if a == b or first:
            status[t] = KEPT_EXACT
        elif method == "mined" and mapping["full"][src_ids[s]] == tgt_ids[t]:
            status[t] = KEPT_MAPPED
        else:
            status[t] = FB_MISMATCH
    return lo, hi, status


# ---- 4. exact byte spans -------------------------------------------------------------------
def byte_ends(ids, vocab, dummy_inserted):
    n = len(ids)
    lead, trail = _edge_runs(ids, vocab)
    ends = []
    pos = 0
    for p, i in enumerate(ids):
        if p < lead or p >= n - trail:
            ends.append(pos)  # BOS/EOS from the post-processor: zero width
            continue
        L = len(vocab.normalized[i])
        if p == lead and dummy_inserted and vocab.normalized[i].startswith(b" "):
            L -= 1  # the dummy prefix is the leading space of the first content token
        pos += L
        ends.append(pos)
    return ends


def align_byte_spans(src_ids, tgt_ids, src, tgt, src_ends, tgt_ends):
    m = len(tgt_ids)
    lo = [-1] * m
    hi = [-1] * m
    status = [FB_UNALIGNED] * m
    last_src = {}
    src_specials = {}
    for s, (i, e) in enumerate(zip(src_ids, src_ends)):
        if src.special(i):
            src_specials.setdefault(e, []).append(s)
        else:
            last_src[e] = s
    last_tgt = {}
    tgt_rank = {}
    for t, (i, e) in enumerate(zip(tgt_ids, tgt_ends)):
        if tgt.special(i):
            r = tgt_rank.get(e, 0)
            tgt_rank[e] = r + 1
            cand = src_specials.get(e, [])
            if r < len(cand):
                lo[t] = hi[t] = cand[r]
                status[t] = KEPT_SPECIAL
        else:
            last_tgt[e] = t
    for e, t in last_tgt.items():
        s = last_src.get(e)
        if s is not None:
            lo[t] = hi[t] = s
            status[t] = KEPT_SPAN
    return lo, hi, status


# ---- 5. apply ------------------------------------------------------------------------------
def apply_alignment(tgt_ids, src_pos, status, rows_ids, rows_probs, id_map, onehot_current=False,
                    tails=None, target_rows=None):
    """One document. rows_*: the source's top-k rows (doc-local positions). Returns
    (out_ids list of lists, out_probs list of lists, final status list, out tails or None).
    `target_rows` (ids, probs per target position): the original's empty_row rule, the target
    model's own row where nothing survived (status stays EMPTY)."""
    m = len(tgt_ids)
    out_ids, out_probs, final, out_tails = [], [], [], []
    for t in range(m):
        st = status[t]
        ids, probs = [], []
        tail = 0.0
        if st < FB_MANY:
            s = src_pos[t]
            kept = {}
            order = []
            total = 0.0
            for sid, p in zip(rows_ids[s], rows_probs[s]):
                if sid < 0:
                    continue
                p = float(p)
                total += p
                mid = int(id_map[sid]) if sid < len(id_map) else -1
                if mid < 0:
                    continue
                if mid in kept:
                    kept[mid] = max(kept[mid], p)
                else:
                    kept[mid] = p
                    order.append(mid)
            if kept:
                ssum = sum(kept[i] for i in order)
                if tails is not None:
                    probs_k = [kept[i] for i in order]
                    tail = float(tails[s]) + (total - ssum)
                else:
                    probs_k = [kept[i] / ssum for i in order]
                pairs = sorted(zip(order, probs_k), key=lambda x: (-np.float32(x[1]), x[0]))
                ids = [i for i, _ in pairs]
                probs = [p for _, p in pairs]
            else:
                st = FB_EMPTY
        if st == FB_EMPTY and target_rows is not None:
            pairs = [(int(i), float(p)) for i, p in zip(target_rows[0][t], target_rows[1][t]) if i >= 0]
            pairs.sort(key=lambda x: (-np.float32(x[1]), x[0]))
            ids = [i for i, _ in pairs]
            probs = [p for _, p in pairs]
        elif st >= FB_MANY:
            if onehot_current:
                ids, probs = [tgt_ids[t]], [1.0]
            elif t + 1 < m:
                ids, probs = [tgt_ids[t + 1]], [1.0]
            tail = 0.0
        out_ids.append(ids)
        out_probs.append(probs)
        final.append(st)
        out_tails.append(tail)
    return out_ids, out_probs, final, (out_tails if tails is not None else None)


# ---- deterministic source rows (identical generator in tests/unit/align/align_fixture.hpp) --
MASK64 = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _rand(seed, doc, pos, counter):
    h = splitmix64(seed & MASK64)
    h = splitmix64(h ^ doc)
    h = splitmix64(h ^ pos)
    return splitmix64(h ^ counter)


def source_rows(seed, doc, ids, k, model_vocab):
    """Top-k rows for one document of source ids: slot 0 is the true next token with probability
    ~0.6 (so alignments keep real mass), the rest uniform over the model vocabulary (padding rows
    past the tokenizer included); weights 1 + r % 1000, probs = w / sum in double, rounded to
    float32, sorted by prob descending then id ascending; ~3% of rows leave the last slot empty."""
    n = len(ids)
    out_ids = np.full((n, k), -1, dtype=np.int32)
    out_probs = np.zeros((n, k), dtype=np.float32)
    for p in range(n):
        counter = 0
        chosen = []
        r0 = _rand(seed, doc, p, counter)
        counter += 1
        width = k
        if r0 % 100 < 3:
            width = k - 1
        if p + 1 < n and (r0 >> 8) % 10 < 6:
            chosen.append(ids[p + 1])
        while len(chosen) < width:
            r = _rand(seed, doc, p, counter)
            counter += 1
            c = r % model_vocab
            if c not in chosen:
                chosen.append(int(c))
        w = []
        for _ in chosen:
            r = _rand(seed, doc, p, counter)
            counter += 1
            w.append(1 + r % 1000)
        total = float(sum(w))
        pairs = sorted(zip(w, chosen), key=lambda x: (-x[0], x[1]))
        for slot, (wi, c) in enumerate(pairs):
            out_ids[p, slot] = c
            out_probs[p, slot] = np.float32(wi / total)
    return out_ids, out_probs

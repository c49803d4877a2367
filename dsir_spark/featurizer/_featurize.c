/* dsir_spark._featurize: the hashed n-gram featurizer, compiled.
 *
 * Exact by construction against the pure-Python featurizer (dsir_spark/features.py):
 * - lower-casing is Python's own str.lower(), called on each document;
 * - tokens are re.findall(r"\w+|[^\w\s]+") on str patterns: a word character is
 *   Py_UNICODE_ISALNUM(c) || c == '_' and a space character Py_UNICODE_ISSPACE(c), exactly what
 *   CPython's _sre uses; the class of every code point is read from the running interpreter when the
 *   module loads (a table filled by those C-API calls, not a copied table);
 * - an n-gram is its tokens' UTF-8 bytes joined by single spaces;
 * - sha256 mode: bucket = int(sha256(ngram).hexdigest(), 16) % num_buckets (FIPS 180-4, in portable C,
 *   or with the x86 SHA extensions where the CPU has them: the same digest either way);
 * - xxhash64 mode: XXH64 (seed 0) of each token's UTF-8 bytes (from the published XXH64 spec), an
 *   n-gram's hash h(t1..tk) = splitmix64_mix(h(t1..tk-1) * 0x9E3779B97F4A7C15 + h(tk)), bucket = h % num_buckets.
 * Features come out per document in the Python path's order (unigrams, then bigrams, ...), so scores,
 * summed in that order, are the same doubles bit for bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_SHA256 = 0, MODE_XXHASH64 = 1 };
/* CLASS_SINGLE: a word character that is a token of its own (wordpunct_cjk: Han, kana, Hangul syllables) */
enum { CLASS_SPACE = 0, CLASS_WORD = 1, CLASS_OTHER = 2, CLASS_SINGLE = 3 };

static unsigned char *char_class = NULL; /* one byte per code point, 0 .. 0x10FFFF */
static PyObject *str_lower = NULL;       /* interned "lower" */

/* ------------------------------------------------------------------------------------------ SHA-256 */

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t state[8], const unsigned char *block) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) |
               ((uint32_t)block[4 * i + 2] << 8) | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR32(w[i - 15], 7) ^ ROTR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR32(w[i - 2], 17) ^ ROTR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTR32(e, 6) ^ ROTR32(e, 11) ^ ROTR32(e, 25)) + ((e & f) ^ (~e & g)) + SHA_K[i] + w[i];
        uint32_t t2 = (ROTR32(a, 2) ^ ROTR32(a, 13) ^ ROTR32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_EXTENSIONS_CODE 1

/* The same compression with the x86 SHA extensions (Intel's published SHA-NI instruction sequence):
 * four rounds per sha256rnds2 pair, the message schedule by sha256msg1/msg2. */
__attribute__((target("sha,sse4.1,ssse3")))
static void sha256_block_x86(uint32_t state[8], const unsigned char *block) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* CDAB */
    __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);   /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);         /* CDGH */
    const __m128i abef = state0, cdgh = state1;
    __m128i w[4];
    for (int g = 0; g < 16; g++) {
        __m128i words;
        if (g < 4) {
            words = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * g)), byteswap);
        } else {
            __m128i t = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);      /* W[t-16], W[t-15] */
            t = _mm_add_epi32(t, _mm_alignr_epi8(w[(g + 3) & 3], w[(g + 2) & 3], 4)); /* + W[t-7] */
            words = _mm_sha256msg2_epu32(t, w[(g + 3) & 3]);                 /* + sigma1(W[t-2]) */
        }
        w[g & 3] = words;
        __m128i msg = _mm_add_epi32(words, _mm_loadu_si128((const __m128i *)&SHA_K[4 * g]));
        state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
        state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(msg, 0x0E));
    }
    state0 = _mm_add_epi32(state0, abef);
    state1 = _mm_add_epi32(state1, cdgh);
    tmp = _mm_shuffle_epi32(state0, 0x1B);       /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);    /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&state[0], state0);
    _mm_storeu_si128((__m128i *)&state[4], state1);
}

static int cpu_has_sha_extensions(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9))) return 0; /* SSE4.1, SSSE3 */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1; /* SHA */
}
#endif

/* The compression function in use: the x86 SHA extensions where the CPU has them. */
static void (*sha256_compress)(uint32_t state[8], const unsigned char *block) = sha256_block;

/* The digest as eight big-endian 32-bit words (state after the last block). */
static void sha256(const unsigned char *data, size_t len, uint32_t state[8]) {
    static const uint32_t init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(state, init, sizeof(init));
    size_t full = len / 64;
    for (size_t i = 0; i < full; i++) sha256_compress(state, data + 64 * i);
    unsigned char tail[128];
    size_t rest = len - 64 * full;
    memcpy(tail, data + 64 * full, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
    memset(tail + rest + 1, 0, tail_len - rest - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tail_len; i += 64) sha256_compress(state, tail + i);
}

/* int(hexdigest, 16) % m: the 256-bit big-endian number folded 32 bits at a time (m < 2**31). */
static uint32_t sha256_bucket(const unsigned char *data, size_t len, uint32_t m) {
    uint32_t state[8];
    sha256(data, len, state);
    uint64_t r = 0;
    for (int i = 0; i < 8; i++) r = ((r << 32) | state[i]) % m;
    return (uint32_t)r;
}

/* ------------------------------------------------------------------------------------------ XXH64 */

static const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL, P3 = 0x165667B19E3779F9ULL,
                      P4 = 0x85EBCA77C2B2AE63ULL, P5 = 0x27D4EB2F165667C5ULL;

#define ROTL64(x, n) (((x) << (n)) | ((x) >> (64 - (n))))

static inline uint64_t read64(const unsigned char *p) { /* little-endian, on any platform */
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline uint32_t read32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t lane) {
    acc += lane * P2;
    acc = ROTL64(acc, 31);
    return acc * P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t v) {
    acc ^= xxh_round(0, v);
    return acc * P1 + P4;
}

static uint64_t xxh64(const unsigned char *p, size_t len, uint64_t seed) {
    const unsigned char *end = p + len;
    uint64_t acc;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        const unsigned char *limit = end - 32;
        do {
            v1 = xxh_round(v1, read64(p));
            v2 = xxh_round(v2, read64(p + 8));
            v3 = xxh_round(v3, read64(p + 16));
            v4 = xxh_round(v4, read64(p + 24));
            p += 32;
        } while (p <= limit);
        acc = ROTL64(v1, 1) + ROTL64(v2, 7) + ROTL64(v3, 12) + ROTL64(v4, 18);
        acc = xxh_merge(acc, v1);
        acc = xxh_merge(acc, v2);
        acc = xxh_merge(acc, v3);
        acc = xxh_merge(acc, v4);
    } else {
        acc = seed + P5;
    }
    acc += (uint64_t)len;
    while (end - p >= 8) {
        acc ^= xxh_round(0, read64(p));
        acc = ROTL64(acc, 27) * P1 + P4;
        p += 8;
    }
    if (end - p >= 4) {
        acc ^= (uint64_t)read32(p) * P1;
        acc = ROTL64(acc, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        acc ^= (uint64_t)(*p) * P5;
        acc = ROTL64(acc, 11) * P1;
        p++;
    }
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    acc *= P3;
    acc ^= acc >> 32;
    return acc;
}

/* splitmix64's finalizer, combining a token's hash into an n-gram's. */
static inline uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

/* ------------------------------------------------------------------------------------------ featurizer */

/* A direct-mapped cache of short n-grams -> sha256 bucket, small enough to stay in the CPU's caches:
 * real text repeats its frequent n-grams, and a hit costs far less than sha256. A new n-gram takes
 * the slot of whatever was there, so memory is fixed and frequent n-grams keep their slots. */
#define CACHE_KEY 23
typedef struct {
    uint32_t tag; /* bits of the key's XXH64, never 0; 0 marks an empty slot */
    uint32_t bucket;
    uint8_t length;
    unsigned char key[CACHE_KEY];
} CacheSlot;

#define CACHE_SLOTS (1u << 16) /* 2 MB */

typedef struct {
    PyObject_HEAD
    int ngrams;
    uint32_t num_buckets;
    int mode;
    CacheSlot *cache;
    /* per-document scratch, grown on demand */
    uint32_t *tok_start, *tok_len;
    uint64_t *hashes, *grams;
    size_t tok_capacity;
    uint32_t *features;
    size_t feature_capacity;
    unsigned char *key;
    size_t key_capacity;
    uint32_t *chunk; /* a chunk's features */
    size_t chunk_capacity;
    uint32_t *bucket_count; /* num_buckets counters, all 0 between documents (sublinear sums) */
    uint32_t *touched;      /* a document's distinct buckets in order of first occurrence */
    size_t touched_capacity;
    const unsigned char *classes; /* char_class, or the table given for another tokenizer */
    PyObject *classes_owner;      /* the bytes object holding a given table */
} Featurizer;

static uint32_t cached_sha256_bucket(Featurizer *self, const unsigned char *key, size_t len) {
    if (len > CACHE_KEY) return sha256_bucket(key, len, self->num_buckets);
    uint64_t h = xxh64(key, len, 0);
    CacheSlot *slot = &self->cache[h & (CACHE_SLOTS - 1)];
    uint32_t tag = (uint32_t)(h >> 32) | 1u;
    if (slot->tag == tag && slot->length == len && memcmp(slot->key, key, len) == 0) return slot->bucket;
    uint32_t bucket = sha256_bucket(key, len, self->num_buckets);
    slot->tag = tag;
    slot->bucket = bucket;
    slot->length = (uint8_t)len;
    memcpy(slot->key, key, len);
    return bucket;
}

static int grow(void **buffer, size_t *capacity, size_t needed, size_t item) {
    if (needed <= *capacity) return 0;
    size_t size = *capacity ? *capacity : 1024;
    while (size < needed) size *= 2;
    void *grown = PyMem_Realloc(*buffer, size * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buffer = grown;
    *capacity = size;
    return 0;
}

static int grow_tokens(Featurizer *self, size_t needed) {
    if (needed <= self->tok_capacity) return 0;
    size_t size = self->tok_capacity ? self->tok_capacity : 1024;
    while (size < needed) size *= 2;
    uint32_t *a = PyMem_Realloc(self->tok_start, size * sizeof(uint32_t));
    if (a) self->tok_start = a;
    uint32_t *b = PyMem_Realloc(self->tok_len, size * sizeof(uint32_t));
    if (b) self->tok_len = b;
    uint64_t *c = PyMem_Realloc(self->hashes, size * sizeof(uint64_t));
    if (c) self->hashes = c;
    uint64_t *d = PyMem_Realloc(self->grams, size * sizeof(uint64_t));
    if (d) self->grams = d;
    if (!a || !b || !c || !d) {
        PyErr_NoMemory();
        return -1;
    }
    self->tok_capacity = size;
    return 0;
}

/* The code point starting at s (valid UTF-8, as CPython produces) and its length in bytes. */
static inline uint32_t decode_utf8(const unsigned char *s, int *width) {
    unsigned char c = s[0];
    if (c < 0x80) { *width = 1; return c; }
    if (c < 0xE0) { *width = 2; return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F); }
    if (c < 0xF0) { *width = 3; return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F); }
    *width = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

/* Splits UTF-8 text into wordpunct tokens (byte spans); returns the count, or -1 on error. */
static Py_ssize_t tokenize_utf8(Featurizer *self, const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t count = 0, i = 0;
    while (i < n) {
        int width;
        uint32_t c = decode_utf8(s + i, &width);
        int cls = self->classes[c];
        if (cls == CLASS_SPACE) { i += width; continue; }
        Py_ssize_t start = i;
        i += width;
        while (cls != CLASS_SINGLE && i < n) {
            c = decode_utf8(s + i, &width);
            if (self->classes[c] != cls) break;
            i += width;
        }
        if (grow_tokens(self, (size_t)count + 1) < 0) return -1;
        self->tok_start[count] = (uint32_t)start;
        self->tok_len[count] = (uint32_t)(i - start);
        count++;
    }
    return count;
}

/* Features of one document, in order (unigrams, bigrams, ...), into self->features.
 * Returns the number of features and sets *num_tokens; -1 on error. None gives no tokens.
 * With keep != NULL, *keep receives the lower-cased text (a new reference, or NULL without tokens):
 * the token spans in self->tok_start/tok_len are byte offsets into its UTF-8. */
static Py_ssize_t featurize_kept(Featurizer *self, PyObject *text, Py_ssize_t *num_tokens, PyObject **keep) {
    *num_tokens = 0;
    if (keep) *keep = NULL;
    if (text == Py_None) return 0;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "texts must be str or None, not %.100s", Py_TYPE(text)->tp_name);
        return -1;
    }
    if (PyUnicode_GET_LENGTH(text) == 0) return 0;
    PyObject *lowered = PyObject_CallMethodNoArgs(text, str_lower);
    if (lowered == NULL) return -1;
    Py_ssize_t n;
    const unsigned char *s = (const unsigned char *)PyUnicode_AsUTF8AndSize(lowered, &n);
    if (s == NULL) { Py_DECREF(lowered); return -1; }
    if (n > (Py_ssize_t)UINT32_MAX) {
        Py_DECREF(lowered);
        PyErr_SetString(PyExc_ValueError, "a document over 4 GB of UTF-8 cannot be featurized");
        return -1;
    }
    Py_ssize_t tokens = tokenize_utf8(self, s, n);
    if (tokens < 0) { Py_DECREF(lowered); return -1; }
    *num_tokens = tokens;
    size_t total = 0;
    for (int k = 1; k <= self->ngrams && k <= tokens; k++) total += (size_t)(tokens - k + 1);
    if (grow((void **)&self->features, &self->feature_capacity, total ? total : 1, sizeof(uint32_t)) < 0) {
        Py_DECREF(lowered);
        return -1;
    }
    uint32_t m = self->num_buckets;
    uint32_t *out = self->features;
    if (self->mode == MODE_XXHASH64) {
        for (Py_ssize_t i = 0; i < tokens; i++) {
            uint64_t h = xxh64(s + self->tok_start[i], self->tok_len[i], 0);
            self->hashes[i] = self->grams[i] = h;
            *out++ = (uint32_t)(h % m);
        }
        for (int k = 2; k <= self->ngrams && k <= tokens; k++) {
            for (Py_ssize_t i = 0; i + k <= tokens; i++) {
                uint64_t g = mix64(self->grams[i] * GOLDEN + self->hashes[i + k - 1]);
                self->grams[i] = g;
                *out++ = (uint32_t)(g % m);
            }
        }
    } else {
        for (Py_ssize_t i = 0; i < tokens; i++)
            *out++ = cached_sha256_bucket(self, s + self->tok_start[i], self->tok_len[i]);
        for (int k = 2; k <= self->ngrams && k <= tokens; k++) {
            for (Py_ssize_t i = 0; i + k <= tokens; i++) {
                /* the n-gram's bytes: tokens i .. i+k-1 joined by single spaces */
                size_t len = (size_t)k - 1;
                for (int j = 0; j < k; j++) len += self->tok_len[i + j];
                if (grow((void **)&self->key, &self->key_capacity, len, 1) < 0) { Py_DECREF(lowered); return -1; }
                unsigned char *p = self->key;
                for (int j = 0; j < k; j++) {
                    if (j) *p++ = ' ';
                    memcpy(p, s + self->tok_start[i + j], self->tok_len[i + j]);
                    p += self->tok_len[i + j];
                }
                *out++ = cached_sha256_bucket(self, self->key, len);
            }
        }
    }
    if (keep) *keep = lowered;
    else Py_DECREF(lowered);
    return (Py_ssize_t)total;
}

static Py_ssize_t featurize_one(Featurizer *self, PyObject *text, Py_ssize_t *num_tokens) {
    return featurize_kept(self, text, num_tokens, NULL);
}

/* ------------------------------------------------------------------------------------------ Python API */

static int Featurizer_init(Featurizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ngrams", "num_buckets", "hash", "classes", NULL};
    int ngrams;
    long long num_buckets;
    const char *hash;
    PyObject *classes = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iLs|O", kwlist, &ngrams, &num_buckets, &hash, &classes)) return -1;
    Py_CLEAR(self->classes_owner);
    self->classes = char_class;
    if (classes != Py_None) {
        /* another tokenizer's classes: one byte per code point, CLASS_SPACE .. CLASS_SINGLE */
        if (!PyBytes_Check(classes) || PyBytes_GET_SIZE(classes) != 0x110000) {
            PyErr_SetString(PyExc_ValueError, "classes must be bytes with one class per code point (0x110000)");
            return -1;
        }
        const unsigned char *table = (const unsigned char *)PyBytes_AS_STRING(classes);
        for (Py_ssize_t c = 0; c < 0x110000; c++) {
            if (table[c] > CLASS_SINGLE) { PyErr_SetString(PyExc_ValueError, "classes: values must be 0 to 3"); return -1; }
        }
        Py_INCREF(classes);
        self->classes_owner = classes;
        self->classes = table;
    }
    if (ngrams < 1) { PyErr_SetString(PyExc_ValueError, "ngrams must be >= 1"); return -1; }
    if (num_buckets < 1 || num_buckets > 0x7FFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "num_buckets must be in 1 .. 2**31 - 1");
        return -1;
    }
    if (strcmp(hash, "sha256") == 0) self->mode = MODE_SHA256;
    else if (strcmp(hash, "xxhash64") == 0) self->mode = MODE_XXHASH64;
    else { PyErr_Format(PyExc_ValueError, "unknown hash mode %s", hash); return -1; }
    self->ngrams = ngrams;
    self->num_buckets = (uint32_t)num_buckets;
    if (self->mode == MODE_SHA256 && self->cache == NULL) {
        self->cache = PyMem_Calloc(CACHE_SLOTS, sizeof(CacheSlot));
        if (!self->cache) { PyErr_NoMemory(); return -1; }
    }
    return 0;
}

static void Featurizer_dealloc(Featurizer *self) {
    PyMem_Free(self->cache);
    PyMem_Free(self->tok_start);
    PyMem_Free(self->tok_len);
    PyMem_Free(self->hashes);
    PyMem_Free(self->grams);
    PyMem_Free(self->features);
    PyMem_Free(self->key);
    PyMem_Free(self->chunk);
    PyMem_Free(self->bucket_count);
    PyMem_Free(self->touched);
    Py_XDECREF(self->classes_owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A writable C-contiguous buffer of exactly `count` items of `itemsize` bytes. */
static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t count, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != itemsize || view->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd bytes of items of %zd",
                     name, count, itemsize, view->len, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(count_doc,
"count(texts, groups, counts, num_tokens)\n\n"
"Adds each document's bucket counts to counts[groups[d] * num_buckets + bucket] (int64 buffer) and\n"
"writes its token count to num_tokens[d] (int64). groups: int64 buffer, one group row per document.");

static PyObject *Featurizer_count(Featurizer *self, PyObject *args) {
    PyObject *texts, *groups_obj, *counts_obj, *tokens_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &texts, &groups_obj, &counts_obj, &tokens_obj)) return NULL;
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t docs = PySequence_Fast_GET_SIZE(seq);
    Py_buffer groups, counts, tokens;
    if (get_buffer(groups_obj, &groups, docs, 8, "groups") < 0) { Py_DECREF(seq); return NULL; }
    if (PyObject_GetBuffer(counts_obj, &counts, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&groups); Py_DECREF(seq); return NULL;
    }
    Py_ssize_t groups_in_counts = counts.len / 8 / self->num_buckets;
    if (counts.itemsize != 8 || counts.len != groups_in_counts * 8 * (Py_ssize_t)self->num_buckets) {
        PyErr_SetString(PyExc_ValueError, "counts: expected int64 items, a multiple of num_buckets");
        PyBuffer_Release(&counts); PyBuffer_Release(&groups); Py_DECREF(seq); return NULL;
    }
    if (get_buffer(tokens_obj, &tokens, docs, 8, "num_tokens") < 0) {
        PyBuffer_Release(&counts); PyBuffer_Release(&groups); Py_DECREF(seq); return NULL;
    }
    const int64_t *group = groups.buf;
    int64_t *count = counts.buf, *num_tokens = tokens.buf;
    PyObject *result = Py_None;
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (group[d] < 0 || group[d] >= groups_in_counts) {
            PyErr_Format(PyExc_ValueError, "groups[%zd] = %lld is outside the counts' %zd rows", d,
                         (long long)group[d], groups_in_counts);
            result = NULL;
            break;
        }
        Py_ssize_t ntok;
        Py_ssize_t nfeat = featurize_one(self, PySequence_Fast_GET_ITEM(seq, d), &ntok);
        if (nfeat < 0) { result = NULL; break; }
        num_tokens[d] = ntok;
        int64_t *row = count + group[d] * (int64_t)self->num_buckets;
        for (Py_ssize_t i = 0; i < nfeat; i++) row[self->features[i]]++;
    }
    PyBuffer_Release(&tokens); PyBuffer_Release(&counts); PyBuffer_Release(&groups);
    Py_DECREF(seq);
    if (result == NULL) return NULL;
    Py_RETURN_NONE;
}

/* log_diff as a C-contiguous float64 buffer of rows x num_buckets; returns the rows, or -1 (released). */
static Py_ssize_t get_log_diff(Featurizer *self, PyObject *obj, Py_buffer *diff) {
    if (PyObject_GetBuffer(obj, diff, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    Py_ssize_t rows = diff->len / 8 / self->num_buckets;
    if (diff->itemsize != 8 || rows < 1 || diff->len != rows * 8 * (Py_ssize_t)self->num_buckets) {
        PyErr_SetString(PyExc_ValueError, "log_diff: expected float64 rows of num_buckets values");
        PyBuffer_Release(diff);
        return -1;
    }
    return rows;
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* log1p of small counts, from the C library's log1p itself (so equal to calling it) */
#define LOG1P_TABLE 1024
static double log1p_table[LOG1P_TABLE];

static inline double log1p_count(uint32_t count) {
    return count < LOG1P_TABLE ? log1p_table[count] : log1p((double)count);
}

/* Counts the buckets of features[0 .. n) into self->bucket_count, listing each distinct bucket once in
 * self->touched in order of first occurrence; returns how many, or -1 (memory). */
static Py_ssize_t tally(Featurizer *self, const uint32_t *features, size_t n) {
    if (self->bucket_count == NULL) {
        self->bucket_count = PyMem_Calloc(self->num_buckets, sizeof(uint32_t));
        if (self->bucket_count == NULL) { PyErr_NoMemory(); return -1; }
    }
    if (grow((void **)&self->touched, &self->touched_capacity, n ? n : 1, sizeof(uint32_t)) < 0) return -1;
    Py_ssize_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = features[i];
        if (self->bucket_count[b]++ == 0) self->touched[distinct++] = b;
    }
    return distinct;
}

/* The sum of row[b] over features[0 .. n) in feature order (linear) for each of `rows` rows of table,
 * or (sublinear) over the distinct buckets b in order of first occurrence, row[b] * log1p(count of b),
 * summed left to right. */
static int score_rows(Featurizer *self, const double *table, Py_ssize_t rows, const uint32_t *features,
                      size_t n, int sublinear, double *out, Py_ssize_t stride) {
    Py_ssize_t distinct = sublinear ? tally(self, features, n) : 0;
    if (distinct < 0) return -1;
    for (Py_ssize_t t = 0; t < rows; t++) {
        const double *row = table + t * (Py_ssize_t)self->num_buckets;
        double acc = 0.0;
        if (sublinear) {
            for (Py_ssize_t i = 0; i < distinct; i++) {
                uint32_t b = self->touched[i];
                acc += row[b] * log1p_count(self->bucket_count[b]);
            }
        } else {
            for (size_t i = 0; i < n; i++) acc += row[features[i]];
        }
        out[t * stride] = acc;
    }
    for (Py_ssize_t i = 0; i < distinct; i++) self->bucket_count[self->touched[i]] = 0;
    return 0;
}

PyDoc_STRVAR(score_doc,
"score(texts, log_diff, num_tokens, sums, sublinear=False)\n\n"
"For each document d and each row t of log_diff (float64, rows x num_buckets): sums[t * len(texts) + d]\n"
"= the sum of log_diff[t, bucket] over d's features, in feature order (float64); num_tokens[d] (int32).\n"
"sublinear: instead, over d's distinct buckets in order of first occurrence, log_diff[t, bucket] *\n"
"log1p(count of the bucket), summed left to right.");

static PyObject *Featurizer_score(Featurizer *self, PyObject *args) {
    PyObject *texts, *diff_obj, *tokens_obj, *sums_obj;
    int sublinear = 0;
    if (!PyArg_ParseTuple(args, "OOOO|p", &texts, &diff_obj, &tokens_obj, &sums_obj, &sublinear)) return NULL;
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t docs = PySequence_Fast_GET_SIZE(seq);
    Py_buffer diff, tokens, sums;
    Py_ssize_t rows = get_log_diff(self, diff_obj, &diff);
    if (rows < 0) { Py_DECREF(seq); return NULL; }
    if (get_buffer(tokens_obj, &tokens, docs, 4, "num_tokens") < 0) { PyBuffer_Release(&diff); Py_DECREF(seq); return NULL; }
    if (get_buffer(sums_obj, &sums, docs * rows, 8, "sums") < 0) {
        PyBuffer_Release(&tokens); PyBuffer_Release(&diff); Py_DECREF(seq); return NULL;
    }
    const double *table = diff.buf;
    double *sum = sums.buf;
    int32_t *num_tokens = tokens.buf;
    PyObject *result = Py_None;
    for (Py_ssize_t d = 0; d < docs; d++) {
        Py_ssize_t ntok;
        Py_ssize_t nfeat = featurize_one(self, PySequence_Fast_GET_ITEM(seq, d), &ntok);
        if (nfeat < 0) { result = NULL; break; }
        if (ntok > INT32_MAX) { PyErr_SetString(PyExc_OverflowError, "a document has over 2**31 tokens"); result = NULL; break; }
        num_tokens[d] = (int32_t)ntok;
        if (score_rows(self, table, rows, self->features, (size_t)nfeat, sublinear, sum + d, docs) < 0) {
            result = NULL;
            break;
        }
    }
    PyBuffer_Release(&sums); PyBuffer_Release(&tokens); PyBuffer_Release(&diff);
    Py_DECREF(seq);
    if (result == NULL) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(features_doc,
"features(text) -> (tokens, buckets)\n\n"
"One document's tokens (list of str) and its features' buckets in order (list of int); for tests.");

static PyObject *Featurizer_features(Featurizer *self, PyObject *text) {
    Py_ssize_t ntok;
    Py_ssize_t nfeat = featurize_one(self, text, &ntok);
    if (nfeat < 0) return NULL;
    PyObject *tokens = PyList_New(ntok), *buckets = PyList_New(nfeat);
    if (!tokens || !buckets) goto fail;
    if (ntok) {
        /* spans refer to the lower-cased text's UTF-8 */
        PyObject *lowered = PyObject_CallMethodNoArgs(text, str_lower);
        if (lowered == NULL) goto fail;
        const char *s = PyUnicode_AsUTF8(lowered);
        for (Py_ssize_t i = 0; i < ntok; i++) {
            PyObject *token = PyUnicode_DecodeUTF8(s + self->tok_start[i], self->tok_len[i], "strict");
            if (token == NULL) { Py_DECREF(lowered); goto fail; }
            PyList_SET_ITEM(tokens, i, token);
        }
        Py_DECREF(lowered);
    }
    for (Py_ssize_t i = 0; i < nfeat; i++) {
        PyObject *b = PyLong_FromUnsignedLong(self->features[i]);
        if (b == NULL) goto fail;
        PyList_SET_ITEM(buckets, i, b);
    }
    return Py_BuildValue("(NN)", tokens, buckets);
fail:
    Py_XDECREF(tokens);
    Py_XDECREF(buckets);
    return NULL;
}

PyDoc_STRVAR(token_counts_doc,
"token_counts(texts, num_tokens)\n\nWrites each document's wordpunct token count to num_tokens (int64).");

static PyObject *Featurizer_token_counts(Featurizer *self, PyObject *args) {
    PyObject *texts, *tokens_obj;
    if (!PyArg_ParseTuple(args, "OO", &texts, &tokens_obj)) return NULL;
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t docs = PySequence_Fast_GET_SIZE(seq);
    Py_buffer tokens;
    if (get_buffer(tokens_obj, &tokens, docs, 8, "num_tokens") < 0) { Py_DECREF(seq); return NULL; }
    int64_t *num_tokens = tokens.buf;
    PyObject *result = Py_None;
    for (Py_ssize_t d = 0; d < docs && result; d++) {
        PyObject *text = PySequence_Fast_GET_ITEM(seq, d);
        num_tokens[d] = 0;
        if (text == Py_None) continue;
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "texts must be str or None, not %.100s", Py_TYPE(text)->tp_name);
            result = NULL;
            break;
        }
        PyObject *lowered = PyObject_CallMethodNoArgs(text, str_lower);
        Py_ssize_t n;
        const unsigned char *s = lowered ? (const unsigned char *)PyUnicode_AsUTF8AndSize(lowered, &n) : NULL;
        Py_ssize_t count = s ? tokenize_utf8(self, s, n) : -1;
        Py_XDECREF(lowered);
        if (count < 0) { result = NULL; break; }
        num_tokens[d] = count;
    }
    PyBuffer_Release(&tokens);
    Py_DECREF(seq);
    if (result == NULL) return NULL;
    Py_RETURN_NONE;
}

/* Rewrites ascending byte offsets into the lower-cased text's UTF-8 `s` as character offsets into the
 * original `text`; offsets at odd positions are span ends (exclusive). Lower-casing keeps the length of
 * almost every text; where it does not (U+0130 lowers to two characters), a lower-cased character maps
 * to the original character it came from. */
static int to_original_chars(PyObject *text, PyObject *lowered, const unsigned char *s, int64_t *pos, Py_ssize_t count) {
    Py_ssize_t byte = 0, ch = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        for (; byte < pos[i]; byte++) ch += (s[byte] & 0xC0) != 0x80;
        pos[i] = ch;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length == PyUnicode_GET_LENGTH(lowered)) return 0;
    Py_ssize_t j = 0, below = 0, width = 0; /* original char j covers lowered chars [below, below + width) */
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t target = (i & 1) ? pos[i] - 1 : pos[i]; /* an end maps through its last character */
        for (;;) {
            if (j >= length) break;
            if (width == 0) {
                PyObject *one = PyUnicode_FromOrdinal(PyUnicode_READ_CHAR(text, j));
                PyObject *low = one ? PyObject_CallMethodNoArgs(one, str_lower) : NULL;
                Py_XDECREF(one);
                if (low == NULL) return -1;
                width = PyUnicode_GET_LENGTH(low);
                Py_DECREF(low);
            }
            if (target < below + width) break;
            below += width;
            width = 0;
            j++;
        }
        pos[i] = (i & 1) ? j + 1 : j;
    }
    return 0;
}

typedef struct {
    char *data;
    size_t used, capacity;
} Bytes;

static int append(Bytes *out, const void *item, size_t size) {
    if (grow((void **)&out->data, &out->capacity, out->used + size, 1) < 0) return -1;
    memcpy(out->data + out->used, item, size);
    out->used += size;
    return 0;
}

PyDoc_STRVAR(score_chunks_doc,
"score_chunks(texts, log_diff, chunk_tokens, min_tokens, sublinear=False)\n"
"    -> (doc, chunk, start, end, num_tokens, sums)\n\n"
"Splits each document's tokens into consecutive chunks of chunk_tokens (a shorter last chunk is kept\n"
"with at least min_tokens tokens) and scores each chunk by the n-grams inside it, from one\n"
"tokenization. Returns bytes: doc index (int64), chunk index (int32), character span in the original\n"
"text (int64 start, int64 end), token count (int32), and sums (float64, one row of log_diff rows per chunk);\n"
"sublinear as in score(), over each chunk's own features.");

static PyObject *Featurizer_score_chunks(Featurizer *self, PyObject *args) {
    PyObject *texts, *diff_obj;
    Py_ssize_t chunk_tokens, min_tokens;
    int sublinear = 0;
    if (!PyArg_ParseTuple(args, "OOnn|p", &texts, &diff_obj, &chunk_tokens, &min_tokens, &sublinear)) return NULL;
    if (chunk_tokens < 1) { PyErr_SetString(PyExc_ValueError, "chunk_tokens must be >= 1"); return NULL; }
    if (self->ngrams > 64) { PyErr_SetString(PyExc_ValueError, "chunks are scored for ngrams <= 64"); return NULL; }
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence");
    if (seq == NULL) return NULL;
    Py_buffer diff;
    Py_ssize_t rows = get_log_diff(self, diff_obj, &diff);
    if (rows < 0) { Py_DECREF(seq); return NULL; }
    const double *table = diff.buf;
    Bytes doc = {0}, chunk = {0}, start = {0}, end = {0}, ntok = {0}, sums = {0};
    int64_t *spans = NULL;
    size_t span_capacity = 0;
    int failed = 0;
    Py_ssize_t docs = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t d = 0; d < docs && !failed; d++) {
        PyObject *text = PySequence_Fast_GET_ITEM(seq, d), *lowered = NULL;
        Py_ssize_t tokens;
        if (featurize_kept(self, text, &tokens, &lowered) < 0) { failed = 1; break; }
        Py_ssize_t chunks = tokens / chunk_tokens, rest = tokens % chunk_tokens;
        if (rest > 0 && rest >= min_tokens) chunks++;
        if (chunks == 0) { Py_XDECREF(lowered); continue; }
        if (grow((void **)&spans, &span_capacity, 2 * (size_t)chunks, sizeof(int64_t)) < 0) { failed = 1; Py_DECREF(lowered); break; }
        /* feature block k (1-based) starts at offset[k]: unigrams, then bigrams, ... of the whole document */
        Py_ssize_t offset[64 + 1] = {0}, maxk = self->ngrams;
        for (int k = 2; k <= maxk; k++) offset[k] = offset[k - 1] + (tokens - (k - 1) + 1 > 0 ? tokens - (k - 1) + 1 : 0);
        for (Py_ssize_t c = 0; c < chunks && !failed; c++) {
            Py_ssize_t a = c * chunk_tokens, b = a + chunk_tokens < tokens ? a + chunk_tokens : tokens;
            int64_t di = d;
            int32_t ci = (int32_t)c, nt = (int32_t)(b - a);
            spans[2 * c] = self->tok_start[a];
            spans[2 * c + 1] = (int64_t)self->tok_start[b - 1] + self->tok_len[b - 1];
            failed |= append(&doc, &di, 8) < 0 || append(&chunk, &ci, 4) < 0 || append(&ntok, &nt, 4) < 0;
            /* the chunk's features in the document's order: its unigrams, bigrams, ... */
            size_t n = 0;
            for (int k = 1; k <= maxk && k <= b - a; k++) n += (size_t)(b - a - k + 1);
            if (grow((void **)&self->chunk, &self->chunk_capacity, n ? n : 1, sizeof(uint32_t)) < 0) { failed = 1; break; }
            uint32_t *own = self->chunk;
            for (int k = 1; k <= maxk && k <= b - a; k++)
                for (Py_ssize_t i = a; i + k <= b; i++) *own++ = self->features[offset[k] + i];
            double acc[64];
            for (Py_ssize_t t = 0; t < rows && !failed; t += 64) {
                Py_ssize_t block = rows - t < 64 ? rows - t : 64;
                failed |= score_rows(self, table + t * (Py_ssize_t)self->num_buckets, block, self->chunk, n,
                                     sublinear, acc, 1) < 0;
                for (Py_ssize_t i = 0; i < block && !failed; i++) failed |= append(&sums, &acc[i], 8) < 0;
            }
        }
        const unsigned char *s = failed ? NULL : (const unsigned char *)PyUnicode_AsUTF8(lowered);
        if (s == NULL || to_original_chars(text, lowered, s, spans, 2 * chunks) < 0) failed = 1;
        for (Py_ssize_t c = 0; c < chunks && !failed; c++)
            failed |= append(&start, &spans[2 * c], 8) < 0 || append(&end, &spans[2 * c + 1], 8) < 0;
        Py_DECREF(lowered);
    }
    PyObject *result = NULL;
    if (!failed) {
        result = Py_BuildValue("(y#y#y#y#y#y#)", doc.data ? doc.data : "", (Py_ssize_t)doc.used,
                               chunk.data ? chunk.data : "", (Py_ssize_t)chunk.used,
                               start.data ? start.data : "", (Py_ssize_t)start.used,
                               end.data ? end.data : "", (Py_ssize_t)end.used,
                               ntok.data ? ntok.data : "", (Py_ssize_t)ntok.used,
                               sums.data ? sums.data : "", (Py_ssize_t)sums.used);
    }
    PyMem_Free(doc.data); PyMem_Free(chunk.data); PyMem_Free(start.data); PyMem_Free(end.data);
    PyMem_Free(ntok.data); PyMem_Free(sums.data); PyMem_Free(spans);
    PyBuffer_Release(&diff);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(sparse_counts_doc,
"sparse_counts(texts) -> (indptr, buckets, counts)\n\n"
"Each document's bucket counts as compressed sparse rows: document d's distinct buckets, ascending, are\n"
"buckets[indptr[d]:indptr[d + 1]] with their counts. Returns bytes: int64 indptr (len(texts) + 1 items),\n"
"int32 buckets and int32 counts.");

static PyObject *Featurizer_sparse_counts(Featurizer *self, PyObject *texts) {
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t docs = PySequence_Fast_GET_SIZE(seq);
    Bytes indptr = {0}, buckets = {0}, counts = {0};
    int64_t end = 0;
    int failed = append(&indptr, &end, 8) < 0;
    for (Py_ssize_t d = 0; d < docs && !failed; d++) {
        Py_ssize_t ntok;
        Py_ssize_t nfeat = featurize_one(self, PySequence_Fast_GET_ITEM(seq, d), &ntok);
        if (nfeat < 0) { failed = 1; break; }
        qsort(self->features, (size_t)nfeat, sizeof(uint32_t), compare_u32);
        for (Py_ssize_t i = 0; i < nfeat && !failed;) {
            Py_ssize_t j = i + 1;
            while (j < nfeat && self->features[j] == self->features[i]) j++;
            int32_t bucket = (int32_t)self->features[i], count = (int32_t)(j - i);
            failed |= append(&buckets, &bucket, 4) < 0 || append(&counts, &count, 4) < 0;
            end++;
            i = j;
        }
        failed |= append(&indptr, &end, 8) < 0;
    }
    PyObject *result = NULL;
    if (!failed) {
        result = Py_BuildValue("(y#y#y#)", indptr.data, (Py_ssize_t)indptr.used,
                               buckets.data ? buckets.data : "", (Py_ssize_t)buckets.used,
                               counts.data ? counts.data : "", (Py_ssize_t)counts.used);
    }
    PyMem_Free(indptr.data); PyMem_Free(buckets.data); PyMem_Free(counts.data);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef Featurizer_methods[] = {
    {"sparse_counts", (PyCFunction)Featurizer_sparse_counts, METH_O, sparse_counts_doc},
    {"score_chunks", (PyCFunction)Featurizer_score_chunks, METH_VARARGS, score_chunks_doc},
    {"count", (PyCFunction)Featurizer_count, METH_VARARGS, count_doc},
    {"score", (PyCFunction)Featurizer_score, METH_VARARGS, score_doc},
    {"features", (PyCFunction)Featurizer_features, METH_O, features_doc},
    {"token_counts", (PyCFunction)Featurizer_token_counts, METH_VARARGS, token_counts_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FeaturizerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsir_spark._featurize.Featurizer",
    .tp_doc = PyDoc_STR("Featurizer(ngrams, num_buckets, hash): hashed n-gram features of batches of texts."),
    .tp_basicsize = sizeof(Featurizer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Featurizer_init,
    .tp_dealloc = (destructor)Featurizer_dealloc,
    .tp_methods = Featurizer_methods,
};

PyDoc_STRVAR(xxh64_doc, "xxh64(data: bytes, seed=0) -> int: XXH64 of bytes (for tests against the xxhash package).");

static PyObject *py_xxh64(PyObject *module, PyObject *args) {
    Py_buffer data;
    unsigned long long seed = 0;
    if (!PyArg_ParseTuple(args, "y*|K", &data, &seed)) return NULL;
    uint64_t h = xxh64(data.buf, (size_t)data.len, seed);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLongLong(h);
}

PyDoc_STRVAR(sha256_bucket_doc, "sha256_bucket(data: bytes, num_buckets) -> int(sha256(data).hexdigest(), 16) % num_buckets.");

static PyObject *py_sha256_bucket(PyObject *module, PyObject *args) {
    Py_buffer data;
    unsigned int m;
    if (!PyArg_ParseTuple(args, "y*I", &data, &m)) return NULL;
    if (m < 1 || m > 0x7FFFFFFFu) { PyBuffer_Release(&data); PyErr_SetString(PyExc_ValueError, "num_buckets out of range"); return NULL; }
    uint32_t b = sha256_bucket(data.buf, (size_t)data.len, m);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(b);
}

PyDoc_STRVAR(use_sha_extensions_doc,
"use_sha_extensions(enabled: bool) -> bool\n\n"
"Turns the x86 SHA extensions on (where the CPU has them) or off (portable C); returns whether they\n"
"are in use. They are on by default where available; the results are the same either way.");

static PyObject *py_use_sha_extensions(PyObject *module, PyObject *arg) {
    int enabled = PyObject_IsTrue(arg);
    if (enabled < 0) return NULL;
    sha256_compress = sha256_block;
#ifdef HAVE_SHA_EXTENSIONS_CODE
    if (enabled && cpu_has_sha_extensions()) sha256_compress = sha256_block_x86;
    return PyBool_FromLong(sha256_compress == sha256_block_x86);
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef module_methods[] = {
    {"use_sha_extensions", py_use_sha_extensions, METH_O, use_sha_extensions_doc},
    {"xxh64", py_xxh64, METH_VARARGS, xxh64_doc},
    {"sha256_bucket", py_sha256_bucket, METH_VARARGS, sha256_bucket_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "dsir_spark._featurize",
    "The compiled hashed n-gram featurizer (see dsir_spark.features for the pure-Python twin).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__featurize(void) {
    for (int c = 0; c < LOG1P_TABLE; c++) log1p_table[c] = log1p((double)c);
    if (char_class == NULL) {
        /* Python re's classes for str patterns, read from this interpreter for every code point. */
        char_class = PyMem_Malloc(0x110000);
        if (char_class == NULL) return PyErr_NoMemory();
        for (Py_UCS4 c = 0; c < 0x110000; c++) {
            if (Py_UNICODE_ISALNUM(c) || c == '_') char_class[c] = CLASS_WORD;
            else if (Py_UNICODE_ISSPACE(c)) char_class[c] = CLASS_SPACE;
            else char_class[c] = CLASS_OTHER;
        }
    }
    if (str_lower == NULL && (str_lower = PyUnicode_InternFromString("lower")) == NULL) return NULL;
#ifdef HAVE_SHA_EXTENSIONS_CODE
    if (cpu_has_sha_extensions()) sha256_compress = sha256_block_x86;
#endif
    if (PyType_Ready(&FeaturizerType) < 0) return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    Py_INCREF(&FeaturizerType);
    if (PyModule_AddObject(module, "Featurizer", (PyObject *)&FeaturizerType) < 0) {
        Py_DECREF(&FeaturizerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* The register family's linearizability check in C: pairing, compiling, the stale-read
 * pre-check and the search of checkers/linearizability.py, for histories whose values are
 * scalars and whose models are register, cas-register and kv (appends included).
 *
 * Why C: Python's floor is about 4 us per operation (pairing alone 0.9 us, measured), where
 * Porcupine's whole check takes 0.6-1 us; this file does the same work at 0.2-0.4 us.
 *
 * The same rules as the Python checker, on the same pairing and compiling:
 *   - anything unusual (a value that is not a scalar, an op it does not know, an event
 *     pairing would reject, a key that cannot be hashed) returns None, and the Python checker
 *     decides (and names what is wrong);
 *   - the Python pre-check first: a read of a value nothing invoked before it returned could
 *     write, or of a value that a definite op replaced after every writer of it had returned;
 *   - then an exhaustive search with an exact memo (the bitset of linearized ops and the
 *     state) and Python's subsumption of configurations that used more crashed ops, forced
 *     observers, identical crashed ops taken in order, no blind write right after a crashed
 *     op and the grow-only pruning of appends, all of which keep it complete (see
 *     linearizability.py); a search past its budget of configurations, time or memory
 *     returns None and Python decides.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { READ = 0, WRITE = 1, CAS = 2, CAS_FAILED = 3, CAS_ANY = 4, APPEND = 5 };
enum { ST_OK = 0, ST_FAIL = 1, ST_INFO = 2 };
enum { F_READ = 0, F_WRITE = 1, F_CAS = 2, F_APPEND = 3, F_OTHER = 4 };

#define MAX_DEPTH 64

typedef struct {
    int32_t group;
    int32_t fcode;     /* F_* */
    int8_t fname;      /* which name (fname_of) */
    PyObject *f;       /* borrowed: the invocation's f */
    PyObject *key;     /* borrowed */
    PyObject *value;   /* borrowed: the invocation's value */
    PyObject *output;  /* borrowed: the completion's value */
    int64_t call, ret; /* positions in the history; ret -1 while open */
    int8_t status;     /* ST_*; an invocation never completed stays info */
    int8_t compare_failed;
    /* compiled */
    int8_t kept, kind, definite;
    int32_t a, b;
    int32_t local;     /* index among its key's definite ops, during a search */
} Op;

static PyObject *S_type, *S_process, *S_f, *S_key, *S_value, *S_compare_failed;
static PyObject *S_nemesis, *S_invoke, *S_ok, *S_fail, *S_info;

static int str_is(PyObject *s, PyObject *lit) {
    if (s == lit) return 1;
    if (!PyUnicode_Check(s)) return 0;
    if (PyUnicode_GET_LENGTH(s) != PyUnicode_GET_LENGTH(lit)) return 0;
    return PyUnicode_Compare(s, lit) == 0;
}

static inline int ascii_is(PyObject *k, const char *lit, Py_ssize_t n) {
    return PyUnicode_IS_COMPACT_ASCII(k) && PyUnicode_GET_LENGTH(k) == n &&
           __builtin_memcmp(PyUnicode_DATA(k), lit, (size_t)n) == 0;
}

/* which function an op names: 0 read, 1 get, 2 write, 3 put, 4 cas, 5 append, -1 another */
static int fname_of(PyObject *f) {
    switch (PyUnicode_GET_LENGTH(f)) {
    case 3:
        if (ascii_is(f, "get", 3)) return 1;
        if (ascii_is(f, "put", 3)) return 3;
        if (ascii_is(f, "cas", 3)) return 4;
        break;
    case 4: if (ascii_is(f, "read", 4)) return 0; break;
    case 5: if (ascii_is(f, "write", 5)) return 2; break;
    case 6: if (ascii_is(f, "append", 6)) return 5; break;
    }
    return -1;
}

static const int8_t FCODE[] = {F_READ, F_READ, F_WRITE, F_WRITE, F_CAS, F_APPEND};

/* an event's type: -1 invoke, ST_* for completions, -2 unknown */
static int type_of(PyObject *t) {
    switch (PyUnicode_GET_LENGTH(t)) {
    case 2: if (ascii_is(t, "ok", 2)) return ST_OK; break;
    case 4:
        if (ascii_is(t, "fail", 4)) return ST_FAIL;
        if (ascii_is(t, "info", 4)) return ST_INFO;
        break;
    case 6: if (ascii_is(t, "invoke", 6)) return -1; break;
    }
    return -2;
}

enum { FLD_OTHER = 0, FLD_TYPE, FLD_PROCESS, FLD_F, FLD_KEY, FLD_VALUE, FLD_COMPARE_FAILED,
       FLD_UNSURE };
#define MAX_ARRAY_PROCESS (1L << 22)

/* Which of the fields the checker reads an event's key names (FLD_OTHER for the rest). */
static int field_of(PyObject *k) {
    if (k == S_type) return FLD_TYPE;
    if (k == S_process) return FLD_PROCESS;
    if (k == S_f) return FLD_F;
    if (k == S_key) return FLD_KEY;
    if (k == S_value) return FLD_VALUE;
    if (!PyUnicode_CheckExact(k)) return PyUnicode_Check(k) ? FLD_UNSURE : FLD_OTHER;
    if (!PyUnicode_IS_COMPACT_ASCII(k)) return FLD_OTHER;
    switch (PyUnicode_GET_LENGTH(k)) {
    case 1: return ascii_is(k, "f", 1) ? FLD_F : FLD_OTHER;
    case 3: return ascii_is(k, "key", 3) ? FLD_KEY : FLD_OTHER;
    case 4: return ascii_is(k, "type", 4) ? FLD_TYPE : FLD_OTHER;
    case 5: return ascii_is(k, "value", 5) ? FLD_VALUE : FLD_OTHER;
    case 7: return ascii_is(k, "process", 7) ? FLD_PROCESS : FLD_OTHER;
    case 14: return ascii_is(k, "compare_failed", 14) ? FLD_COMPARE_FAILED : FLD_OTHER;
    default: return FLD_OTHER;
    }
}

/* Does v nest deeper than `limit` levels of lists, tuples and maps? (validate_op's rule) */
static int too_deep(PyObject *v, int limit) {
    if (PyList_Check(v) || PyTuple_Check(v)) {
        if (limit == 0) return 1;
        PyObject *seq = v;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        PyObject **items = PySequence_Fast_ITEMS(seq);
        for (Py_ssize_t i = 0; i < n; i++)
            if (too_deep(items[i], limit - 1)) return 1;
        return 0;
    }
    if (PyDict_Check(v)) {
        if (limit == 0) return 1;
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x))
            if (too_deep(x, limit - 1)) return 1;
        return 0;
    }
    return 0;
}

/* A value the search can compare by interning: None, bool, int, float, str. */
static int scalar(PyObject *v) {
    return v == Py_None || PyLong_Check(v) || PyUnicode_Check(v) || PyFloat_Check(v);
}

/* The interned values: value -> id, and id -> value. */
typedef struct {
    PyObject *ids, *list;
} Values;

/* The value's id, a new one when unseen; -1 on error, -2 when the value is not a scalar. */
static int32_t intern(Values *vt, PyObject *v) {
    if (!scalar(v)) return -2;
    PyObject *got = PyDict_GetItemWithError(vt->ids, v);
    if (got != NULL) return (int32_t)PyLong_AsLong(got);
    if (PyErr_Occurred()) return -1;
    Py_ssize_t n = PyList_GET_SIZE(vt->list);
    if (n >= INT32_MAX / 2) return -2;
    PyObject *id = PyLong_FromSsize_t(n);
    if (id == NULL) return -1;
    int r = PyDict_SetItem(vt->ids, v, id);
    Py_DECREF(id);
    if (r < 0 || PyList_Append(vt->list, v) < 0) return -1;
    return (int32_t)n;
}

/* ---- appends: the state after appending op `bit`'s string to state s, memoized ---- */

typedef struct {
    uint64_t *keys;  /* (s << 32 | bit) + 1; 0 empty */
    int32_t *vals;
    size_t mask, used;
} AppendMemo;

static int amemo_grow(AppendMemo *m) {
    size_t cap = m->mask ? (m->mask + 1) * 2 : 256;
    uint64_t *keys = calloc(cap, sizeof(uint64_t));
    int32_t *vals = malloc(cap * sizeof(int32_t));
    if (keys == NULL || vals == NULL) { free(keys); free(vals); return 0; }
    for (size_t i = 0; m->mask && i <= m->mask; i++) {
        if (m->keys[i] == 0) continue;
        size_t j = (size_t)(m->keys[i] * 0x9E3779B97F4A7C15ULL >> 24) & (cap - 1);
        while (keys[j] != 0) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->mask = cap - 1;
    return 1;
}

/* -1 on error (a Python exception is set) */
static int32_t append_state(Values *vt, AppendMemo *m, int32_t s, int32_t bit, int32_t arg) {
    if ((m->used + 1) * 2 > m->mask + 1 && !amemo_grow(m)) {
        PyErr_NoMemory();
        return -1;
    }
    uint64_t k = (((uint64_t)(uint32_t)s << 32) | (uint32_t)bit) + 1;
    size_t j = (size_t)(k * 0x9E3779B97F4A7C15ULL >> 24) & m->mask;
    while (m->keys[j] != 0) {
        if (m->keys[j] == k) return m->vals[j];
        j = (j + 1) & m->mask;
    }
    PyObject *cur = PyList_GET_ITEM(vt->list, s), *x = PyList_GET_ITEM(vt->list, arg);
    PyObject *nv = cur == Py_None ? (Py_INCREF(x), x) : PyUnicode_Concat(cur, x);
    if (nv == NULL) return -1;
    int32_t ns = intern(vt, nv);
    Py_DECREF(nv);
    if (ns < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "too many values");
        return -1;
    }
    m->keys[j] = k;
    m->vals[j] = ns;
    m->used++;
    return ns;
}

/* ---- the memo: the configurations explored, exactly, with Python's subsumption ----
 * A configuration is (the definite ops linearized, the state, the info ops used), the first
 * two as a bitset and an int, the third as a bitset whose bit 0 marks a configuration reached
 * by an info op (no blind write may follow it, so it explores less than the same
 * configuration reached otherwise). An open-addressing table holds a 64-bit hash of (definite
 * bitset, state), the bitset itself in an arena, and the antichain of info masks it was
 * explored with: a visit whose mask contains one of them is subsumed, since unused info ops
 * only add choices; a new mask replaces those that contain it. A hash collision costs a
 * comparison, never a configuration. */

typedef struct {
    uint64_t k;
    int64_t off;   /* its definite bitset in the arena, in words */
    int32_t s;
    int32_t head;  /* its first info mask (a node), -1 none */
} Slot;

typedef struct {
    int32_t next;
    int64_t off;   /* the mask in the arena */
} Node;

typedef struct {
    Slot *slots;
    size_t mask, used;
    uint64_t *arena;
    size_t arena_used, arena_cap, wd, wi, limit_words;
    Node *nodes;
    size_t n_nodes, cap_nodes;
} Memo;

static int memo_init(Memo *m, size_t want, size_t wd, size_t wi, size_t limit_bytes) {
    size_t cap = 64;  /* small keys are common: a big table would cost more to clear */
    while (cap < want * 2) cap <<= 1;
    m->slots = calloc(cap, sizeof(Slot));
    m->mask = cap - 1;
    m->used = 0;
    m->wd = wd;
    m->wi = wi;
    m->arena_cap = (wd + wi) * (want + 16);
    m->arena = malloc(m->arena_cap * sizeof(uint64_t));
    m->arena_used = 0;
    m->limit_words = limit_bytes / sizeof(uint64_t);
    m->cap_nodes = want + 16;
    m->nodes = malloc(m->cap_nodes * sizeof(Node));
    m->n_nodes = 0;
    return m->slots != NULL && m->arena != NULL && m->nodes != NULL;
}

static inline size_t slot_of(uint64_t k, size_t mask) {
    return (size_t)(k * 0x9E3779B97F4A7C15ULL >> 20) & mask;
}

static int memo_grow(Memo *m) {
    size_t cap = (m->mask + 1) * 2;
    Slot *slots = calloc(cap, sizeof(Slot));
    if (slots == NULL) return 0;
    for (size_t i = 0; i <= m->mask; i++) {
        Slot *x = &m->slots[i];
        if (x->k == 0) continue;
        size_t j = slot_of(x->k, cap - 1);
        while (slots[j].k != 0) j = (j + 1) & (cap - 1);
        slots[j] = *x;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return 1;
}

/* words more in the arena: its offset, -1 out of memory, -2 past the memory budget */
static int64_t arena_take(Memo *m, size_t words) {
    if (m->arena_used + words > m->arena_cap) {
        size_t cap = m->arena_cap * 2 + words;
        if (cap > m->limit_words) {
            if (m->arena_used + words > m->limit_words) return -2;
            cap = m->limit_words;
        }
        uint64_t *arena = realloc(m->arena, cap * sizeof(uint64_t));
        if (arena == NULL) return -1;
        m->arena = arena;
        m->arena_cap = cap;
    }
    int64_t off = (int64_t)m->arena_used;
    m->arena_used += words;
    return off;
}

/* a node holding a copy of mask I: its index, -1 out of memory, -2 past the budget */
static int32_t node_new(Memo *m, const uint64_t *I, int32_t next) {
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes * 2;
        Node *nodes = realloc(m->nodes, cap * sizeof(Node));
        if (nodes == NULL) return -1;
        m->nodes = nodes;
        m->cap_nodes = cap;
    }
    int64_t off = arena_take(m, m->wi);
    if (off < 0) return (int32_t)off;
    memcpy(m->arena + off, I, m->wi * sizeof(uint64_t));
    Node *x = &m->nodes[m->n_nodes];
    x->off = off;
    x->next = next;
    return (int32_t)m->n_nodes++;
}

static inline int subset(const uint64_t *a, const uint64_t *b, size_t words) {
    for (size_t w = 0; w < words; w++)
        if (a[w] & ~b[w]) return 0;
    return 1;
}

/* Visit (D, s, I), where bits is D's wd words then I's wi words: 1 to explore it (and it is
 * recorded), 0 when subsumed by a configuration explored, -1 out of memory, -2 past the
 * memory budget. */
static int memo_visit(Memo *m, uint64_t k, int32_t s, const uint64_t *bits) {
    if (k == 0) k = 1;
    const uint64_t *I = bits + m->wd;
    size_t j = slot_of(k, m->mask);
    size_t dbytes = m->wd * sizeof(uint64_t);
    while (m->slots[j].k != 0) {
        Slot *x = &m->slots[j];
        if (x->k == k && x->s == s && memcmp(m->arena + x->off, bits, dbytes) == 0) {
            for (int32_t q = x->head; q >= 0; q = m->nodes[q].next)
                if (subset(m->arena + m->nodes[q].off, I, m->wi)) return 0;
            /* drop the masks that contain I: this visit subsumes them */
            int32_t *link = &x->head;
            while (*link >= 0) {
                Node *nd = &m->nodes[*link];
                if (subset(I, m->arena + nd->off, m->wi)) *link = nd->next;
                else link = &nd->next;
            }
            int32_t head = x->head;
            int32_t q = node_new(m, I, head);
            if (q < 0) return q;
            m->slots[j].head = q;
            return 1;
        }
        j = (j + 1) & m->mask;
    }
    int64_t off = arena_take(m, m->wd);
    if (off < 0) return (int)off;
    memcpy(m->arena + off, bits, dbytes);
    int32_t q = node_new(m, I, -1);
    if (q < 0) return q;
    Slot *x = &m->slots[j];
    x->k = k;
    x->s = s;
    x->off = off;
    x->head = q;
    m->used++;
    if (m->used * 2 > m->mask + 1 && !memo_grow(m)) return -1;
    return 1;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t conf_key(uint64_t h, int32_t s) {
    uint64_t x = (uint64_t)(uint32_t)s + 1;
    x *= 0xD6E8FEB86659FD93ULL;
    return h ^ x ^ (x >> 32);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- one key: the ops in `ks` (indices into ops, in invocation order) ---- */

typedef struct {
    int32_t e;      /* call entry of a definite op, or -1 - j for info op j */
    int32_t s;      /* the state before it */
    int8_t forced;
    int8_t pass;    /* info frames: which pass of the frontier scan chose it */
} Frame;

/* The pre-check of linearizability._impossible_read: 1 when a definite read or cas needs a
 * value no op invoked before it returned could write, or a value replaced for good before
 * it was invoked. */
static int impossible_read(Op *ops, int32_t *ks, int32_t n, int32_t init, int32_t n_values,
                           int64_t *first, int64_t *last_ret, int32_t *set_order,
                           int64_t *suffix) {
    const int64_t INF = INT64_MAX;
    for (int32_t v = 0; v < n_values; v++) {
        first[v] = INF;
        last_ret[v] = -2;  /* no writer */
    }
    last_ret[init] = -1;
    int32_t n_set = 0;
    for (int32_t x = 0; x < n; x++) {
        Op *o = &ops[ks[x]];
        int k = o->kind;
        if (k == WRITE || k == CAS || k == CAS_ANY) {
            int32_t v = k == WRITE ? o->a : o->b;
            if (o->call < first[v]) first[v] = o->call;
            int64_t ret = o->definite ? o->ret : INF;
            if (ret > last_ret[v]) last_ret[v] = ret;
            if (k != CAS_ANY && o->definite) set_order[n_set++] = x;
        }
    }
    /* setters are in invocation order already (ks is); suffix minimum of their returns */
    int64_t best = INF;
    for (int32_t m = n_set - 1; m >= 0; m--) {
        int64_t r = ops[ks[set_order[m]]].ret;
        if (r < best) best = r;
        suffix[m] = best;
    }
    for (int32_t x = 0; x < n; x++) {
        Op *o = &ops[ks[x]];
        if ((o->kind != READ && o->kind != CAS) || !o->definite) continue;
        int32_t need = o->a;
        if (need != init && first[need] > o->ret) return 1;
        int64_t w = last_ret[need];
        if (w == -2 || w == INF) continue;
        /* the first setter invoked after w */
        int32_t lo = 0, hi = n_set;
        while (lo < hi) {
            int32_t mid = (lo + hi) / 2;
            if (ops[ks[set_order[mid]]].call <= w) lo = mid + 1; else hi = mid;
        }
        if (lo < n_set && suffix[lo] < o->call) return 1;
    }
    return 0;
}

/* cur: wd words of definite ops (op l is bit l), then wi words of info ops (op j is bit
 * j + 1; bit 0 is the reached-by-an-info-op mark, set only while a visit is recorded) */
#define D_SET(l) (cur[(l) >> 6] |= 1ULL << ((l) & 63))
#define D_CLR(l) (cur[(l) >> 6] &= ~(1ULL << ((l) & 63)))
#define I_SET(j) (cur[wd + (((j) + 1) >> 6)] |= 1ULL << (((j) + 1) & 63))
#define I_CLR(j) (cur[wd + (((j) + 1) >> 6)] &= ~(1ULL << (((j) + 1) & 63)))
#define I_USED(j) (cur[wd + (((j) + 1) >> 6)] >> (((j) + 1) & 63) & 1)
#define USED(b) ((b) < n_def ? (cur[(b) >> 6] >> ((b) & 63) & 1) : I_USED((b) - n_def))
#define SKIP_USED_SETTERS() \
    while (fu < n_set && USED(sbit[fu])) fu++

/* Is some pending read's value out of reach of state s for good? (see grow_only) */
static int grown_past(Op *ops, int32_t *dops, Values *vt, int32_t *nx, int32_t *match,
                      int32_t *eop, int32_t *rprefix, int32_t fu, int32_t s) {
    PyObject *sv = PyList_GET_ITEM(vt->list, s);
    if (sv == Py_None) return 0;
    for (int32_t f = nx[0]; match[f] > 0; f = nx[f]) {
        int32_t l = eop[f];
        Op *o = &ops[dops[l]];
        if (o->kind != READ || rprefix[l] > fu) continue;
        PyObject *rv = PyList_GET_ITEM(vt->list, o->a);
        if (rv == Py_None || PyUnicode_Tailmatch(rv, sv, 0, PY_SSIZE_T_MAX, -1) != 1) {
            PyErr_Clear();
            return 1;
        }
    }
    return 0;
}

/* What the op of a blocked return entry needs the state to hold (a read's value, a cas's
 * from), -1 for anything else: the info ops that give it are tried first. */
static inline int32_t needed(const Op *o) {
    return (o->kind == READ || o->kind == CAS) ? o->a : -1;
}

/* 1 linearizable, 0 not linearizable, 3 past its budget of configurations, 2 undecided for
 * another reason (time, memory, a value it cannot build: Python decides), -1 out of memory.
 * `ks`: the key's kept ops in invocation order; `ents`: its definite ops' call and return
 * events in history order, each 2 * op + (1 for a return). */
static int search(Op *ops, int32_t *ks, int32_t n, int32_t *ents, int32_t n_ent, int32_t init,
                  Values *vt, int grow_only, double deadline, int64_t budget, size_t memory,
                  int64_t *configs) {
    int32_t n_def = n_ent / 2, n_info = n - n_def;
    if (n_def == 0) return 1;
    AppendMemo am = {0};
    /* With appends, values only grow until a write or cas resets them: a pending read whose
     * value does not extend the current one, and that no setter still unused could reset
     * before it returns, makes the configuration dead. Setters are ranked by invocation:
     * those invoked before read r returns are ranks below rprefix[r]; fu is the lowest
     * rank not linearized. */
    int32_t *srank = NULL, *sbit = NULL, *rprefix = NULL;
    int32_t n_set = 0, fu = 0;
    int32_t tail = n_ent + 1;
    size_t ne = (size_t)n_ent + 2;
    int32_t *nx = malloc(ne * sizeof(int32_t)), *pv = malloc(ne * sizeof(int32_t));
    int32_t *eop = malloc(ne * sizeof(int32_t)), *match = malloc(ne * sizeof(int32_t));
    int64_t *epos = malloc(ne * sizeof(int64_t));
    uint64_t *z = malloc(((size_t)n + 1) * sizeof(uint64_t));
    int32_t *info = malloc(((size_t)n_info + 1) * sizeof(int32_t));
    /* same[j]: the info op before j of the same kind and arguments, or -1. Identical info
     * ops are interchangeable (none has a return), so j is tried only once same[j] is used:
     * the used ones of a kind are always its earliest, and one set of them is explored once */
    int32_t *same = malloc(((size_t)n_info + 1) * sizeof(int32_t));
    uint64_t *ckeys = calloc(2 * (size_t)n_info + 2, sizeof(uint64_t));
    int32_t *clast = malloc((2 * (size_t)n_info + 2) * sizeof(int32_t));
    Frame *stack = malloc(((size_t)n + 1) * sizeof(Frame));
    int32_t *dops = malloc(((size_t)n_def + 1) * sizeof(int32_t));
    int32_t *ce = malloc(((size_t)n_def + 1) * sizeof(int32_t));
    Memo memo = {0};
    size_t wd = ((size_t)n_def + 63) / 64, wi = ((size_t)n_info + 1 + 63) / 64;
    uint64_t *cur = calloc(wd + wi, sizeof(uint64_t));  /* see D_SET */
    int result = -1;
    int64_t count = 0;
    if (grow_only) {
        srank = malloc(((size_t)n + 1) * sizeof(int32_t));
        sbit = malloc(((size_t)n + 1) * sizeof(int32_t));
        rprefix = malloc(((size_t)n_def + 1) * sizeof(int32_t));
    }
    if (!nx || !pv || !eop || !match || !epos || !z || !info || !stack || !dops ||
        !ce || !same || !ckeys || !clast || !cur || (grow_only && (!srank || !sbit || !rprefix)) ||
        !memo_init(&memo, (size_t)n + 16, wd, wi, memory))
        goto done;
    uint64_t seed = 0x5EED1234ULL + (uint64_t)n;
    int32_t d = 0, q = 0;
    for (int32_t x = 0; x < n; x++) {
        Op *o = &ops[ks[x]];
        if (o->definite) {
            o->local = d;
            dops[d++] = ks[x];
        } else {
            info[q++] = ks[x];
        }
    }
    if (d != n_def) goto done;
    if (grow_only) {
        int32_t dd = 0, qq = 0;
        for (int32_t x = 0; x < n; x++) {
            Op *o = &ops[ks[x]];
            int32_t bit = o->definite ? dd++ : n_def + qq++;
            srank[bit] = -1;
            if (o->kind == WRITE || o->kind == CAS || o->kind == CAS_ANY) {
                srank[bit] = n_set;
                sbit[n_set++] = bit;
            }
        }
        /* setters invoked before each definite read returns (calls ascend with rank) */
        for (int32_t l = 0; l < n_def; l++) {
            Op *o = &ops[dops[l]];
            if (o->kind != READ) { rprefix[l] = 0; continue; }
            int32_t lo = 0, hi = n_set;
            while (lo < hi) {
                int32_t mid = (lo + hi) / 2;
                int32_t b = sbit[mid];
                Op *w = &ops[b < n_def ? dops[b] : info[b - n_def]];
                if (w->call < o->ret) lo = mid + 1; else hi = mid;
            }
            rprefix[l] = lo;
        }
    }
    {
        size_t cmask = 1;
        while (cmask < 2 * (size_t)n_info + 2) cmask <<= 1;
        cmask = (cmask >> 1) - 1;  /* within the 2 * n_info + 2 slots allocated */
        if (cmask < 1) cmask = 1;
        for (int32_t j = 0; j < n_info; j++) {
            Op *o = &ops[info[j]];
            uint64_t k = ((uint64_t)(o->kind + 1) << 61) | ((uint64_t)o->a << 30) |
                         (uint64_t)(o->kind == WRITE ? 0 : o->b);
            size_t slot = (size_t)(k * 0x9E3779B97F4A7C15ULL >> 17) & cmask;
            while (ckeys[slot] != 0 && ckeys[slot] != k) slot = (slot + 1) & cmask;
            same[j] = ckeys[slot] == k ? clast[slot] : -1;
            ckeys[slot] = k;
            clast[slot] = j;
        }
    }
    for (int32_t x = 0; x < n; x++) z[x] = splitmix(&seed);
    for (int32_t x = 0; x < n_ent; x++) {
        int32_t e = x + 1;
        Op *o = &ops[ents[x] >> 1];
        int32_t l = o->local;
        eop[e] = l;
        if (ents[x] & 1) {
            epos[e] = o->ret;
            match[e] = -1;
            match[ce[l]] = e;
        } else {
            epos[e] = o->call;
            ce[l] = e;
            match[e] = 0;
        }
    }
    for (int32_t x = 0; x <= n_ent; x++) nx[x] = x + 1;
    nx[tail] = tail;
    pv[0] = 0;
    for (int32_t x = 1; x <= tail; x++) pv[x] = x - 1;
    match[0] = -1;
    match[tail] = -1;
    epos[0] = -1;
    epos[tail] = INT64_MAX;

    int32_t s = init;
    uint64_t h = 0;
    int32_t sp = 0, remaining = n_def;
    int32_t e = nx[0];
    int32_t ic = -1;  /* info cursor: -1 while definite candidates are being tried */
    int pass = 0;     /* frontier scan: 0 info ops that give what the blocked op needs, 1 the rest */
    int32_t need = -1;
    int64_t frontier = 0;
    if (memo_visit(&memo, conf_key(0, s), s, cur) < 0) goto done;
    for (;;) {
        int pushed = 0;
        if (ic < 0) {
            if (match[e] > 0) {
                Op *o = &ops[dops[eop[e]]];
                int32_t ns;
                switch (o->kind) {
                case READ: if (s != o->a) { e = nx[e]; continue; } ns = s; break;
                case WRITE:
                    /* not right after an info op: it would hide it, and the same order
                     * without that info op is as good */
                    if (sp > 0 && stack[sp - 1].e < 0) { e = nx[e]; continue; }
                    ns = o->a;
                    break;
                case CAS: if (s != o->a) { e = nx[e]; continue; } ns = o->b; break;
                case APPEND:
                    ns = append_state(vt, &am, s, eop[e], o->a);
                    if (ns < 0) { PyErr_Clear(); result = 2; goto done; }
                    break;
                default: /* CAS_FAILED */ if (s == o->a) { e = nx[e]; continue; } ns = s; break;
                }
                int forced = o->kind == READ || o->kind == CAS_FAILED;
                uint64_t nh = h ^ z[eop[e]];
                int32_t bit = eop[e];
                D_SET(bit);
                int fresh = memo_visit(&memo, conf_key(nh, ns), ns, cur);
                if (fresh == -2) { result = 2; goto done; }
                if (fresh < 0) goto done;
                if (fresh) {
                    stack[sp].e = e;
                    stack[sp].s = s;
                    stack[sp].forced = (int8_t)forced;
                    sp++;
                    s = ns;
                    h = nh;
                    if (grow_only && srank[bit] == fu) SKIP_USED_SETTERS();
                    if (--remaining == 0) { result = 1; goto done; }
                    int32_t r = match[e], p, nq;
                    p = pv[e]; nq = nx[e]; nx[p] = nq; pv[nq] = p;
                    p = pv[r]; nq = nx[r]; nx[p] = nq; pv[nq] = p;
                    pushed = 1;
                } else {
                    D_CLR(bit);
                    if (!forced) {
                        e = nx[e];
                        continue;
                    }
                }
                /* else: a forced step into an explored configuration: back off */
            } else {
                frontier = epos[e];
                need = needed(&ops[dops[eop[e]]]);
                ic = 0;
                pass = need >= 0 ? 0 : 1;
            }
        }
        if (!pushed && ic >= 0) {
            for (;;) {
                if (ic >= n_info || ops[info[ic]].call >= frontier) {
                    if (pass == 0) { pass = 1; ic = 0; continue; }
                    break;
                }
                Op *o = &ops[info[ic]];
                if (!I_USED(ic) && (same[ic] < 0 || I_USED(same[ic])) &&
                    !(o->kind == WRITE && sp > 0 && stack[sp - 1].e < 0)) {
                    int32_t ns;
                    if (o->kind == WRITE) {
                        ns = o->a;
                    } else if (o->kind == APPEND) {
                        ns = append_state(vt, &am, s, n_def + ic, o->a);
                        if (ns < 0) { PyErr_Clear(); result = 2; goto done; }
                    } else {
                        ns = s == o->a ? o->b : s;
                    }
                    if (ns != s && ((pass == 0) == (ns == need))) {
                        /* the hash covers the definite ops only: h stays */
                        I_SET(ic);
                        cur[wd] |= 1;
                        int fresh = memo_visit(&memo, conf_key(h, ns), ns, cur);
                        cur[wd] &= ~1ULL;
                        if (fresh == -2) { result = 2; goto done; }
                        if (fresh < 0) goto done;
                        if (!fresh) I_CLR(ic);
                        if (fresh) {
                            stack[sp].e = -1 - ic;
                            stack[sp].s = s;
                            stack[sp].forced = 0;
                            stack[sp].pass = (int8_t)pass;
                            sp++;
                            s = ns;
                            if (grow_only && srank[n_def + ic] == fu) SKIP_USED_SETTERS();
                            pushed = 1;
                            break;
                        }
                    }
                }
                ic++;
            }
        }
        if (pushed && grow_only && s != stack[sp - 1].s && grown_past(ops, dops, vt, nx, match,
                                                                         eop, rprefix, fu, s))
            pushed = 0;  /* dead: to the backtrack below, which undoes this step */
        if (pushed) {
            e = nx[0];
            ic = -1;
            /* a legal observer first: it costs no branching */
            for (int32_t f = e; match[f] > 0; f = nx[f]) {
                Op *o = &ops[dops[eop[f]]];
                if ((o->kind == READ && s == o->a) || (o->kind == CAS_FAILED && s != o->a)) {
                    e = f;
                    break;
                }
            }
            if ((++count & 0xFFF) == 0 && now() > deadline) { result = 2; goto done; }
            if (count > budget) { result = 3; goto done; }
            continue;
        }
        /* backtrack */
        for (;;) {
            if (sp == 0) { result = 0; goto done; }
            Frame *fr = &stack[--sp];
            s = fr->s;
            if (fr->e < 0) {
                int32_t j = -1 - fr->e;
                I_CLR(j);
                if (grow_only && srank[n_def + j] >= 0 && srank[n_def + j] < fu)
                    fu = srank[n_def + j];
                ic = j + 1;
                pass = fr->pass;
                int32_t f = nx[0];
                while (match[f] > 0) f = nx[f];
                frontier = epos[f];
                need = needed(&ops[dops[eop[f]]]);
                break;
            }
            int32_t fe = fr->e, r = match[fe];
            h ^= z[eop[fe]];
            D_CLR(eop[fe]);
            if (grow_only && srank[eop[fe]] >= 0 && srank[eop[fe]] < fu) fu = srank[eop[fe]];
            remaining++;
            pv[nx[r]] = r;
            nx[pv[r]] = r;
            pv[nx[fe]] = fe;
            nx[pv[fe]] = fe;
            if (!fr->forced) {
                e = nx[fe];
                ic = -1;
                break;
            }
        }
        /* on: with ic >= 0, the frontier scan of the parent configuration resumes after the
         * info op just undone */
    }
done:
    *configs += count;
    free(nx); free(pv); free(eop); free(match); free(epos); free(z); free(info);
    free(stack); free(dops); free(ce); free(same); free(ckeys); free(clast);
    free(memo.slots); free(memo.arena); free(memo.nodes); free(cur);
    free(am.keys); free(am.vals); free(srank); free(sbit); free(rprefix);
    return result;
}

/* check(events, validated, cas, append, initial, knossos, deadline, budget_per_op, memory)
 * -> None (the Python checker decides) or
 *    (valid, failed key, ops, ok, fail, info, keys, configurations) */
static PyObject *check(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *events, *initial;
    int validated, cas, append, knossos;
    double deadline;
    long budget_per_op;
    Py_ssize_t memory;
    if (!PyArg_ParseTuple(args, "O!pppOpdln", &PyList_Type, &events, &validated, &cas, &append,
                          &initial, &knossos, &deadline, &budget_per_op, &memory))
        return NULL;
    Py_ssize_t n_ev = PyList_GET_SIZE(events);
    int32_t *slots = NULL;   /* pending op of process p, for small int p; -1 none */
    long n_slots = 0;
    PyObject *last_key = NULL;  /* the previous invocation's key object and its group */
    int32_t last_group = -1;
    Op *ops = malloc(((size_t)n_ev + 1) * sizeof(Op));
    PyObject *pending = PyDict_New(), *groups = PyDict_New(), *ids = PyDict_New();
    PyObject *vals = PyList_New(0);
    int8_t *gappend = NULL;
    int64_t *gbudget = NULL;
    PyObject *ret = NULL;
    int32_t *gcount = NULL, *gstart = NULL, *ks = NULL, *fill = NULL;
    int64_t *first = NULL, *last = NULL, *suffix = NULL;
    int32_t *order = NULL, *evs = NULL, *ents = NULL, *estart = NULL;
    if (ops == NULL || pending == NULL || groups == NULL || ids == NULL || vals == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    int32_t n_ops = 0;
    long n_ok = 0, n_fail = 0, n_info = 0;
#define BAIL do { PyErr_Clear(); ret = Py_NewRef(Py_None); goto out; } while (0)
    for (Py_ssize_t pos = 0; pos < n_ev; pos++) {
        PyObject *ev = PyList_GET_ITEM(events, pos);
        if (!PyDict_Check(ev)) BAIL;
        /* one walk over the event's fields instead of a lookup per field */
        PyObject *t = NULL, *proc = NULL, *f = NULL, *key = NULL, *value = NULL, *cf = NULL;
        Py_ssize_t it = 0;
        PyObject *k, *v;
        while (PyDict_Next(ev, &it, &k, &v)) {
            if (!validated && (PyList_Check(v) || PyTuple_Check(v) || PyDict_Check(v)) &&
                too_deep(v, MAX_DEPTH))
                BAIL;
            switch (field_of(k)) {
            case FLD_TYPE: t = v; break;
            case FLD_PROCESS: proc = v; break;
            case FLD_F: f = v; break;
            case FLD_KEY: key = v; break;
            case FLD_VALUE: value = v; break;
            case FLD_COMPARE_FAILED: cf = v; break;
            case FLD_UNSURE: BAIL;
            default: break;
            }
        }
        if (t == NULL || proc == NULL || f == NULL || !PyUnicode_Check(f) || !PyUnicode_Check(t))
            BAIL;
        /* a str subclass or a non-ASCII text: str_is decides, as Python's == would */
        int tc = type_of(t);
        if (tc == -2) {
            if (str_is(t, S_invoke)) tc = -1;
            else if (str_is(t, S_ok)) tc = ST_OK;
            else if (str_is(t, S_fail)) tc = ST_FAIL;
            else if (str_is(t, S_info)) tc = ST_INFO;
            else BAIL;
        }
        /* processes that are small ints index an array; others go through a dict */
        long pnum = -1;
        if (PyLong_CheckExact(proc)) {
            int overflow;
            pnum = PyLong_AsLongAndOverflow(proc, &overflow);
            if (overflow || pnum < 0 || pnum >= MAX_ARRAY_PROCESS) pnum = -1;
        } else if (PyUnicode_Check(proc)) {
            if (str_is(proc, S_nemesis)) continue;
        } else {
            BAIL;  /* a bool or float would equal an int process: Python's dict decides */
        }
        if (pnum >= 0 && pnum >= n_slots) {
            long want = n_slots ? n_slots : 64;
            while (want <= pnum) want *= 2;
            int32_t *grown = realloc(slots, (size_t)want * sizeof(int32_t));
            if (grown == NULL) { PyErr_NoMemory(); goto out; }
            memset(grown + n_slots, 0xFF, (size_t)(want - n_slots) * sizeof(int32_t));
            slots = grown;
            n_slots = want;
        }
        if (tc < 0) {
            if (pnum >= 0) {
                if (slots[pnum] >= 0) BAIL;  /* a second invocation while one is pending */
                slots[pnum] = n_ops;
            } else {
                int has = PyDict_Contains(pending, proc);
                if (has != 0) BAIL;  /* pending already, or unhashable */
                PyObject *idx = PyLong_FromLong(n_ops);
                if (idx == NULL || PyDict_SetItem(pending, proc, idx) < 0) {
                    Py_XDECREF(idx);
                    BAIL;
                }
                Py_DECREF(idx);
            }
            Op *o = &ops[n_ops];
            memset(o, 0, sizeof(Op));
            o->f = f;
            o->fname = (int8_t)fname_of(f);
            if (o->fname < 0) BAIL;
            o->fcode = FCODE[o->fname];
            o->key = key ? key : Py_None;
            o->value = value ? value : Py_None;
            o->output = Py_None;
            o->call = pos;
            o->ret = -1;
            o->status = ST_INFO;
            if (o->key == last_key) {
                o->group = last_group;
            } else {
                PyObject *g = PyDict_GetItemWithError(groups, o->key);
                if (g == NULL) {
                    if (PyErr_Occurred()) BAIL;
                    PyObject *id = PyLong_FromSsize_t(PyDict_GET_SIZE(groups));
                    if (id == NULL || PyDict_SetItem(groups, o->key, id) < 0) {
                        Py_XDECREF(id);
                        BAIL;
                    }
                    o->group = (int32_t)PyLong_AsLong(id);
                    Py_DECREF(id);
                } else {
                    o->group = (int32_t)PyLong_AsLong(g);
                }
                last_key = o->key;
                last_group = o->group;
            }
            n_ops++;
            continue;
        }
        Op *o;
        if (pnum >= 0) {
            if (slots[pnum] < 0) BAIL;  /* a completion without an invocation */
            o = &ops[slots[pnum]];
            slots[pnum] = -1;
        } else {
            PyObject *idx = PyDict_GetItemWithError(pending, proc);
            if (idx == NULL) BAIL;
            o = &ops[PyLong_AsLong(idx)];
            if (PyDict_DelItem(pending, proc) < 0) BAIL;
        }
        if (o->f != f && fname_of(f) != o->fname) BAIL;  /* (a str subclass: -1, bails) */
        if (key != NULL && key != o->key) {
            int same = PyObject_RichCompareBool(key, o->key, Py_EQ);
            if (same != 1) BAIL;
        }
        if (cf != NULL) {
            int truth = PyObject_IsTrue(cf);
            if (truth < 0) BAIL;
            if (truth) {
                if (tc != ST_FAIL || o->fcode != F_CAS) BAIL;
                o->compare_failed = 1;
            }
        }
        o->status = (int8_t)tc;
        if (tc == ST_INFO) continue;
        o->ret = pos;
        o->output = value ? value : Py_None;
    }
    if (n_ops == 0) BAIL;
    /* compile, as RegisterModel.compile */
    int32_t n_groups = (int32_t)PyDict_GET_SIZE(groups);
    Values vt = {ids, vals};
    int32_t init = intern(&vt, initial);
    if (init < 0) BAIL;
    gcount = calloc((size_t)n_groups + 1, sizeof(int32_t));
    gappend = calloc((size_t)n_groups + 1, 1);
    if (gcount == NULL || gappend == NULL) { PyErr_NoMemory(); goto out; }
    for (int32_t x = 0; x < n_ops; x++) {
        Op *o = &ops[x];
        int st = o->status;
        if (st == ST_OK) n_ok++; else if (st == ST_FAIL) n_fail++; else n_info++;
        if (st == ST_FAIL && (knossos || !o->compare_failed)) continue;
        PyObject *arg = (knossos && st == ST_OK) ? o->output : o->value;
        int32_t a = 0, b = 0;
        int kind;
        if (o->fcode == F_READ) {
            if (st != ST_OK || (knossos && o->output == Py_None)) continue;
            kind = READ;
            a = intern(&vt, o->output);
        } else if (o->fcode == F_WRITE) {
            kind = WRITE;
            a = intern(&vt, arg);
        } else if (o->fcode == F_APPEND) {
            if (!append || !PyUnicode_Check(o->value)) BAIL;
            kind = APPEND;
            a = intern(&vt, o->value);
            gappend[o->group] = 1;
        } else {
            if (!cas) BAIL;
            if (!(PyList_Check(arg) || PyTuple_Check(arg)) || PySequence_Fast_GET_SIZE(arg) != 2)
                BAIL;
            PyObject **items = PySequence_Fast_ITEMS(arg);
            a = intern(&vt, items[0]);
            if (o->compare_failed && !knossos) {
                kind = CAS_FAILED;
            } else {
                kind = st == ST_OK ? CAS : CAS_ANY;
                b = intern(&vt, items[1]);
            }
        }
        if (a < 0 || b < 0) BAIL;
        o->kept = 1;
        o->kind = (int8_t)kind;
        o->a = a;
        o->b = b;
        o->definite = st != ST_INFO;
        gcount[o->group]++;
    }
    /* a register with appends holds strings (or nothing): else Python names the value */
    for (int32_t x = 0; x < n_ops; x++) {
        Op *o = &ops[x];
        if (!o->kept || !gappend[o->group]) continue;
        PyObject *va = PyList_GET_ITEM(vals, o->a), *vb = PyList_GET_ITEM(vals, o->b);
        int uses_b = o->kind == CAS || o->kind == CAS_ANY;
        if ((va != Py_None && !PyUnicode_Check(va)) ||
            (uses_b && vb != Py_None && !PyUnicode_Check(vb)))
            BAIL;
    }
    PyObject *vi = PyList_GET_ITEM(vals, init);
    if (vi != Py_None && !PyUnicode_Check(vi) && memchr(gappend, 1, (size_t)n_groups)) BAIL;
    /* the kept ops of each key, in invocation order */
    gstart = malloc(((size_t)n_groups + 1) * sizeof(int32_t));
    fill = malloc(((size_t)n_groups + 1) * sizeof(int32_t));
    ks = malloc(((size_t)n_ops + 1) * sizeof(int32_t));
    int32_t n_values = (int32_t)PyDict_GET_SIZE(ids);
    first = malloc(((size_t)n_values + 1) * sizeof(int64_t));
    last = malloc(((size_t)n_values + 1) * sizeof(int64_t));
    suffix = malloc(((size_t)n_ops + 1) * sizeof(int64_t));
    order = malloc(((size_t)n_ops + 1) * sizeof(int32_t));
    if (!gstart || !fill || !ks || !first || !last || !suffix || !order) {
        PyErr_NoMemory();
        goto out;
    }
    int32_t acc = 0;
    for (int32_t g = 0; g < n_groups; g++) {
        gstart[g] = fill[g] = acc;
        acc += gcount[g];
    }
    gstart[n_groups] = acc;
    for (int32_t x = 0; x < n_ops; x++)
        if (ops[x].kept) ks[fill[ops[x].group]++] = x;
    /* each key's definite call and return events in history order, from one pass over the
     * history (no sort): evs[pos] is 2 * op + (1 for a return), or -1 */
    evs = malloc(((size_t)n_ev + 1) * sizeof(int32_t));
    ents = malloc(((size_t)n_ops * 2 + 1) * sizeof(int32_t));
    estart = malloc(((size_t)n_groups + 1) * sizeof(int32_t));
    if (!evs || !ents || !estart) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t pos = 0; pos < n_ev; pos++) evs[pos] = -1;
    for (int32_t g = 0; g < n_groups; g++) gcount[g] = 0;
    for (int32_t x = 0; x < n_ops; x++) {
        Op *o = &ops[x];
        if (!o->kept || !o->definite) continue;
        evs[o->call] = 2 * x;
        evs[o->ret] = 2 * x + 1;
        gcount[o->group] += 2;
    }
    acc = 0;
    for (int32_t g = 0; g < n_groups; g++) {
        estart[g] = fill[g] = acc;
        acc += gcount[g];
    }
    for (Py_ssize_t pos = 0; pos < n_ev; pos++) {
        int32_t x = evs[pos];
        if (x >= 0) ents[fill[ops[x >> 1].group]++] = x;
    }
    /* the pre-check on every key first, in the order keys first appear, as the Python
     * checker's first turn does */
    PyObject *failed_key = Py_None;
    int valid = 1;
    for (int32_t g = 0; g < n_groups && valid; g++) {
        int32_t n = gstart[g + 1] - gstart[g];
        if (n == 0 || gappend[g]) continue;  /* appends build values from others */
        if (impossible_read(ops, ks + gstart[g], n, init, n_values, first, last, order, suffix)) {
            valid = 0;
            failed_key = ops[ks[gstart[g]]].key;
        }
    }
    /* The keys in rounds, as the Python checker searches them in turns: each undecided key
     * gets a budget of configurations, enough for a valid history (about one per op) in the
     * first round and doubled in each next, so that a violation on a cheap key is found
     * without first exhausting an expensive one; a search starts over in each round, which
     * at most about doubles the work. */
    int64_t configs = 0;
    gbudget = malloc(((size_t)n_groups + 1) * sizeof(int64_t));
    if (gbudget == NULL) { PyErr_NoMemory(); goto out; }
    for (int32_t g = 0; g < n_groups; g++) {
        int32_t n = gstart[g + 1] - gstart[g];
        gbudget[g] = n == 0 ? 0 : 2 * (int64_t)n + 1024;  /* 0: decided */
    }
    for (int undecided = 1; undecided && valid;) {
        undecided = 0;
        for (int32_t g = 0; g < n_groups && valid; g++) {
            if (gbudget[g] == 0) continue;
            int32_t n = gstart[g + 1] - gstart[g];
            int64_t cap = (int64_t)budget_per_op * n + 65536;
            int32_t n_ent = fill[g] - estart[g];
            int r = search(ops, ks + gstart[g], n, ents + estart[g], n_ent, init, &vt,
                           gappend[g], deadline, gbudget[g] < cap ? gbudget[g] : cap,
                           (size_t)memory, &configs);
            if (r < 0) { PyErr_NoMemory(); goto out; }
            if (r == 2 || (r == 3 && gbudget[g] >= cap)) BAIL;
            if (r == 3) {
                gbudget[g] *= 2;
                undecided = 1;
                continue;
            }
            gbudget[g] = 0;
            if (r == 0) {
                valid = 0;
                failed_key = ops[ks[gstart[g]]].key;
            }
        }
    }
    ret = Py_BuildValue("(OOilllnL)", valid ? Py_True : Py_False, failed_key, (int)n_ops, n_ok,
                        n_fail, n_info, (Py_ssize_t)n_groups, (long long)configs);
out:
#undef BAIL
    free(ops); free(gcount); free(gstart); free(fill); free(ks); free(first); free(last);
    free(suffix); free(order); free(evs); free(ents); free(estart); free(slots);
    Py_XDECREF(pending); Py_XDECREF(groups); Py_XDECREF(ids); Py_XDECREF(vals); free(gappend);
    free(gbudget);
    return ret;
}

static PyMethodDef methods[] = {
    {"check", check, METH_VARARGS,
     "check(events, validated, cas, append, initial, knossos, deadline, budget_per_op, memory): "
     "the register family's verdict, or None when the Python checker must decide"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_linfast", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__linfast(void) {
#define S(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    S(S_type, "type"); S(S_process, "process"); S(S_f, "f"); S(S_key, "key");
    S(S_value, "value"); S(S_compare_failed, "compare_failed"); S(S_nemesis, "nemesis");
    S(S_invoke, "invoke"); S(S_ok, "ok"); S(S_fail, "fail"); S(S_info, "info");
#undef S
    return PyModule_Create(&module);
}

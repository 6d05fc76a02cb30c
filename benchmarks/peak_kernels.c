/* The arithmetic peak of this CPU: loops of independent multiply-add chains that never touch
 * memory, one per instruction kind, on N threads. Built with -O2 -march=native: each kind is
 * compiled in only where the compiler targets its instructions (none on a CPU other than x86).
 *   peak list                         the kinds compiled in, one a line
 *   peak run KIND THREADS SECONDS     one JSON line: {"kind", "threads", "ops_per_s",
 *                                     "ops_per_cpu_s", "windows", "cpu_windows"}
 * ops_per_s: the operations of all threads over the wall time of the best window;
 * ops_per_cpu_s: the sum over threads of each one's operations over its own CPU time (what
 * the threads reach while they run: other processes' load does not lower it).
 * Exit status 2: bad arguments or unknown kind; 3: the kernel cannot run here (AMX refused). */
#define _GNU_SOURCE
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 1024 /* loop iterations between clock reads */
#define WINDOWS 4  /* timed windows after one warm-up window; the best one counts */

static double clock_seconds(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void) { return clock_seconds(CLOCK_MONOTONIC); }

volatile double sink; /* the chains' results go here, so no loop is optimised away */

#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define REP16(X) REP12(X) X(12) X(13) X(14) X(15)

/* One kernel: run until `until`, return the operations done (a multiply-add counts 2). */
typedef uint64_t (*kernel_fn)(double until);

#if defined(__AVX512F__)
static uint64_t fp32_avx512(double until) {
    /* 16 chains: FMA latency 4 x 2 ports needs >= 8 in flight */
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f), s = _mm512_setzero_ps();
#define D(i) __m512 c##i = _mm512_set1_ps((float)(i));
#define S(i) c##i = _mm512_fmadd_ps(c##i, a, b);
#define A(i) s = _mm512_add_ps(s, c##i);
    REP16(D)
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) { REP16(S) }
        n += BLOCK;
    } while (now() < until);
    REP16(A)
    sink = _mm512_reduce_add_ps(s);
    return n * 16 * 16 * 2;
#undef D
#undef S
#undef A
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
static uint64_t fp32_avx2(double until) {
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f), s = _mm256_setzero_ps();
#define D(i) __m256 c##i = _mm256_set1_ps((float)(i));
#define S(i) c##i = _mm256_fmadd_ps(c##i, a, b);
#define A(i) s = _mm256_add_ps(s, c##i);
    REP12(D)
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) { REP12(S) }
        n += BLOCK;
    } while (now() < until);
    REP12(A)
    float out[8];
    _mm256_storeu_ps(out, s);
    sink = out[0];
    return n * 12 * 8 * 2;
#undef D
#undef S
#undef A
}
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
static uint64_t int8_avx512_vnni(double until) {
    /* vpdpbusd: per 32-bit lane, 4 u8 x s8 products added to the accumulator */
    __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2), s = _mm512_setzero_si512();
#define D(i) __m512i c##i = _mm512_set1_epi32(i);
#define S(i) c##i = _mm512_dpbusd_epi32(c##i, a, b);
#define A(i) s = _mm512_add_epi32(s, c##i);
    REP16(D)
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) { REP16(S) }
        n += BLOCK;
    } while (now() < until);
    REP16(A)
    sink = (double)_mm512_reduce_add_epi32(s);
    return n * 16 * 16 * 4 * 2;
#undef D
#undef S
#undef A
}
#endif

#if defined(__AVXVNNI__)
static uint64_t int8_avx_vnni(double until) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), s = _mm256_setzero_si256();
#define D(i) __m256i c##i = _mm256_set1_epi32(i);
#define S(i) c##i = _mm256_dpbusd_avx_epi32(c##i, a, b);
#define A(i) s = _mm256_add_epi32(s, c##i);
    REP12(D)
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) { REP12(S) }
        n += BLOCK;
    } while (now() < until);
    REP12(A)
    int out[8];
    _mm256_storeu_si256((__m256i *)out, s);
    sink = out[0];
    return n * 12 * 8 * 4 * 2;
#undef D
#undef S
#undef A
}
#endif

#if defined(__AVX512BF16__) && defined(__AVX512F__)
static uint64_t bf16_avx512(double until) {
    /* vdpbf16ps: per fp32 lane, 2 bf16 x bf16 products added to the accumulator */
    __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(2e-3f), _mm512_set1_ps(2e-3f));
    __m512 s = _mm512_setzero_ps();
#define D(i) __m512 c##i = _mm512_set1_ps((float)(i));
#define S(i) c##i = _mm512_dpbf16_ps(c##i, a, b);
#define A(i) s = _mm512_add_ps(s, c##i);
    REP16(D)
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) { REP16(S) }
        n += BLOCK;
    } while (now() < until);
    REP16(A)
    sink = _mm512_reduce_add_ps(s);
    return n * 16 * 16 * 2 * 2;
#undef D
#undef S
#undef A
}
#endif

#if defined(__AMX_TILE__) && (defined(__AMX_INT8__) || defined(__AMX_BF16__))
#define HAVE_AMX 1
/* Tiles 0-3: 16 x 16 fp32/int32 accumulators; 4-5: A (16 rows x 64 bytes); 6-7: B (16 rows x
 * 64 bytes, 4 or 2 values packed per 32 bits). Four independent dot products per iteration. */
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static unsigned char tile_data[16 * 64] __attribute__((aligned(64)));

static void tiles_start(void) {
    /* static, and a compiler barrier: GCC's _tile_loadconfig tells the compiler it reads one
     * byte, so the stores that fill a stack copy of the config could be dropped */
    static struct tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&cfg);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, tile_data, 64); _tile_loadd(5, tile_data, 64);
    _tile_loadd(6, tile_data, 64); _tile_loadd(7, tile_data, 64);
}

static void tiles_end(void) {
    int32_t out[16 * 16];
    _tile_stored(0, out, 64);
    sink = out[0];
    _tile_release();
}

#if defined(__AMX_INT8__)
static uint64_t int8_amx(double until) {
    tiles_start();
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) {
            _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
        }
        n += BLOCK;
    } while (now() < until);
    tiles_end();
    return n * 4 * (16 * 16 * 64) * 2; /* 16 x 16 outputs, 64 u8 x s8 products each */
}
#endif

#if defined(__AMX_BF16__)
static uint64_t bf16_amx(double until) {
    tiles_start();
    uint64_t n = 0;
    do {
        for (int k = 0; k < BLOCK; k++) {
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
        }
        n += BLOCK;
    } while (now() < until);
    tiles_end();
    return n * 4 * (16 * 16 * 32) * 2; /* 16 x 16 outputs, 32 bf16 products each */
}
#endif

/* Linux lets a process use AMX's tile data only once it asks (arch_prctl ARCH_REQ_XCOMP_PERM). */
static int amx_permission(void) {
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}
#endif

struct kind {
    const char *name;
    kernel_fn fn;
    int amx;
};

static const struct kind KINDS[] = {
#if defined(__AVX512F__)
    {"fp32-avx512-fma", fp32_avx512, 0},
#endif
#if defined(__AVX2__) && defined(__FMA__)
    {"fp32-avx2-fma", fp32_avx2, 0},
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
    {"int8-avx512-vnni", int8_avx512_vnni, 0},
#endif
#if defined(__AVXVNNI__)
    {"int8-avx-vnni", int8_avx_vnni, 0},
#endif
#if defined(HAVE_AMX) && defined(__AMX_INT8__)
    {"int8-amx", int8_amx, 1},
#endif
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    {"bf16-avx512", bf16_avx512, 0},
#endif
#if defined(HAVE_AMX) && defined(__AMX_BF16__)
    {"bf16-amx", bf16_amx, 1},
#endif
    {NULL, NULL, 0},
};

struct shared {
    pthread_barrier_t start, stop;
    kernel_fn fn;
    volatile double until;
    volatile int done;
    uint64_t ops[256];
    double cpu[256]; /* each thread's own CPU seconds in the window */
};

struct worker {
    struct shared *sh;
    int index;
};

static void *work(void *arg) {
    struct worker *w = arg;
    struct shared *sh = w->sh;
    for (;;) {
        pthread_barrier_wait(&sh->start);
        if (sh->done) return NULL;
        double c0 = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
        sh->ops[w->index] = sh->fn(sh->until);
        sh->cpu[w->index] = clock_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
        pthread_barrier_wait(&sh->stop);
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (const struct kind *k = KINDS; k->name; k++) puts(k->name);
        return 0;
    }
    if (argc != 5 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: %s list | run KIND THREADS SECONDS\n", argv[0]);
        return 2;
    }
    const struct kind *kind = NULL;
    for (const struct kind *k = KINDS; k->name; k++)
        if (strcmp(k->name, argv[2]) == 0) kind = k;
    int threads = atoi(argv[3]);
    double seconds = atof(argv[4]);
    if (!kind || threads < 1 || threads > 256 || !(seconds > 0)) {
        fprintf(stderr, "unknown kind or bad THREADS/SECONDS\n");
        return 2;
    }
#if defined(HAVE_AMX)
    if (kind->amx && !amx_permission()) {
        fprintf(stderr, "the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)\n");
        return 3;
    }
#endif
    struct shared sh;
    memset(&sh, 0, sizeof sh);
    sh.fn = kind->fn;
    pthread_barrier_init(&sh.start, NULL, threads + 1);
    pthread_barrier_init(&sh.stop, NULL, threads + 1);
    pthread_t ids[256];
    struct worker ws[256];
    for (int i = 0; i < threads; i++) {
        ws[i].sh = &sh;
        ws[i].index = i;
        pthread_create(&ids[i], NULL, work, &ws[i]);
    }
    double window = seconds / (WINDOWS + 1), best = 0, best_cpu = 0, rates[WINDOWS + 1], cpu_rates[WINDOWS + 1];
    for (int r = 0; r <= WINDOWS; r++) { /* window 0 warms up (clocks, AMX power-up) */
        double t0 = now();
        sh.until = t0 + window;
        pthread_barrier_wait(&sh.start);
        pthread_barrier_wait(&sh.stop);
        double dt = now() - t0;
        uint64_t total = 0;
        double per_cpu = 0;
        for (int i = 0; i < threads; i++) {
            total += sh.ops[i];
            per_cpu += sh.cpu[i] > 0 ? (double)sh.ops[i] / sh.cpu[i] : 0;
        }
        rates[r] = (double)total / dt;
        cpu_rates[r] = per_cpu;
        if (r > 0 && rates[r] > best) best = rates[r];
        if (r > 0 && cpu_rates[r] > best_cpu) best_cpu = cpu_rates[r];
    }
    sh.done = 1;
    pthread_barrier_wait(&sh.start);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    printf("{\"kind\": \"%s\", \"threads\": %d, \"ops_per_s\": %.6g, \"ops_per_cpu_s\": %.6g, \"windows\": [",
           kind->name, threads, best, best_cpu);
    for (int r = 1; r <= WINDOWS; r++) printf("%s%.6g", r > 1 ? ", " : "", rates[r]);
    printf("], \"cpu_windows\": [");
    for (int r = 1; r <= WINDOWS; r++) printf("%s%.6g", r > 1 ? ", " : "", cpu_rates[r]);
    printf("]}\n");
    return 0;
}

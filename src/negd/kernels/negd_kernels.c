/* Fused neuroevolution of MLP ensembles on CPU (negd.kernels).
 *
 * Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021): conditioned stochastic
 * mutation x' = x + sigma xi, accepted with probability min(1, exp(-beta dU)).
 *
 * Random numbers reproduce negd/rng.py bit for bit: Philox4x32-10 on the counter
 * (block, step mod 2^32, realization mod 2^32, stream | (step >> 32) << 8 | (realization >> 32) << 20)
 * keyed by the 64-bit seed (stream < 2^8, step and realization < 2^44), then a Box-Muller transform
 * written as separate IEEE float32 operations. This file MUST be compiled with
 * -ffp-contract=off so that no a*b+c of the random-number code is fused; the forward pass
 * asks for fused multiply-adds explicitly (vfma).
 *
 * Forward pass (negd_mlp.h, compiled twice): float32 parameters vectorized over points (8 per
 * AVX2 register) with a clamped rational tanh (the [13/6] minimax approximation used by Eigen), or
 * float64 parameters (4 per register) with a tanh accurate to double precision; hidden activations
 * tanh, relu, exact GELU (erf) or identity. Loss: mean squared error or softmax cross-entropy, its
 * per-point terms accumulated in double and returned in double, whatever the parameter type, so that
 * dU = U(x') - U(x) is resolved far below the float32 unit of U (at the paper's smallest mutations dU
 * is a few 1e-8, about one float32 unit of U ~ 0.3).
 *
 * Loss gradients (backpropagation, mean squared error) and fused Langevin steps, the gradient twin's
 * dynamics: negd_grad.h, compiled twice after negd_mlp.h.
 *
 * Whole episodes of CartPole-v1 and Pendulum-v1 under MLP policies (negd.envs' rollout, fused):
 * negd_env.h, compiled twice after negd_grad.h.
 *
 * Every realization is computed by one thread from start to end of a call, and nothing it computes
 * depends on the other realizations: results are independent of the thread count, of which thread
 * takes which realization and of how the ensemble is split into calls. Realizations are handed out
 * in small chunks to whichever thread is free (dynamic schedule): on a machine shared with other
 * work, a thread that the OS deschedules holds up the others by one chunk, not by half the work as a
 * static partition did (all cores were then slower than one thread under load).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define NEGD_AVX2 1
#endif

#define F(x) ((float)(x)) /* double literal rounded to float, exactly as torch.tensor(x, float32) */

/* ------------------------------------------------------------------ Philox4x32-10 */
#define PH_M0 0xD2511F53u
#define PH_M1 0xCD9E8D57u
#define PH_W0 0x9E3779B9u
#define PH_W1 0xBB67AE85u

static inline void philox_scalar(uint32_t c[4], uint64_t seed) {
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)c[0] * PH_M0, p1 = (uint64_t)c[2] * PH_M1;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1, n3 = (uint32_t)p0;
        c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
        k0 += PH_W0; k1 += PH_W1;
    }
}

/* Counter words 1..3 of (step, realization, stream): the layout of negd/rng.py. */
#define COUNTER_LIMIT (INT64_C(1) << 44) /* steps and realizations: [0, 2^44) */
#define STREAM_LIMIT 256
typedef struct { uint32_t w1, w2, w3; } ctr_t;

static inline ctr_t counter_words(int64_t step, int64_t rid, uint32_t stream) {
    ctr_t c;
    c.w1 = (uint32_t)step;
    c.w2 = (uint32_t)rid;
    c.w3 = stream | (uint32_t)((uint64_t)step >> 32) << 8 | (uint32_t)((uint64_t)rid >> 32) << 20;
    return c;
}

/* ------------------------------------------------------------------ Box-Muller, scalar */
static inline float log_open01(float u) {
    union { float f; int32_t i; } b = {u}, mb;
    int32_t e = (b.i >> 23) - 127;
    mb.i = (b.i & 0x7FFFFF) | 0x3F800000;
    float m = mb.f;
    if (m > F(1.41421356)) { m = m * F(0.5); e += 1; }
    float ef = (float)e;
    float x = m - F(1.0);
    float z = x * x;
    float y = x * F(7.0376836292e-2);
    y = (y + F(-1.1514610310e-1)) * x;
    y = (y + F(1.1676998740e-1)) * x;
    y = (y + F(-1.2420140846e-1)) * x;
    y = (y + F(1.4249322787e-1)) * x;
    y = (y + F(-1.6668057665e-1)) * x;
    y = (y + F(2.0000714765e-1)) * x;
    y = (y + F(-2.4999993993e-1)) * x;
    y = y + F(3.3333331174e-1);
    y = (y * x) * z;
    y = y + ef * F(-2.12194440e-4);
    y = y - z * F(0.5);
    return (x + y) + ef * F(0.693359375);
}

static inline float radius_scalar(uint32_t bits) {
    uint32_t odd = ((bits >> 9) << 1) | 1u;
    float u = (float)(int32_t)odd * F(5.9604644775390625e-08);
    return sqrtf(log_open01(u) * F(-2.0));
}

static inline void sincos_scalar(uint32_t bits, float *a_out, float *b_out) {
    uint32_t odd = ((bits >> 9) << 1) | 1u;
    float phi = ((float)(int32_t)odd * F(5.9604644775390625e-08)) * F(0.78539816339744830962);
    float z = phi * phi;
    float s = ((z * F(-1.9515295891e-4) + F(8.3321608736e-3)) * z - F(1.6666654611e-1));
    s = phi + (phi * z) * s;
    float c = (z * F(2.443315711809948e-5) - F(1.388731625493765e-3)) * z;
    c = c + F(4.166664568298827e-2);
    c = (F(1.0) - z * F(0.5)) + (z * z) * c;
    float a = (bits & 1u) ? s : c, b = (bits & 1u) ? c : s;
    if (bits & 2u) a = -a;
    if (bits & 4u) b = -b;
    *a_out = a; *b_out = b;
}

/* Normals of Philox blocks [b0, b1) into out[4*(b - b0) + j]. */
static void normal_blocks_scalar(uint64_t seed, ctr_t w, int64_t b0, int64_t b1, float *out) {
    for (int64_t b = b0; b < b1; b++) {
        uint32_t c[4] = {(uint32_t)b, w.w1, w.w2, w.w3};
        philox_scalar(c, seed);
        float ca, sa, cb, sb;
        sincos_scalar(c[1], &ca, &sa);
        sincos_scalar(c[3], &cb, &sb);
        float ra = radius_scalar(c[0]), rb = radius_scalar(c[2]);
        float *o = out + 4 * (b - b0);
        o[0] = ra * ca; o[1] = ra * sa; o[2] = rb * cb; o[3] = rb * sb;
    }
}

#ifdef NEGD_AVX2
/* ------------------------------------------------------------------ Box-Muller, AVX2 (same ops) */
static inline void mulhilo8(__m256i a, __m256i m, __m256i *hi, __m256i *lo) {
    __m256i pe = _mm256_mul_epu32(a, m);
    __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

static inline void philox8(__m256i c[4], uint64_t seed) {
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    const __m256i m0 = _mm256_set1_epi32((int)PH_M0), m1 = _mm256_set1_epi32((int)PH_M1);
    for (int r = 0; r < 10; r++) {
        __m256i hi0, lo0, hi1, lo1;
        mulhilo8(c[0], m0, &hi0, &lo0);
        mulhilo8(c[2], m1, &hi1, &lo1);
        __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c[1]), _mm256_set1_epi32((int)k0));
        __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c[3]), _mm256_set1_epi32((int)k1));
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
        k0 += PH_W0; k1 += PH_W1;
    }
}

static inline __m256 odd_uniform8(__m256i bits) {
    __m256i odd = _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(bits, 9), 1), _mm256_set1_epi32(1));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(odd), _mm256_set1_ps(F(5.9604644775390625e-08)));
}

#define S1(x) _mm256_set1_ps(F(x))
static inline __m256 radius8(__m256i bits) {
    __m256 u = odd_uniform8(bits);
    __m256i ub = _mm256_castps_si256(u);
    __m256i e = _mm256_sub_epi32(_mm256_srai_epi32(ub, 23), _mm256_set1_epi32(127));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(ub, _mm256_set1_epi32(0x7FFFFF)),
                                                   _mm256_set1_epi32(0x3F800000)));
    __m256 big = _mm256_cmp_ps(m, S1(1.41421356), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, S1(0.5)), big);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(big)); /* mask is -1 where big */
    __m256 ef = _mm256_cvtepi32_ps(e);
    __m256 x = _mm256_sub_ps(m, S1(1.0));
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_mul_ps(x, S1(7.0376836292e-2));
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(-1.1514610310e-1)), x);
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(1.1676998740e-1)), x);
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(-1.2420140846e-1)), x);
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(1.4249322787e-1)), x);
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(-1.6668057665e-1)), x);
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(2.0000714765e-1)), x);
    y = _mm256_mul_ps(_mm256_add_ps(y, S1(-2.4999993993e-1)), x);
    y = _mm256_add_ps(y, S1(3.3333331174e-1));
    y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
    y = _mm256_add_ps(y, _mm256_mul_ps(ef, S1(-2.12194440e-4)));
    y = _mm256_sub_ps(y, _mm256_mul_ps(z, S1(0.5)));
    __m256 lg = _mm256_add_ps(_mm256_add_ps(x, y), _mm256_mul_ps(ef, S1(0.693359375)));
    return _mm256_sqrt_ps(_mm256_mul_ps(lg, S1(-2.0)));
}

static inline void sincos8(__m256i bits, __m256 *a_out, __m256 *b_out) {
    __m256 phi = _mm256_mul_ps(odd_uniform8(bits), S1(0.78539816339744830962));
    __m256 z = _mm256_mul_ps(phi, phi);
    __m256 s = _mm256_add_ps(_mm256_mul_ps(z, S1(-1.9515295891e-4)), S1(8.3321608736e-3));
    s = _mm256_sub_ps(_mm256_mul_ps(s, z), S1(1.6666654611e-1));
    s = _mm256_add_ps(phi, _mm256_mul_ps(_mm256_mul_ps(phi, z), s));
    __m256 c = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(z, S1(2.443315711809948e-5)),
                                           S1(1.388731625493765e-3)), z);
    c = _mm256_add_ps(c, S1(4.166664568298827e-2));
    c = _mm256_add_ps(_mm256_sub_ps(S1(1.0), _mm256_mul_ps(z, S1(0.5))), _mm256_mul_ps(_mm256_mul_ps(z, z), c));
    const __m256i one = _mm256_set1_epi32(1);
    __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(bits, one), one));
    __m256 a = _mm256_blendv_ps(c, s, swap), b = _mm256_blendv_ps(s, c, swap);
    __m256i sa = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 1), one), 31);
    __m256i sb = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 2), one), 31);
    *a_out = _mm256_xor_ps(a, _mm256_castsi256_ps(sa));
    *b_out = _mm256_xor_ps(b, _mm256_castsi256_ps(sb));
}

/* 8 Philox blocks b0..b0+7 -> 32 normals in counter order. */
static inline void normal_group8(uint64_t seed, ctr_t w, int64_t b0, float *out) {
    __m256i c[4];
    c[0] = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)b0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    c[1] = _mm256_set1_epi32((int)w.w1);
    c[2] = _mm256_set1_epi32((int)w.w2);
    c[3] = _mm256_set1_epi32((int)w.w3);
    philox8(c, seed);
    __m256 ca, sa, cb, sb;
    sincos8(c[1], &ca, &sa);
    sincos8(c[3], &cb, &sb);
    __m256 ra = radius8(c[0]), rb = radius8(c[2]);
    __m256 A = _mm256_mul_ps(ra, ca), B = _mm256_mul_ps(ra, sa);
    __m256 C = _mm256_mul_ps(rb, cb), D = _mm256_mul_ps(rb, sb);
    /* transpose 4 x 8 -> a0 b0 c0 d0 a1 b1 c1 d1 ... */
    __m256 ab_lo = _mm256_unpacklo_ps(A, B), ab_hi = _mm256_unpackhi_ps(A, B);
    __m256 cd_lo = _mm256_unpacklo_ps(C, D), cd_hi = _mm256_unpackhi_ps(C, D);
    __m256 t0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(ab_lo), _mm256_castps_pd(cd_lo)));
    __m256 t1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(ab_lo), _mm256_castps_pd(cd_lo)));
    __m256 t2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(ab_hi), _mm256_castps_pd(cd_hi)));
    __m256 t3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(ab_hi), _mm256_castps_pd(cd_hi)));
    _mm256_storeu_ps(out + 0, _mm256_permute2f128_ps(t0, t1, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(t2, t3, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(t0, t1, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(t2, t3, 0x31));
}
#endif

/* n normals of counter words w into out; out must hold round_up(n, 32) floats. */
static void normals(uint64_t seed, ctr_t w, int64_t n, float *out) {
    int64_t nblocks = (n + 3) / 4;
#ifdef NEGD_AVX2
    for (int64_t b = 0; b < nblocks; b += 8) normal_group8(seed, w, b, out + 4 * b);
#else
    normal_blocks_scalar(seed, w, 0, nblocks, out);
#endif
}

/* Exactly n normals of counter words w into out (no padding needed: rows of a matrix). */
static void normals_exact(uint64_t seed, ctr_t w, int64_t n, float *out) {
    float tail[32];
    int64_t full = n / 32 * 32; /* normals written in place, 32 (8 blocks) at a time */
#ifdef NEGD_AVX2
    for (int64_t i = 0; i < full; i += 32) normal_group8(seed, w, i / 4, out + i);
    if (full < n) normal_group8(seed, w, full / 4, tail);
#else
    normal_blocks_scalar(seed, w, 0, full / 4, out);
    if (full < n) normal_blocks_scalar(seed, w, full / 4, (n + 3) / 4, tail);
#endif
    if (full < n) memcpy(out + full, tail, (size_t)(n - full) * sizeof(float));
}

static inline uint32_t uniform_bits(uint64_t seed, ctr_t w) {
    uint32_t c[4] = {0u, w.w1, w.w2, w.w3};
    philox_scalar(c, seed);
    return c[0];
}

/* ------------------------------------------------------------------ exported entry points */
#define ROUND32(n) (((n) + 31) / 32 * 32)

/* 7: negd_env_rollout_* (6: negd_fma_peak_*, negd_tanh_throughput_*; 5: negd_mlp_grad_*, negd_fused_langevin_*;
 * 4: arch has 7 entries, negd_elementwise_*). */
int negd_abi_version(void) { return 7; }

int negd_has_avx2(void) {
#ifdef NEGD_AVX2
    return 1;
#else
    return 0;
#endif
}

/* Counters of a call: 0 when in range, else NEGD_BAD_REALIZATION / NEGD_BAD_STEP / NEGD_BAD_STREAM
 * (1 is "out of memory" for the entry points that allocate). */
#define NEGD_BAD_REALIZATION 2
#define NEGD_BAD_STEP 3
#define NEGD_BAD_STREAM 4
#define NEGD_BAD_ARCH 5 /* an activation, loss or op code this build does not know */
static int check_counters(const int64_t *rid, int64_t R, const int64_t *steps, int64_t steps_len,
                          int32_t stream) {
    if (stream < 0 || stream >= STREAM_LIMIT) return NEGD_BAD_STREAM;
    for (int64_t r = 0; r < R; r++)
        if (rid[r] < 0 || rid[r] >= COUNTER_LIMIT) return NEGD_BAD_REALIZATION;
    for (int64_t r = 0; r < steps_len; r++)
        if (steps[r] < 0 || steps[r] >= COUNTER_LIMIT) return NEGD_BAD_STEP;
    return 0;
}

/* normals [R, n] of negd.rng.normal: row r at steps[r] (steps_len R) or steps[0] (steps_len 1).
 * Checks the counters first (returns check_counters' code, nothing written). Parallel over rows
 * when there is enough work; each row is computed alone, so the thread count changes nothing. */
int negd_normal_rows(uint64_t seed, const int64_t *rid, int64_t R, const int64_t *steps, int64_t steps_len,
                     int64_t n, int32_t stream, float *out, int nthreads) {
    int err = check_counters(rid, R, steps, steps_len, stream);
    if (err) return err;
    /* threads only for big calls (>= 2^20 normals, ~2 ms): small ones (a Langevin step) run between
     * torch ops, whose own OpenMP pool would compete with ours for the cores */
    const int parallel = nthreads > 1 && R > 1 && R * n >= (INT64_C(1) << 20);
#pragma omp parallel for schedule(static) num_threads(nthreads > 0 ? nthreads : 1) if (parallel)
    for (int64_t r = 0; r < R; r++) {
        int64_t step = steps[steps_len == 1 ? 0 : r];
        normals_exact(seed, counter_words(step, rid[r], (uint32_t)stream), n, out + r * n);
    }
    return 0;
}

/* uniforms [R] of negd.rng.uniform, same conventions as negd_normal_rows. */
int negd_uniform_rows(uint64_t seed, const int64_t *rid, int64_t R, const int64_t *steps, int64_t steps_len,
                      int32_t stream, double *out) {
    int err = check_counters(rid, R, steps, steps_len, stream);
    if (err) return err;
    for (int64_t r = 0; r < R; r++) {
        int64_t step = steps[steps_len == 1 ? 0 : r];
        out[r] = (double)uniform_bits(seed, counter_words(step, rid[r], (uint32_t)stream)) * 0x1p-32;
    }
    return 0;
}

/* CPU time of the calling thread (the machine-limit probes of negd_mlp.h). */
static double thread_cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
volatile double negd_limit_sink; /* where the probes leave a result, so that their work is kept */

/* Realizations per chunk of the dynamic schedule: about 8 chunks per thread (a late thread costs
 * the others at most ~1/8 of its share; more chunks would only add scheduling and false sharing). */
static inline int realization_chunk(int64_t R, int nthreads) {
    int64_t chunk = R / (8 * (int64_t)(nthreads > 0 ? nthreads : 1));
    return chunk < 1 ? 1 : (int)chunk;
}

/* ------------------------------------------------------------------ the MLP kernels, float32 and float64 */
#define BLK_V 6          /* vectors of points per block of the generic path */
#define BLK (BLK_V * VL) /* points per block */
#define SHALLOW_NV 4     /* point vectors per register block of the shallow path */
/* Register tile of the dense layers (negd_mlp.h): TILE_MO outputs x TILE_NV point vectors, TILE_MO *
 * TILE_NV accumulators + TILE_NV inputs + 1 weight registers: 28 of the 32 vector registers that
 * AVX-512VL gives 256-bit code, 16 of 16 with plain AVX2. */
#ifdef __AVX512VL__
#define TILE_MO 8
#else
#define TILE_MO 4
#endif
#define TILE_NV 3

/* Codes of arch[5] (hidden activation) and arch[6] (loss): negd.kernels.ACTIVATIONS / LOSSES. */
enum { ACT_IDENTITY = 0, ACT_TANH = 1, ACT_RELU = 2, ACT_GELU = 3, N_ACTIVATIONS = 4 };
#define OP_ERF N_ACTIVATIONS /* negd_elementwise's extra op: erf */
enum { LOSS_MSE = 0, LOSS_XENT = 1 };

/* ---- float32 parameters: 8 points per AVX2 register, Eigen's rational tanh */
#include "negd_vec_f32.h"
#include "negd_mlp.h"
#include "negd_grad.h"
#define NEGD_ENV_F64 0
#include "negd_env.h"
#undef NEGD_ENV_F64
#undef REAL
#undef FN
#undef VL
#undef vset1
#undef vzero
#undef vload
#undef vstore
#undef vsub
#undef vmul
#undef vfma
#undef vmin
#undef vmax
#undef vdiv
#undef vadd
#undef vsel
#undef vceq
#undef vclt
#undef visnan
#undef vabs
#undef vcopysign

/* ---- float64 parameters: 4 points per AVX2 register, tanh to double precision */
#include "negd_vec_f64.h"
#include "negd_mlp.h"
#include "negd_grad.h"
#define NEGD_ENV_F64 1
#include "negd_env.h"
#undef NEGD_ENV_F64

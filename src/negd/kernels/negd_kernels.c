/* Fused neuroevolution of tanh MLP ensembles on CPU (negd.kernels).
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
 * Forward pass: float32, vectorized over points (8 per AVX2 register), with a clamped
 * rational tanh (the [13/6] minimax approximation used by Eigen). Loss: mean of float32
 * squared errors, accumulated in double.
 *
 * Every realization is computed by one thread from start to end of a call (static partition),
 * and nothing it computes depends on the other realizations: results are independent of the
 * thread count and of how the ensemble is split into calls.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

/* ------------------------------------------------------------------ vector layer for the forward pass */
#ifdef NEGD_AVX2
typedef __m256 vf;
#define VL 8
#define vset1(x) _mm256_set1_ps(x)
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps((p), (v))
#define vadd(a, b) _mm256_add_ps(a, b)
#define vsub(a, b) _mm256_sub_ps(a, b)
#define vmul(a, b) _mm256_mul_ps(a, b)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
/* min(c, x) / max(c, x) return x when x is NaN, so NaN propagates through the clamp */
#define vmin(c, x) _mm256_min_ps(c, x)
#define vmax(c, x) _mm256_max_ps(c, x)
#define vdiv(a, b) _mm256_div_ps(a, b)
#else
typedef float vf;
#define VL 1
#define vset1(x) (x)
#define vzero() 0.0f
#define vload(p) (*(p))
#define vstore(p, v) (*(p) = (v))
#define vadd(a, b) ((a) + (b))
#define vsub(a, b) ((a) - (b))
#define vmul(a, b) ((a) * (b))
#define vfma(a, b, c) fmaf(a, b, c)
#define vmin(c, x) ((c) < (x) ? (c) : (x))
#define vmax(c, x) ((c) > (x) ? (c) : (x))
#define vdiv(a, b) ((a) / (b))
#endif

/* tanh: clamp to +-7.9053 (where tanh rounds to 1 in float32), then the odd [13/6] rational
 * minimax approximation of Eigen's generic_fast_tanh_float. */
static inline __attribute__((always_inline)) vf vtanh(vf x) {
    x = vmin(vset1(7.90531110763549805f), x);
    x = vmax(vset1(-7.90531110763549805f), x);
    vf x2 = vmul(x, x);
    vf p = vfma(x2, vset1(-2.76076847742355e-16f), vset1(2.00018790482477e-13f));
    p = vfma(x2, p, vset1(-8.60467152213735e-11f));
    p = vfma(x2, p, vset1(5.12229709037114e-08f));
    p = vfma(x2, p, vset1(1.48572235717979e-05f));
    p = vfma(x2, p, vset1(6.37261928875436e-04f));
    p = vfma(x2, p, vset1(4.89352455891786e-03f));
    p = vmul(x, p);
    vf q = vfma(x2, vset1(1.19825839466702e-06f), vset1(1.18534705686654e-04f));
    q = vfma(x2, q, vset1(2.26843463243900e-03f));
    q = vfma(x2, q, vset1(4.89352518554385e-03f));
    return vdiv(p, q);
}

/* ------------------------------------------------------------------ network description */
typedef struct {
    int depth, width, in_f, out_f, out_bias;
    int64_t P;        /* valid points */
    int64_t ld;       /* padded points (multiple of VL and of 8): row stride of x and t */
    const float *x;   /* inputs, feature-major [in_f][ld], zero padded */
    const float *t;   /* targets [out_f][ld], zero padded */
} net_t;

#define BLK_V 6          /* vectors of points per block of the generic path */
#define BLK (BLK_V * VL) /* points per block */

/* Sum of squared errors of one vector of outputs (lanes >= valid are ignored). */
static inline __attribute__((always_inline)) void acc_sq(vf y, const float *t, int valid,
                                                         double *acc4) {
    vf d = vsub(y, vload(t));
    vf sq = vmul(d, d);
#ifdef NEGD_AVX2
    if (valid < 8) {
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane));
        sq = _mm256_and_ps(sq, keep);
    }
    __m256d a = _mm256_loadu_pd(acc4);
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    _mm256_storeu_pd(acc4, a);
#else
    if (valid > 0) acc4[0] += (double)sq;
#endif
}

/* Shallow net 1 -> H (tanh) -> 1: every hidden unit of NV point vectors in registers. */
#define SHALLOW_NV 4
static double shallow_sse(const net_t *net, const float *p) {
    const int H = net->width;
    const float *w1 = p, *b1 = p + H, *w2 = p + 2 * H;
    const float b2 = net->out_bias ? p[3 * H] : 0.0f;
    const int64_t nv = net->ld / VL;
    double acc4[4] = {0, 0, 0, 0};
    int64_t v = 0;
    for (; v + SHALLOW_NV <= nv; v += SHALLOW_NV) {
        vf x[SHALLOW_NV], y[SHALLOW_NV];
        for (int k = 0; k < SHALLOW_NV; k++) { x[k] = vload(net->x + (v + k) * VL); y[k] = vset1(b2); }
        for (int j = 0; j < H; j++) {
            vf w = vset1(w1[j]), b = vset1(b1[j]), o = vset1(w2[j]);
            for (int k = 0; k < SHALLOW_NV; k++) y[k] = vfma(o, vtanh(vfma(w, x[k], b)), y[k]);
        }
        for (int k = 0; k < SHALLOW_NV; k++) {
            int64_t valid = net->P - (v + k) * VL;
            acc_sq(y[k], net->t + (v + k) * VL, valid < VL ? (int)valid : VL, acc4);
        }
    }
    for (; v < nv; v++) {
        vf x = vload(net->x + v * VL), y = vset1(b2);
        for (int j = 0; j < H; j++) y = vfma(vset1(w2[j]), vtanh(vfma(vset1(w1[j]), x, vset1(b1[j]))), y);
        int64_t valid = net->P - v * VL;
        acc_sq(y, net->t + v * VL, valid < VL ? (int)valid : VL, acc4);
    }
    return (acc4[0] + acc4[1]) + (acc4[2] + acc4[3]);
}

/* One register tile of a dense layer: MO outputs x NV point vectors. */
static inline __attribute__((always_inline)) void dense_tile(
        const int MO, const int NV, const float *W, int fan_in, const float *bias,
        const float *hin, int64_t ld_in, float *hout, int64_t ld_out, int act) {
    vf acc[4][3];
    for (int m = 0; m < MO; m++)
        for (int k = 0; k < NV; k++) acc[m][k] = bias ? vset1(bias[m]) : vzero();
    for (int i = 0; i < fan_in; i++) {
        vf h[3];
        for (int k = 0; k < NV; k++) h[k] = vload(hin + i * ld_in + k * VL);
#ifdef NEGD_AVX2
        /* keep the NV input vectors in registers: otherwise gcc re-loads them in every FMA
         * (MO times as many loads, and the tile becomes load bound) */
        if (NV == 3) __asm__("" : "+x"(h[0]), "+x"(h[1]), "+x"(h[2]));
#endif
        for (int m = 0; m < MO; m++) {
            vf w = vset1(W[(int64_t)m * fan_in + i]);
            for (int k = 0; k < NV; k++) acc[m][k] = vfma(w, h[k], acc[m][k]);
        }
    }
    for (int m = 0; m < MO; m++)
        for (int k = 0; k < NV; k++) vstore(hout + m * ld_out + k * VL, act ? vtanh(acc[m][k]) : acc[m][k]);
}

/* hout[o][0:nv*VL] = act(W hin + b) for a block of nv point vectors. */
static void dense(const float *W, const float *bias, int fan_in, int fan_out, const float *hin,
                  int64_t ld_in, float *hout, int64_t ld_out, int nv, int act) {
    int o = 0;
    for (; o + 4 <= fan_out; o += 4) {
        const float *Wo = W + (int64_t)o * fan_in, *bo = bias ? bias + o : NULL;
        int k = 0;
        for (; k + 3 <= nv; k += 3)
            dense_tile(4, 3, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
        for (; k < nv; k++)
            dense_tile(4, 1, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
    }
    for (; o < fan_out; o++) {
        const float *Wo = W + (int64_t)o * fan_in, *bo = bias ? bias + o : NULL;
        int k = 0;
        for (; k + 3 <= nv; k += 3)
            dense_tile(1, 3, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
        for (; k < nv; k++)
            dense_tile(1, 1, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
    }
}

/* Generic MLP; scratch holds 2 * max(width, out_f) * BLK floats. */
static double generic_sse(const net_t *net, const float *p, float *scratch) {
    const int wmax = net->width > net->out_f ? net->width : net->out_f;
    float *buf[2] = {scratch, scratch + (int64_t)wmax * BLK};
    const int64_t nv_all = net->ld / VL;
    double acc4[4] = {0, 0, 0, 0};
    for (int64_t v0 = 0; v0 < nv_all; v0 += BLK_V) {
        int nv = (int)(nv_all - v0 < BLK_V ? nv_all - v0 : BLK_V);
        const float *hin = net->x + v0 * VL;
        int64_t ld_in = net->ld;
        const float *q = p;
        int fan_in = net->in_f;
        for (int layer = 0; layer <= net->depth; layer++) {
            int last = layer == net->depth;
            int fan_out = last ? net->out_f : net->width;
            int has_bias = last ? net->out_bias : 1;
            const float *W = q, *b = has_bias ? q + (int64_t)fan_in * fan_out : NULL;
            q += (int64_t)fan_in * fan_out + (has_bias ? fan_out : 0);
            float *hout = buf[layer & 1];
            dense(W, b, fan_in, fan_out, hin, ld_in, hout, BLK, nv, !last);
            hin = hout; ld_in = BLK; fan_in = fan_out;
        }
        for (int o = 0; o < net->out_f; o++)
            for (int k = 0; k < nv; k++) {
                int64_t valid = net->P - (v0 + k) * VL;
                acc_sq(vload(hin + o * BLK + k * VL), net->t + o * net->ld + (v0 + k) * VL,
                       valid < VL ? (int)valid : VL, acc4);
            }
    }
    return (acc4[0] + acc4[1]) + (acc4[2] + acc4[3]);
}

static inline int is_shallow(const net_t *net) {
    return net->depth == 1 && net->in_f == 1 && net->out_f == 1;
}

static inline float net_loss(const net_t *net, const float *p, float *scratch) {
    double sse = is_shallow(net) ? shallow_sse(net, p) : generic_sse(net, p, scratch);
    return (float)(sse / ((double)net->P * (double)net->out_f));
}

static int64_t scratch_floats(const net_t *net) {
    const int wmax = net->width > net->out_f ? net->width : net->out_f;
    return 2 * (int64_t)wmax * BLK;
}

static void net_from(net_t *net, const int32_t *arch, int64_t P, int64_t ld, const float *x, const float *t) {
    net->depth = arch[0]; net->width = arch[1]; net->in_f = arch[2]; net->out_f = arch[3];
    net->out_bias = arch[4]; net->P = P; net->ld = ld; net->x = x; net->t = t;
}

/* ------------------------------------------------------------------ exported entry points */
#define ROUND32(n) (((n) + 31) / 32 * 32)

int negd_abi_version(void) { return 2; }

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

void negd_tanh(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vtanh(vload(x + i)));
    for (; i < n; i++) {
        float a[VL] = {0}, b[VL];
        a[0] = x[i];
        vstore(b, vtanh(vload(a)));
        y[i] = b[0];
    }
}

int negd_mlp_loss(const int32_t *arch, int64_t P, int64_t ld, const float *x, const float *t,
                  const float *params, int64_t R, int64_t N, float *loss, int nthreads) {
    net_t net;
    net_from(&net, arch, P, ld, x, t);
    int err = 0;
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1)
    {
        float *scratch = aligned_alloc(32, scratch_floats(&net) * sizeof(float));
        if (!scratch) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < R; r++) loss[r] = net_loss(&net, params + r * N, scratch);
        }
        free(scratch);
    }
    return err;
}

/* steps of neuroevolution of R realizations, in place on params [R,N] and loss [R].
 * sigma: one float (sigma_len 1) or N floats. beta: > 0, INFINITY for zero temperature. */
int negd_fused_ne(const int32_t *arch, int64_t P, int64_t ld, const float *x, const float *t,
                  float *params, float *loss, uint8_t *accepted, int64_t *counts, const int64_t *rid,
                  int64_t R, int64_t N, uint64_t seed, int64_t step0, int64_t steps,
                  const float *sigma, int64_t sigma_len, double beta, int nthreads) {
    /* counters: realizations in range, steps step0 .. step0 + steps - 1 in [0, 2^44) */
    if (steps < 0 || step0 < 0 || step0 > COUNTER_LIMIT - steps) return NEGD_BAD_STEP;
    int bad = check_counters(rid, R, NULL, 0, 0);
    if (bad) return bad;
    net_t net;
    net_from(&net, arch, P, ld, x, t);
    const int zero_temperature = isinf(beta);
    int err = 0;
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1)
    {
        float *scratch = aligned_alloc(32, scratch_floats(&net) * sizeof(float));
        float *z = aligned_alloc(32, ROUND32(N) * sizeof(float));
        float *prop = aligned_alloc(32, ROUND32(N) * sizeof(float));
        if (!scratch || !z || !prop) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < R; r++) {
                float *p = params + r * N;
                float old = loss[r];
                int64_t count = 0;
                uint8_t last = accepted[r];
                for (int64_t s = 0; s < steps; s++) {
                    /* words 1..3 per step: the high step bits enter word 3 past 2^32 steps */
                    const ctr_t mutation = counter_words(step0 + s, rid[r], 0u);
                    normals(seed, mutation, N, z);
                    if (sigma_len == 1) {
                        const float sg = sigma[0];
                        for (int64_t i = 0; i < N; i++) prop[i] = p[i] + z[i] * sg;
                    } else {
                        for (int64_t i = 0; i < N; i++) prop[i] = p[i] + z[i] * sigma[i];
                    }
                    float fresh = net_loss(&net, prop, scratch);
                    /* negd.rules.metropolis_accept, in the same float64 arithmetic */
                    double d_u = (double)fresh - (double)old;
                    int downhill = d_u <= 0 || !isfinite(old);
                    int ok;
                    if (zero_temperature) {
                        ok = isfinite(fresh) && downhill;
                    } else {
                        double u = (double)uniform_bits(seed, counter_words(step0 + s, rid[r], 1u)) * 0x1p-32;
                        ok = isfinite(fresh) && (downhill || u < exp(-beta * d_u));
                    }
                    if (ok) {
                        memcpy(p, prop, N * sizeof(float));
                        old = fresh;
                        count++;
                    }
                    last = (uint8_t)ok;
                }
                loss[r] = old;
                counts[r] = count;
                accepted[r] = last;
            }
        }
        free(scratch); free(z); free(prop);
    }
    return err;
}

/* The float32 vector layer of the MLP kernels (included by negd_kernels.c before negd_mlp.h):
 * 8 points per AVX2 register (1 without AVX2/FMA), the macros and functions negd_mlp.h expects.
 */
#define REAL float
#define FN(name) name##_f32
#ifdef NEGD_AVX2
typedef __m256 vf;
#define VL 8
#define vset1(x) _mm256_set1_ps(x)
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps((p), (v))
#define vsub(a, b) _mm256_sub_ps(a, b)
#define vmul(a, b) _mm256_mul_ps(a, b)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
/* min(c, x) / max(c, x) return x when x is NaN, so NaN propagates through the clamp */
#define vmin(c, x) _mm256_min_ps(c, x)
#define vmax(c, x) _mm256_max_ps(c, x)
#define vdiv(a, b) _mm256_div_ps(a, b)
#define vadd(a, b) _mm256_add_ps(a, b)
#define vsel(mask, a, b) _mm256_blendv_ps(b, a, mask) /* a where mask, else b */
#define vceq(a, b) _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
#define vclt(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define visnan(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define vabs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define vcopysign(mag, sgn) _mm256_or_ps(vabs(mag), _mm256_and_ps(_mm256_set1_ps(-0.0f), sgn))
#else
typedef float vf;
#define VL 1
#define vset1(x) (x)
#define vzero() 0.0f
#define vload(p) (*(p))
#define vstore(p, v) (*(p) = (v))
#define vsub(a, b) ((a) - (b))
#define vmul(a, b) ((a) * (b))
#define vfma(a, b, c) fmaf(a, b, c)
#define vmin(c, x) ((c) < (x) ? (c) : (x))
#define vmax(c, x) ((c) > (x) ? (c) : (x))
#define vdiv(a, b) ((a) / (b))
#define vadd(a, b) ((a) + (b))
#define vsel(mask, a, b) ((mask) ? (a) : (b))
#define vceq(a, b) ((a) == (b))
#define vclt(a, b) ((a) < (b))
#define visnan(a) ((a) != (a))
#define vabs(a) fabsf(a)
#define vcopysign(mag, sgn) copysignf(mag, sgn)
#endif

/* tanh: clamp to +-7.9053 (where tanh rounds to 1 in float32), then the odd [13/6] rational
 * minimax approximation of Eigen's generic_fast_tanh_float. */
static inline __attribute__((always_inline)) vf vtanh_f32(vf x) {
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

#ifdef NEGD_AVX2
/* exp(x) for x <= 0 (softmax terms, erf's exp(-x^2)): x = n ln 2 + r (|r| <= ln2/2, Cody-Waite split
 * of ln 2), exp(r) by its Taylor polynomial of degree 7 (truncation < 6e-9), times 2^n built in the
 * exponent bits. Below -87, where exp leaves the normal floats, exp(-87) ~ 1.6e-38 stands in. */
static inline __attribute__((always_inline)) vf vexp_neg_f32(vf x) {
    x = vmax(vset1(-87.0f), x);
    vf n = _mm256_round_ps(vmul(x, vset1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf r = vfma(n, vset1(-0.693359375f), x);
    r = vfma(n, vset1(2.12194440e-4f), r);
    vf p = vset1(1.0f / 5040.0f);
    p = vfma(p, r, vset1(1.0f / 720.0f));
    p = vfma(p, r, vset1(1.0f / 120.0f));
    p = vfma(p, r, vset1(1.0f / 24.0f));
    p = vfma(p, r, vset1(1.0f / 6.0f));
    p = vfma(p, r, vset1(0.5f));
    p = vfma(p, r, vset1(1.0f));
    p = vfma(p, r, vset1(1.0f));
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return vmul(p, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
}

/* log(x) for positive normal x (a softmax denominator, in [1, classes]): x = 2^e m with
 * m in [sqrt(1/2), sqrt 2), log m = 2 atanh(u), u = (m - 1)/(m + 1), |u| < 0.172, by its series to u^9
 * (truncation < 3e-9). NaN in, NaN out. */
static inline __attribute__((always_inline)) vf vlog_f32(vf x) {
    __m256i bits = _mm256_castps_si256(x);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
    vf m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFF)),
                                               _mm256_set1_epi32(0x3F800000)));
    vf big = _mm256_cmp_ps(m, vset1(1.41421356f), _CMP_GT_OQ);
    m = vsel(big, vmul(m, vset1(0.5f)), m);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(big)); /* mask is -1 where big */
    vf ef = _mm256_cvtepi32_ps(e);
    vf u = vdiv(vsub(m, vset1(1.0f)), vadd(m, vset1(1.0f)));
    vf u2 = vmul(u, u);
    vf p = vfma(u2, vset1(1.0f / 9.0f), vset1(1.0f / 7.0f));
    p = vfma(u2, p, vset1(1.0f / 5.0f));
    p = vfma(u2, p, vset1(1.0f / 3.0f));
    p = vfma(u2, p, vset1(1.0f));
    vf log_m = vmul(vadd(u, u), p);
    vf y = vfma(ef, vset1(0.693359375f), vfma(ef, vset1(-2.12194440e-4f), log_m));
    return vsel(visnan(x), x, y);
}
#else
static inline float vexp_neg_f32(float x) { return expf(x); }
static inline float vlog_f32(float x) { return logf(x); }
#endif

/* erf, odd: for |x| < 1, x P(x^2); for 1 <= |x| < 4, 1 - exp(-x^2) Q(1/|x|); 1 beyond (erf(4) rounds
 * to 1 in float32). P and Q are least-squares polynomial fits, in double then rounded to float, of
 * erf(x)/x on [0, 1] (relative error 6e-8) and of erfc(x) exp(x^2) on [1, 4] (relative error 1e-7
 * of erfc <= 0.16, so <= 2e-8 of erf). Both branches are computed and blended per lane. */
static inline __attribute__((always_inline)) vf verf_f32(vf x) {
    vf a = vmin(vset1(4.0f), vabs(x));
    vf z = vmul(a, a);
    vf p = vfma(z, vset1(-5.654006963595748e-4f), vset1(4.923252854496241e-3f));
    p = vfma(z, p, vset1(-2.6716362684965134e-2f));
    p = vfma(z, p, vset1(1.128036379814148e-1f));
    p = vfma(z, p, vset1(-3.7612348794937134e-1f));
    p = vfma(z, p, vset1(1.1283791065216064f));
    vf small = vmul(a, p);
    vf t = vdiv(vset1(1.0f), a);
    vf q = vfma(t, vset1(3.0003288760781288e-2f), vset1(-1.7511147260665894e-1f));
    q = vfma(t, q, vset1(4.255220890045166e-1f));
    q = vfma(t, q, vset1(-5.172089338302612e-1f));
    q = vfma(t, q, vset1(2.193545401096344e-1f));
    q = vfma(t, q, vset1(2.4212253093719482e-1f));
    q = vfma(t, q, vset1(-3.805201053619385e-1f));
    q = vfma(t, q, vset1(2.1681811660528183e-2f));
    q = vfma(t, q, vset1(5.616093873977661e-1f));
    q = vfma(t, q, vset1(1.3047966058366e-4f));
    vf large = vsub(vset1(1.0f), vmul(vexp_neg_f32(vsub(vzero(), z)), q));
    return vcopysign(vsel(vclt(a, vset1(1.0f)), small, large), x);
}

/* Add the lanes < valid of one vector to 4 doubles (each lane widened exactly). */
static inline __attribute__((always_inline)) void acc_sum_f32(vf v, int valid, double *acc4) {
#ifdef NEGD_AVX2
    if (valid < 8) {
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane));
        v = _mm256_and_ps(v, keep);
    }
    __m256d a = _mm256_loadu_pd(acc4);
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    _mm256_storeu_pd(acc4, a);
#else
    if (valid > 0) acc4[0] += (double)v;
#endif
}


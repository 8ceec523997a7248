/* The float64 vector layer of the MLP kernels (included by negd_kernels.c before negd_mlp.h):
 * 4 points per AVX2 register (1 without AVX2/FMA), the macros and functions negd_mlp.h expects.
 */
#define REAL double
#define FN(name) name##_f64
#ifdef NEGD_AVX2
typedef __m256d vd;
#define vf vd
#define VL 4
#define vset1(x) _mm256_set1_pd(x)
#define vzero() _mm256_setzero_pd()
#define vload(p) _mm256_loadu_pd(p)
#define vstore(p, v) _mm256_storeu_pd((p), (v))
#define vsub(a, b) _mm256_sub_pd(a, b)
#define vmul(a, b) _mm256_mul_pd(a, b)
#define vfma(a, b, c) _mm256_fmadd_pd(a, b, c)
#define vmin(c, x) _mm256_min_pd(c, x)
#define vmax(c, x) _mm256_max_pd(c, x)
#define vdiv(a, b) _mm256_div_pd(a, b)
#define vadd(a, b) _mm256_add_pd(a, b)
#define vsel(mask, a, b) _mm256_blendv_pd(b, a, mask) /* a where mask, else b */
#define vceq(a, b) _mm256_cmp_pd(a, b, _CMP_EQ_OQ)
#define vclt(a, b) _mm256_cmp_pd(a, b, _CMP_LT_OQ)
#define visnan(a) _mm256_cmp_pd(a, a, _CMP_UNORD_Q)

/* exp(y) for -708 <= y <= 709 as exp(r) and 2^n: y = n ln 2 + r (|r| <= ln2/2, Cody-Waite split of
 * ln 2), exp(r) by its Taylor polynomial of degree 12 (truncation < 2e-16) returned, 2^n built in the
 * exponent bits into *scale. */
static inline __attribute__((always_inline)) vd vexp_parts_f64(vd y, vd *scale) {
    vd n = _mm256_round_pd(vmul(y, vset1(1.4426950408889634)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = y - n ln2 in two fused steps (each exact but for one rounding: fewer operations than
     * multiply-then-subtract, and no less accurate) */
    vd r = _mm256_fnmadd_pd(n, vset1(6.93145751953125e-1), y);
    r = _mm256_fnmadd_pd(n, vset1(1.42860682030941723212e-6), r);
    vd s = vset1(1.0 / 479001600.0);                      /* 1/12! */
    static const double inv_fact[12] = {1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                                        1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0,
                                        0.5, 1.0, 1.0};
    for (int k = 0; k < 12; k++) s = vfma(s, r, vset1(inv_fact[k]));
    __m256i e = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
    *scale = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(e, _mm256_set1_epi64x(1023)), 52));
    return s;
}

/* exp(y) for -708 <= y <= 709 (vexp_parts_f64 times its scale). */
static inline __attribute__((always_inline)) vd vexp_f64(vd y) {
    vd scale;
    vd s = vexp_parts_f64(y, &scale);
    return vmul(s, scale);
}

/* 2^(j/16), j = 0..15: the doubles nearest them */
static const double negd_exp2_sixteenths[16] __attribute__((aligned(64))) = {
    1.0, 1.0442737824274138, 1.0905077326652577, 1.1387886347566916, 1.189207115002721, 1.241857812073484,
    1.2968395546510096, 1.3542555469368927, 1.4142135623730951, 1.4768261459394993, 1.5422108254079407,
    1.6104903319492543, 1.681792830507429, 1.7562521603732995, 1.8340080864093424, 1.9152065613971474};

/* 2^(n/16) for integer-valued n (|n| < 2^31; the result a normal double): the table entry
 * 2^((n mod 16)/16), its exponent raised by floor(n/16) in the integer bits. With AVX-512 the table
 * sits in two zmm registers (one vpermt2pd: ~1 cycle, where a 4-lane gather costs ~6 on Zen 4);
 * plain AVX2 gathers it. The entry is the same either way, so both builds give the same bits
 * (tests/test_kernel_prebuilt.py). */
static inline __attribute__((always_inline)) vd vexp2_sixteenths_f64(vd n) {
    /* n + 1.5 * 2^52 holds n (two's complement) in its low mantissa bits: n mod 16 in the low 4,
     * the exponent step is (n >> 4) << 52 */
    __m256i bits = _mm256_castpd_si256(vadd(n, vset1(6755399441055744.0)));
    __m256i step = _mm256_slli_epi64(_mm256_srli_epi64(bits, 4), 52);
#if defined(__AVX512F__) && defined(__AVX512VL__)
    vd entry = _mm512_castpd512_pd256(_mm512_permutex2var_pd(_mm512_load_pd(negd_exp2_sixteenths),
                                                              _mm512_castsi256_si512(bits),
                                                              _mm512_load_pd(negd_exp2_sixteenths + 8)));
#else
    vd entry = _mm256_i64gather_pd(negd_exp2_sixteenths, _mm256_and_si256(bits, _mm256_set1_epi64x(15)), 8);
#endif
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(entry), step));
}

/* tanh(a) for 0.625 <= a <= 22 (and NaN: NaN) as 1 - 2/(e + 1), e = exp(2a): a = n ln2/32 + r with
 * n = round(32 a / ln2), |r| <= ln2/64 (ln2/32 split in a 42-bit head, exact times n < 2^11, and a
 * tail), e = 2^(n/16) (1 + q) with q = expm1(2r) by its Taylor polynomial of degree 7 in 2r
 * (truncation < 2e-18; Estrin's scheme, a short dependency chain). For a >= 0.625 the subtraction
 * cannot cancel (tanh >= 0.55) and an error in e shrinks by 2e/((e + 1)^2 tanh) <= 0.62: ~2.5 ulp of
 * tanhl at worst (near a = 0.64), with half the operations of the degree-12 exp. */
static inline __attribute__((always_inline)) vd vtanh_large_f64(vd a) {
    const vd shifter = vset1(6755399441055744.0); /* 1.5 * 2^52: adding it rounds to an integer */
    vd n = vsub(vfma(a, vset1(46.16624130844683), shifter), shifter);
    vd r = _mm256_fnmadd_pd(n, vset1(0.021660849392496573), a); /* exact */
    r = _mm256_fnmadd_pd(n, vset1(1.718100943346366e-15), r);
    /* q = 2r + r^2 P(r), P_k = 2^(k+2) / (k+2)! */
    vd r2 = vmul(r, r), r4 = vmul(r2, r2);
    vd p01 = vfma(r, vset1(1.3333333333333333), vset1(2.0));
    vd p23 = vfma(r, vset1(0.26666666666666666), vset1(0.6666666666666666));
    vd p45 = vfma(r, vset1(0.025396825396825397), vset1(0.08888888888888889));
    vd q = vfma(r2, vfma(r4, p45, vfma(r2, p23, p01)), vadd(r, r));
    vd s = vexp2_sixteenths_f64(n);
    vd den = vfma(s, q, vadd(s, vset1(1.0))); /* e + 1 */
    return vsub(vset1(1.0), vdiv(vset1(2.0), den));
}

/* tanh(x) = sign(x) t(|x|), |x| clamped at 22 (tanh(22) rounds to 1): for |x| < 0.625 the Cephes
 * rational form |x| + |x| z P(z)/Q(z) (z = x^2), else vtanh_large_f64; a vector with lanes on both
 * sides computes both and blends. Within ~2.5 ulp of tanhl (tests/test_kernels.py). */
static inline __attribute__((always_inline)) vd vtanh_f64(vd x) {
    const vd sign_bit = vset1(-0.0);
    vd sign = _mm256_and_pd(x, sign_bit);
    vd a = vmin(vset1(22.0), _mm256_andnot_pd(sign_bit, x));
    vd small = _mm256_cmp_pd(a, vset1(0.625), _CMP_LT_OQ);
    const int n_small = __builtin_popcount(_mm256_movemask_pd(small));
    vd t_small = vzero();
    if (n_small) { /* the rational branch, its own divide */
        vd z = vmul(a, a);
        vd p = vfma(vfma(vset1(-9.64399179425052238628e-1), z, vset1(-9.92877231001918586564e1)), z,
                    vset1(-1.61468768441708447952e3));
        vd q = vfma(vfma(_mm256_add_pd(z, vset1(1.12811678491632931402e2)), z, vset1(2.23548839060100448583e3)),
                    z, vset1(4.84406305325125486048e3));
        t_small = _mm256_add_pd(a, vdiv(vmul(vmul(a, z), p), q)); /* bit for bit as before 8a3ecad */
        if (n_small == 4) return _mm256_or_pd(t_small, sign);
    }
    return _mm256_or_pd(_mm256_blendv_pd(vtanh_large_f64(a), t_small, small), sign);
}

/* exp(x) for x <= 0 (softmax terms); below -708, where exp leaves the normal doubles, exp(-708); NaN
 * in, NaN out. x = n ln2/16 + r with n = round(16 x / ln2), |r| <= ln2/32 (ln2/16 split in a 38-bit
 * head, exact times |n| < 2^15, and a tail), exp(x) = 2^(n/16) (1 + q) with q = expm1(r) by its
 * Taylor polynomial of degree 7 (truncation < 2e-18; Estrin's scheme): 2 roundings and the table
 * entry's, within ~1 ulp, in 13 vector operations where the degree-12 exp takes 19. */
static inline __attribute__((always_inline)) vd vexp_neg_f64(vd x) {
    x = vmax(vset1(-708.0), x);
    const vd shifter = vset1(6755399441055744.0);
    vd n = vsub(vfma(x, vset1(23.083120654223414), shifter), shifter);
    vd r = _mm256_fnmadd_pd(n, vset1(0.04332169878489367), x); /* exact */
    r = _mm256_fnmadd_pd(n, vset1(1.0291218489310676e-13), r);
    vd r2 = vmul(r, r), r4 = vmul(r2, r2);
    vd p01 = vfma(r, vset1(1.0 / 6.0), vset1(0.5));
    vd p23 = vfma(r, vset1(1.0 / 120.0), vset1(1.0 / 24.0));
    vd p45 = vfma(r, vset1(1.0 / 5040.0), vset1(1.0 / 720.0));
    vd q = vfma(r2, vfma(r4, p45, vfma(r2, p23, p01)), r);
    vd s = vexp2_sixteenths_f64(n);
    return vfma(s, q, s);
}

/* log(x) for positive normal x: x = 2^e m, m in [sqrt(1/2), sqrt 2), log m = 2 atanh(u),
 * u = (m - 1)/(m + 1), |u| < 0.172, by its series to u^21 (truncation < 1e-18). NaN in, NaN out. */
static inline __attribute__((always_inline)) vd vlog_f64(vd x) {
    __m256i bits = _mm256_castpd_si256(x);
    /* the exponent field as a double: its 11 bits OR-ed into the mantissa of 2^52, minus 2^52 */
    __m256i e_bits = _mm256_or_si256(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(0x4330000000000000LL));
    vd e = vsub(_mm256_castsi256_pd(e_bits), vset1(4503599627370496.0 + 1023.0));
    vd m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0xFFFFFFFFFFFFFLL)),
                                               _mm256_set1_epi64x(0x3FF0000000000000LL)));
    vd big = _mm256_cmp_pd(m, vset1(1.4142135623730951), _CMP_GT_OQ);
    m = vsel(big, vmul(m, vset1(0.5)), m);
    e = vadd(e, _mm256_and_pd(big, vset1(1.0)));
    vd u = vdiv(vsub(m, vset1(1.0)), vadd(m, vset1(1.0)));
    vd u2 = vmul(u, u);
    vd p = vset1(1.0 / 21.0);
    for (int k = 9; k >= 0; k--) p = vfma(u2, p, vset1(1.0 / (2 * k + 1)));
    vd log_m = vmul(vadd(u, u), p);
    /* e ln 2 with the Cody-Waite split of vexp_f64 */
    vd y = vfma(e, vset1(6.93145751953125e-1), vfma(e, vset1(1.42860682030941723212e-6), log_m));
    return vsel(visnan(x), x, y);
}

/* erf of 4 doubles by libm's erf, lane by lane (within 1 ulp). The float64 forward pass is the
 * accuracy mode; this costs ~4 ns per element where the matrix products cost ~2 ns per FMA row. */
static inline vd verf_f64(vd x) {
    double lane[4];
    vstore(lane, x);
    for (int i = 0; i < 4; i++) lane[i] = erf(lane[i]);
    return vload(lane);
}

/* Add the lanes < valid of one vector of 4 doubles to acc4. */
static inline __attribute__((always_inline)) void acc_sum_f64(vd v, int valid, double *acc4) {
    if (valid < 4) {
        __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
        vd keep = _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_set1_epi64x(valid), lane));
        v = _mm256_and_pd(v, keep);
    }
    _mm256_storeu_pd(acc4, _mm256_add_pd(_mm256_loadu_pd(acc4), v));
}
#else
typedef double vf64;
#define vf vf64
#define VL 1
#define vset1(x) (x)
#define vzero() 0.0
#define vload(p) (*(p))
#define vstore(p, v) (*(p) = (v))
#define vsub(a, b) ((a) - (b))
#define vmul(a, b) ((a) * (b))
#define vfma(a, b, c) fma(a, b, c)
#define vmin(c, x) ((c) < (x) ? (c) : (x))
#define vmax(c, x) ((c) > (x) ? (c) : (x))
#define vdiv(a, b) ((a) / (b))
#define vadd(a, b) ((a) + (b))
#define vsel(mask, a, b) ((mask) ? (a) : (b))
#define vceq(a, b) ((a) == (b))
#define vclt(a, b) ((a) < (b))
#define visnan(a) ((a) != (a))
static inline double vtanh_f64(double x) { return tanh(x); }
static inline double verf_f64(double x) { return erf(x); }
static inline double vexp_neg_f64(double x) { return exp(x); }
static inline double vlog_f64(double x) { return log(x); }
static inline void acc_sum_f64(double v, int valid, double *acc4) {
    if (valid > 0) acc4[0] += v;
}
#endif


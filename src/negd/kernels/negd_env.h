/* Whole episodes of CartPole-v1 and Pendulum-v1 under MLP policies, written once for one REAL type.
 *
 * negd_kernels.c includes this file after negd_mlp.h in both of its passes (REAL float, then
 * double), with NEGD_ENV_F64 0 or 1. It reuses that pass's vector layer (vf, VL, vset1 ... vsel,
 * FN(vapply): the activations of negd_vec_f32.h / negd_vec_f64.h).
 *
 * negd_env_rollout_<t>: for each realization r (one thread from start to end: OpenMP over
 * realizations, dynamic schedule), its E episodes in SIMD lanes, ENV_NV vectors stepped together:
 * per step the MLP policy of row r (hidden layers of one activation, linear output), the action
 * (CartPole: greedy argmax of 2 outputs, action 0 on a tie, NaN counts as the largest as in
 * torch.argmax; Pendulum: the torque, clipped), then gymnasium 1.x's dynamics with its order of
 * floating-point operations (negd/envs/cartpole.py, pendulum.py; this file must be compiled with
 * -ffp-contract=off, as it is: no product and sum of the dynamics is fused). Returns are summed in
 * double, step by step in the order of negd.envs.rollout. A policy output that is not finite while
 * its episode runs makes the episode's return NaN. CartPole episodes end at termination (a lane then
 * keeps its state and earns nothing) or at 500 steps, a block of lanes as soon as all its episodes
 * ended; Pendulum's run 200 steps.
 *
 * sin/cos: vectorized Cephes (Moshier) polynomials after a three-part Cody-Waite reduction by pi/4,
 * within ~1 ulp of the libm value numpy uses; lanes beyond the reduction's range (or not finite) take
 * libm. The one-lane build (no AVX2) calls libm throughout. The floored modulo of angle_normalize is
 * computed as fma(-floor(a/b), b, a): one rounding of the exact floored remainder, which is what
 * numpy's fmod-then-add computes; a lane whose quotient floor(a/b) rounded to the wrong integer (its
 * remainder falls outside [0, b)) takes numpy's own formula.
 */

#ifndef NEGD_ENV_COMMON
#define NEGD_ENV_COMMON
enum { ENV_CARTPOLE = 0, ENV_PENDULUM = 1, N_ENVS = 2 };
#define ENV_NV 2 /* episode vectors stepped together (independent chains for the FMA latency) */
#define CARTPOLE_STEPS 500
#define PENDULUM_STEPS 200
#endif

/* ---------------------------------------------------------------- masks and lane helpers of REAL */
#if NEGD_ENV_F64
#ifdef NEGD_AVX2
#define e_and(a, b) _mm256_and_pd(a, b)
#define e_or(a, b) _mm256_or_pd(a, b)
#define e_andnot(a, b) _mm256_andnot_pd(a, b) /* (not a) and b */
#define e_bits(m) _mm256_movemask_pd(m)
#define e_floor(x) _mm256_floor_pd(x)
#define e_abs(x) _mm256_andnot_pd(_mm256_set1_pd(-0.0), x)
#define e_xorsign(x, m) _mm256_xor_pd(x, _mm256_and_pd(m, _mm256_set1_pd(-0.0)))
#define e_gt(a, b) _mm256_cmp_pd(a, b, _CMP_GT_OQ)
#define e_ge(a, b) _mm256_cmp_pd(a, b, _CMP_GE_OQ)
#define e_true() _mm256_castsi256_pd(_mm256_set1_epi64x(-1))
#endif
#define e_libm_sin sin
#define e_libm_cos cos
#define e_libm_fmod fmod
#define E_REDUCE_MAX 1.0e8 /* |x| up to which the three-part reduction keeps ~1 ulp */
#else
#ifdef NEGD_AVX2
#define e_and(a, b) _mm256_and_ps(a, b)
#define e_or(a, b) _mm256_or_ps(a, b)
#define e_andnot(a, b) _mm256_andnot_ps(a, b)
#define e_bits(m) _mm256_movemask_ps(m)
#define e_floor(x) _mm256_floor_ps(x)
#define e_abs(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define e_xorsign(x, m) _mm256_xor_ps(x, _mm256_and_ps(m, _mm256_set1_ps(-0.0f)))
#define e_gt(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define e_ge(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define e_true() _mm256_castsi256_ps(_mm256_set1_epi32(-1))
#endif
#define e_libm_sin sinf
#define e_libm_cos cosf
#define e_libm_fmod fmodf
#define E_REDUCE_MAX 8192.0f
#endif
#ifndef NEGD_AVX2 /* one lane: masks are 0/1 in a REAL */
#define e_and(a, b) ((REAL)((a) != 0 && (b) != 0))
#define e_or(a, b) ((REAL)((a) != 0 || (b) != 0))
#define e_andnot(a, b) ((REAL)((a) == 0 && (b) != 0))
#define e_bits(m) ((m) != 0)
#define e_gt(a, b) ((REAL)((a) > (b)))
#define e_ge(a, b) ((REAL)((a) >= (b)))
#define e_true() ((REAL)1)
#endif
#define e_lt(a, b) e_gt(b, a)
#define e_finite(x) vceq(vsub(x, x), vzero()) /* x - x is 0 for finite x, NaN otherwise */
#define e_count(n, m) vadd(n, e_and(m, vset1((REAL)1))) /* n + 1 in the lanes of mask m */

/* sin and cos of one vector (file comment). */
static inline __attribute__((always_inline)) void FN(env_sincos)(vf x, vf *sin_out, vf *cos_out) {
#ifdef NEGD_AVX2
#if NEGD_ENV_F64
    static const double fopi = 1.27323954473516268615, dp1 = 7.85398125648498535156e-1,
                        dp2 = 3.77489470793079817668e-8, dp3 = 2.69515142907905952645e-15;
    static const double sc[6] = {1.58962301576546568060e-10, -2.50507477628578072866e-8, 2.75573136213857245213e-6,
                                 -1.98412698295895385996e-4, 8.33333333332211858878e-3, -1.66666666666666307295e-1};
    static const double cc[6] = {-1.13585365213876817300e-11, 2.08757008419747316778e-9, -2.75573141792967388112e-7,
                                 2.48015872888517045348e-5, -1.38888888888730564116e-3, 4.16666666666665929218e-2};
    enum { NS = 6 };
#else
    static const float fopi = 1.27323954473516f, dp1 = 0.78515625f, dp2 = 2.4187564849853515625e-4f,
                       dp3 = 3.77489497744594108e-8f;
    static const float sc[3] = {-1.9515295891e-4f, 8.3321608736e-3f, -1.6666654611e-1f};
    static const float cc[3] = {2.443315711809948e-5f, -1.388731625493765e-3f, 4.166664568298827e-2f};
    enum { NS = 3 };
#endif
    vf a = e_abs(x);
    vf y = e_floor(vmul(a, vset1(fopi)));
    /* j = y, made even (j odd: y + 1), taken mod 8, all in REAL (integers below 2^24) */
    vf odd = vsub(y, vmul(vset1((REAL)2), e_floor(vmul(y, vset1((REAL)0.5)))));
    y = vadd(y, odd);
    vf j8 = vsub(y, vmul(vset1((REAL)8), e_floor(vmul(y, vset1((REAL)0.125)))));
    vf z = vsub(vsub(vsub(a, vmul(y, vset1(dp1))), vmul(y, vset1(dp2))), vmul(y, vset1(dp3)));
    vf zz = vmul(z, z);
    vf ps = vset1(sc[0]), pc = vset1(cc[0]);
    for (int k = 1; k < NS; k++) { ps = vfma(ps, zz, vset1(sc[k])); pc = vfma(pc, zz, vset1(cc[k])); }
    vf s = vfma(vmul(z, zz), ps, z);                                           /* z + z^3 P(z^2) */
    vf c = vfma(vmul(zz, zz), pc, vsub(vset1((REAL)1), vmul(vset1((REAL)0.5), zz))); /* 1 - z^2/2 + z^4 Q */
    vf swap = e_or(vceq(j8, vset1((REAL)2)), vceq(j8, vset1((REAL)6)));
    vf sn = vsel(swap, c, s), cs = vsel(swap, s, c);
    vf sin_neg = e_ge(j8, vset1((REAL)4));
    vf cos_neg = e_or(vceq(j8, vset1((REAL)2)), vceq(j8, vset1((REAL)4)));
    sn = e_xorsign(sn, sin_neg);
    sn = e_xorsign(sn, vclt(x, vzero())); /* sin is odd */
    cs = e_xorsign(cs, cos_neg);
    /* beyond the reduction's range, or not finite: libm, lane by lane */
    vf far = e_or(e_gt(a, vset1(E_REDUCE_MAX)), visnan(a));
    if (e_bits(far)) {
        REAL xs[VL], ss[VL], cl[VL];
        vstore(xs, x); vstore(ss, sn); vstore(cl, cs);
        const int bits = e_bits(far);
        for (int i = 0; i < VL; i++)
            if (bits >> i & 1) { ss[i] = e_libm_sin(xs[i]); cl[i] = e_libm_cos(xs[i]); }
        sn = vload(ss); cs = vload(cl);
    }
    *sin_out = sn;
    *cos_out = cs;
#else
    *sin_out = e_libm_sin(x);
    *cos_out = e_libm_cos(x);
#endif
}

/* numpy's ((a + pi) mod 2 pi) - pi with the floored modulo (file comment). */
static inline __attribute__((always_inline)) vf FN(env_angle_normalize)(vf th) {
    const REAL pi = (REAL)3.14159265358979323846, two_pi = (REAL)(2 * 3.14159265358979323846);
    vf a = vadd(th, vset1(pi));
#ifdef NEGD_AVX2
    vf n = e_floor(vdiv(a, vset1(two_pi)));
    vf r = vfma(vsub(vzero(), n), vset1(two_pi), a);
    vf wrong = e_or(vclt(r, vzero()), e_ge(r, vset1(two_pi)));
    if (e_bits(wrong)) {
        REAL as[VL], rs[VL];
        vstore(as, a); vstore(rs, r);
        const int bits = e_bits(wrong);
        for (int i = 0; i < VL; i++)
            if (bits >> i & 1) {
                REAL m = e_libm_fmod(as[i], two_pi);
                rs[i] = m != 0 ? (m < 0 ? m + two_pi : m) : (REAL)0;
            }
        r = vload(rs);
    }
#else
    REAL m = e_libm_fmod(a, two_pi);
    vf r = m != 0 ? (m < 0 ? m + two_pi : m) : (REAL)0;
#endif
    return vsub(r, vset1(pi));
}

/* Sums in double of the rewards of VL lanes (each widened exactly, as torch's .to(float64)). */
#if defined(NEGD_AVX2) && !NEGD_ENV_F64
typedef struct { __m256d lo, hi; } FN(racc_t);
static inline FN(racc_t) FN(racc_zero)(void) { FN(racc_t) a = {_mm256_setzero_pd(), _mm256_setzero_pd()}; return a; }
static inline __attribute__((always_inline)) void FN(racc_add)(FN(racc_t) *a, vf r) {
    a->lo = _mm256_add_pd(a->lo, _mm256_cvtps_pd(_mm256_castps256_ps128(r)));
    a->hi = _mm256_add_pd(a->hi, _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)));
}
static inline void FN(racc_store)(FN(racc_t) a, double *out) { _mm256_storeu_pd(out, a.lo); _mm256_storeu_pd(out + 4, a.hi); }
#elif defined(NEGD_AVX2)
typedef struct { __m256d v; } FN(racc_t);
static inline FN(racc_t) FN(racc_zero)(void) { FN(racc_t) a = {_mm256_setzero_pd()}; return a; }
static inline __attribute__((always_inline)) void FN(racc_add)(FN(racc_t) *a, vf r) { a->v = _mm256_add_pd(a->v, r); }
static inline void FN(racc_store)(FN(racc_t) a, double *out) { _mm256_storeu_pd(out, a.v); }
#else
typedef struct { double v; } FN(racc_t);
static inline FN(racc_t) FN(racc_zero)(void) { FN(racc_t) a = {0.0}; return a; }
static inline __attribute__((always_inline)) void FN(racc_add)(FN(racc_t) *a, vf r) { a->v += (double)r; }
static inline void FN(racc_store)(FN(racc_t) a, double *out) { out[0] = a.v; }
#endif

/* gymnasium's CartPoleEnv.step in its order of operations (negd/envs/cartpole.py): the next state and
 * the termination mask from the state, sin and cos of theta and the action mask (action 1). */
static inline __attribute__((always_inline)) void FN(cartpole_next)(vf x, vf x_dot, vf th, vf th_dot, vf sin_t,
                                                                    vf cos_t, vf act1, vf *nx, vf *nx_dot,
                                                                    vf *nth, vf *nth_dot, vf *term) {
    const REAL tm = (REAL)(0.1 + 1.0), pml = (REAL)(0.1 * 0.5);
    const vf force = vsel(act1, vset1((REAL)10.0), vset1((REAL)-10.0));
    const vf temp = vdiv(vadd(force, vmul(vmul(vset1(pml), vmul(th_dot, th_dot)), sin_t)), vset1(tm));
    const vf thacc = vdiv(vsub(vmul(vset1((REAL)9.8), sin_t), vmul(cos_t, temp)),
                          vmul(vset1((REAL)0.5), vsub(vset1((REAL)(4.0 / 3.0)),
                                                      vdiv(vmul(vset1((REAL)0.1), vmul(cos_t, cos_t)), vset1(tm)))));
    const vf xacc = vsub(temp, vdiv(vmul(vmul(vset1(pml), thacc), cos_t), vset1(tm)));
    const vf tau = vset1((REAL)0.02);
    *nx = vadd(x, vmul(tau, x_dot));
    *nx_dot = vadd(x_dot, vmul(tau, xacc));
    *nth = vadd(th, vmul(tau, th_dot));
    *nth_dot = vadd(th_dot, vmul(tau, thacc));
    const REAL xt = (REAL)2.4, tt = (REAL)(12 * 2 * 3.14159265358979323846 / 360);
    *term = e_or(e_or(vclt(*nx, vset1(-xt)), e_gt(*nx, vset1(xt))), e_or(vclt(*nth, vset1(-tt)), e_gt(*nth, vset1(tt))));
}

/* gymnasium's PendulumEnv.step (negd/envs/pendulum.py): the next state and the cost (minus the reward)
 * from the state, sin theta and the policy's output (the torque before clipping). */
static inline __attribute__((always_inline)) void FN(pendulum_next)(vf th, vf th_dot, vf sin_th, vf torque, vf *nth,
                                                                    vf *nth_dot, vf *costs) {
    const vf u = vmax(vset1((REAL)-2.0), vmin(vset1((REAL)2.0), torque)); /* NaN stays NaN */
    const vf an = FN(env_angle_normalize)(th);
    *costs = vadd(vadd(vmul(an, an), vmul(vset1((REAL)0.1), vmul(th_dot, th_dot))), vmul(vset1((REAL)0.001), vmul(u, u)));
    vf v = vadd(th_dot, vmul(vadd(vmul(vset1((REAL)15.0), sin_th), vmul(vset1((REAL)3.0), u)), vset1((REAL)0.05)));
    v = vmax(vset1((REAL)-8.0), vmin(vset1((REAL)8.0), v));
    *nth = vadd(th, vmul(v, vset1((REAL)0.05)));
    *nth_dot = v;
}

typedef struct {
    int depth, width, out_bias, act;
} FN(policy_t);

/* One layer of the policy for NV episode vectors: hout[o][k] = act(W hin + b), hin/hout [fan][NV] vectors. */
static inline __attribute__((always_inline)) void FN(env_layer)(const int NV, const REAL *W, const REAL *b,
                                                                int fan_in, int fan_out, const vf *hin, vf *hout,
                                                                int act) {
    for (int o = 0; o < fan_out; o++) {
        vf acc[ENV_NV];
        for (int k = 0; k < NV; k++) acc[k] = b ? vset1(b[o]) : vzero();
        const REAL *w = W + (int64_t)o * fan_in;
        for (int i = 0; i < fan_in; i++) {
            const vf wi = vset1(w[i]);
            for (int k = 0; k < NV; k++) acc[k] = vfma(wi, hin[i * NV + k], acc[k]);
        }
        for (int k = 0; k < NV; k++) hout[o * NV + k] = FN(vapply)(acc[k], act);
    }
}

/* The policy's outputs out[OUT][NV] of observations obs[IN][NV]; scratch: 2 width NV vectors. */
static inline __attribute__((always_inline)) void FN(env_policy)(const int NV, const int IN, const int OUT,
                                                                 const FN(policy_t) *pol, const REAL *p,
                                                                 const vf *obs, vf *out, vf *scratch) {
    const int H = pol->width;
    vf *h0 = scratch, *h1 = scratch + (int64_t)H * NV;
    FN(env_layer)(NV, p, p + IN * H, IN, H, obs, h0, pol->act);
    const REAL *q = p + IN * H + H;
    for (int l = 1; l < pol->depth; l++) {
        FN(env_layer)(NV, q, q + (int64_t)H * H, H, H, h0, h1, pol->act);
        q += (int64_t)H * H + H;
        vf *t = h0; h0 = h1; h1 = t;
    }
    FN(env_layer)(NV, q, pol->out_bias ? q + (int64_t)H * OUT : NULL, H, OUT, h0, out, ACT_IDENTITY);
}

/* Lanes e0 .. e0 + NV VL - 1 of one realization (lanes past E are padding, never alive). */
static inline __attribute__((always_inline)) void FN(env_block)(const int NV, const int ENV, const FN(policy_t) *pol,
                                                                const REAL *p, const REAL *starts, int64_t e0,
                                                                int64_t E, double *ret, int64_t *len, vf *scratch) {
    enum { DMAX = 4 };
    const int D = ENV == ENV_CARTPOLE ? 4 : 2;
    const int IN = ENV == ENV_CARTPOLE ? 4 : 3;
    const int OUT = ENV == ENV_CARTPOLE ? 2 : 1;
    const int T = ENV == ENV_CARTPOLE ? CARTPOLE_STEPS : PENDULUM_STEPS;
    vf s[DMAX][ENV_NV], alive[ENV_NV], broken[ENV_NV], count[ENV_NV];
    FN(racc_t) racc[ENV_NV];
    for (int k = 0; k < NV; k++) {
        REAL lane[DMAX][VL], valid[VL];
        for (int i = 0; i < VL; i++) {
            const int64_t e = e0 + k * VL + i;
            for (int d = 0; d < D; d++) lane[d][i] = e < E ? starts[e * D + d] : (REAL)0;
            valid[i] = e < E ? (REAL)1 : (REAL)0;
        }
        for (int d = 0; d < D; d++) s[d][k] = vload(lane[d]);
        alive[k] = vclt(vzero(), vload(valid));
        broken[k] = vzero();
        count[k] = vzero();
        racc[k] = FN(racc_zero)();
    }
    for (int t = 0; t < T; t++) {
        vf obs[4 * ENV_NV], out[2 * ENV_NV], sn[ENV_NV], cs[ENV_NV];
        for (int k = 0; k < NV; k++) {
            if (ENV == ENV_CARTPOLE) {
                for (int d = 0; d < 4; d++) obs[d * NV + k] = s[d][k];
                FN(env_sincos)(s[2][k], &sn[k], &cs[k]);
            } else {
                FN(env_sincos)(s[0][k], &sn[k], &cs[k]);
                obs[0 * NV + k] = cs[k]; obs[1 * NV + k] = sn[k]; obs[2 * NV + k] = s[1][k];
            }
        }
        FN(env_policy)(NV, IN, OUT, pol, p, obs, out, scratch);
        int any_alive = 0;
        for (int k = 0; k < NV; k++) {
            if (ENV == ENV_CARTPOLE) {
                const vf o0 = out[k], o1 = out[NV + k];
                broken[k] = e_or(broken[k], e_andnot(e_and(e_finite(o0), e_finite(o1)), alive[k]));
                /* torch.argmax: NaN is the largest, the first of equals wins */
                const vf act1 = e_or(vclt(o0, o1), e_andnot(visnan(o0), visnan(o1)));
                vf nx, nx_dot, nth, nth_dot, term;
                FN(cartpole_next)(s[0][k], s[1][k], s[2][k], s[3][k], sn[k], cs[k], act1, &nx, &nx_dot, &nth,
                                  &nth_dot, &term);
                const vf x = s[0][k], x_dot = s[1][k], th = s[2][k], th_dot = s[3][k];
                const vf a = alive[k];
                count[k] = e_count(count[k], a);
                s[0][k] = vsel(a, nx, x); s[1][k] = vsel(a, nx_dot, x_dot);
                s[2][k] = vsel(a, nth, th); s[3][k] = vsel(a, nth_dot, th_dot);
                alive[k] = e_andnot(term, a);
                any_alive |= e_bits(alive[k]);
            } else {
                const vf o0 = out[k];
                broken[k] = e_or(broken[k], e_andnot(e_finite(o0), alive[k]));
                vf costs;
                FN(pendulum_next)(s[0][k], s[1][k], sn[k], o0, &s[0][k], &s[1][k], &costs);
                FN(racc_add)(&racc[k], vsub(vzero(), costs));
                any_alive = 1;
            }
        }
        if (!any_alive) break;
    }
    for (int k = 0; k < NV; k++) {
        REAL cnt[VL], brk[VL];
        double sums[VL];
        vstore(cnt, count[k]);
        vstore(brk, e_and(broken[k], vset1((REAL)1)));
        FN(racc_store)(racc[k], sums);
        for (int i = 0; i < VL; i++) {
            const int64_t e = e0 + k * VL + i;
            if (e >= E) break;
            const int64_t steps = ENV == ENV_CARTPOLE ? (int64_t)cnt[i] : T;
            len[e] = steps;
            ret[e] = brk[i] != 0 ? NAN : ENV == ENV_CARTPOLE ? (double)steps : sums[i];
        }
    }
}

/* All episodes of one realization: blocks of ENV_NV vectors, the last one shorter. */
static void FN(env_realization)(int env, const FN(policy_t) *pol, const REAL *p, const REAL *starts, int64_t E,
                                double *ret, int64_t *len, vf *scratch) {
    int64_t e0 = 0;
    for (; e0 + ENV_NV * VL <= E; e0 += ENV_NV * VL) {
        if (env == ENV_CARTPOLE) FN(env_block)(ENV_NV, ENV_CARTPOLE, pol, p, starts, e0, E, ret, len, scratch);
        else FN(env_block)(ENV_NV, ENV_PENDULUM, pol, p, starts, e0, E, ret, len, scratch);
    }
    for (; e0 < E; e0 += VL) { /* the rest, one vector at a time */
        if (env == ENV_CARTPOLE) FN(env_block)(1, ENV_CARTPOLE, pol, p, starts, e0, E, ret, len, scratch);
        else FN(env_block)(1, ENV_PENDULUM, pol, p, starts, e0, E, ret, len, scratch);
    }
}

/* One step of n (state, action) pairs: the kernel's own dynamics (the code the rollouts run), for
 * tests against gymnasium. state [n, d], action [n] (CartPole: 0 or 1; Pendulum: the torque),
 * next [n, d], reward [n], terminated [n]. NEGD_BAD_ARCH for an unknown environment. */
int FN(negd_env_step)(int env, const REAL *state, const REAL *action, int64_t n, REAL *next, REAL *reward,
                      uint8_t *terminated) {
    if (env < 0 || env >= N_ENVS) return NEGD_BAD_ARCH;
    const int D = env == ENV_CARTPOLE ? 4 : 2;
    for (int64_t i0 = 0; i0 < n; i0 += VL) {
        REAL lane[5][VL] = {{0}}, out[6][VL];
        for (int i = 0; i < VL && i0 + i < n; i++) {
            for (int d = 0; d < D; d++) lane[d][i] = state[(i0 + i) * D + d];
            lane[4][i] = action[i0 + i];
        }
        vf sn, cs, term = vzero();
        if (env == ENV_CARTPOLE) {
            vf a[4];
            FN(env_sincos)(vload(lane[2]), &sn, &cs);
            FN(cartpole_next)(vload(lane[0]), vload(lane[1]), vload(lane[2]), vload(lane[3]), sn, cs,
                              vceq(vload(lane[4]), vset1((REAL)1)), &a[0], &a[1], &a[2], &a[3], &term);
            for (int d = 0; d < 4; d++) vstore(out[d], a[d]);
            vstore(out[4], vset1((REAL)1));
        } else {
            vf th, th_dot, costs;
            FN(env_sincos)(vload(lane[0]), &sn, &cs);
            FN(pendulum_next)(vload(lane[0]), vload(lane[1]), sn, vload(lane[4]), &th, &th_dot, &costs);
            vstore(out[0], th); vstore(out[1], th_dot); vstore(out[4], vsub(vzero(), costs));
        }
        vstore(out[5], e_and(term, vset1((REAL)1)));
        for (int i = 0; i < VL && i0 + i < n; i++) {
            for (int d = 0; d < D; d++) next[(i0 + i) * D + d] = out[d][i];
            reward[i0 + i] = out[4][i];
            terminated[i0 + i] = out[5][i] != 0;
        }
    }
    return 0;
}

/* Returns ret [R, E] (double) and lengths len [R, E] of the episodes starting at starts [R, E, d]
 * (d = 4 CartPole, 2 Pendulum) under the MLPs params [R, N]. arch: depth, width, in_f, out_f,
 * out_bias, activation (ACT_*). NEGD_BAD_ARCH for an unknown environment or activation, or an arch
 * that does not fit the environment (in_f, out_f) or N; 1 when out of memory. */
int FN(negd_env_rollout)(int env, const int32_t *arch, const REAL *params, int64_t R, int64_t N,
                         const REAL *starts, int64_t E, double *ret, int64_t *len, int nthreads) {
    if (env < 0 || env >= N_ENVS) return NEGD_BAD_ARCH;
    FN(policy_t) pol = {arch[0], arch[1], arch[4], arch[5]};
    const int in_f = arch[2], out_f = arch[3];
    const int want_in = env == ENV_CARTPOLE ? 4 : 3, want_out = env == ENV_CARTPOLE ? 2 : 1;
    const int64_t H = pol.width;
    const int64_t n_params = in_f * H + H + (pol.depth - 1) * (H * H + H) + H * out_f + (pol.out_bias ? out_f : 0);
    if (pol.depth < 1 || H < 1 || in_f != want_in || out_f != want_out || n_params != N || pol.act < 0
        || pol.act >= N_ACTIVATIONS)
        return NEGD_BAD_ARCH;
    const int D = env == ENV_CARTPOLE ? 4 : 2;
    int err = 0;
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1) if (nthreads > 1 && R > 1)
    {
        vf *scratch = aligned_alloc(32, ((size_t)(2 * H * ENV_NV) * sizeof(vf) + 31) / 32 * 32);
        if (!scratch) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(dynamic, realization_chunk(R, nthreads))
            for (int64_t r = 0; r < R; r++)
                FN(env_realization)(env, &pol, params + r * N, starts + r * E * D, E, ret + r * E, len + r * E,
                                    scratch);
        }
        free(scratch);
    }
    return err;
}

#undef e_and
#undef e_or
#undef e_andnot
#undef e_bits
#undef e_floor
#undef e_abs
#undef e_xorsign
#undef e_gt
#undef e_ge
#undef e_true
#undef e_lt
#undef e_finite
#undef e_count
#undef e_libm_sin
#undef e_libm_cos
#undef e_libm_fmod
#undef E_REDUCE_MAX

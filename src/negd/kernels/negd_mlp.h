/* Forward pass, loss and fused neuroevolution of an MLP, written once for one parameter type.
 *
 * negd_kernels.c includes this file twice: once with REAL = float (8 points per AVX2 register)
 * and once with REAL = double (4 per register). Before each inclusion it defines
 *   REAL, FN(name)                     the parameter type and the suffix of every name (_f32, _f64);
 *   vf, VL, vset1 ... vdiv             the vector layer of that type (vsel, vceq, vclt: lane masks);
 *   FN(vtanh), FN(verf)(vf)            tanh and erf of one vector;
 *   FN(vexp_neg)(vf), FN(vlog)(vf)     exp of x <= 0 and log of x > 0 (NaN in, NaN out);
 *   FN(acc_sum)(vf, int, double *)     add the valid lanes of one vector to 4 doubles.
 * Hidden layers use one activation (ACT_*: identity, tanh, relu, exact erf GELU); the output is
 * linear. Loss (LOSS_*): mean squared error over points and outputs, or softmax cross-entropy of
 * the outputs (logits) against class labels, per point log sum_c exp(z_c - m) - (z_y - m) with
 * m = max_c z_c (negd.losses, eq. 1) in REAL. Whatever REAL is, the per-point terms are summed in
 * double and the loss is returned in double: the Metropolis test compares U(x') - U(x) of two such
 * sums, which resolves loss differences far below the float32 unit of U (docs/kernels.md).
 */

typedef struct {
    int depth, width, in_f, out_f, out_bias;
    int act;          /* ACT_* of the hidden layers */
    int loss;         /* LOSS_MSE or LOSS_XENT */
    int64_t P;        /* valid points */
    int64_t ld;       /* padded points (multiple of 8, so of VL): row stride of x and t */
    const REAL *x;    /* inputs, feature-major [in_f][ld], zero padded */
    const REAL *t;    /* LOSS_MSE: targets [out_f][ld]; LOSS_XENT: class labels [ld] as REAL; zero padded */
} FN(net_t);

/* Exact GELU as torch computes it: x * 0.5 * (1 + erf(x / sqrt 2)). */
static inline __attribute__((always_inline)) vf FN(vgelu)(vf x) {
    vf half_x = vmul(x, vset1((REAL)0.5));
    return vmul(half_x, vadd(vset1((REAL)1), FN(verf)(vmul(x, vset1((REAL)0.70710678118654752440)))));
}

/* Elementwise op of one vector: an activation (ACT_*), or OP_ERF (exported for accuracy tests). */
static inline __attribute__((always_inline)) vf FN(vapply)(vf x, int op) {
    switch (op) {
    case ACT_TANH: return FN(vtanh)(x);
    case ACT_RELU: return vmax(vzero(), x); /* max(0, NaN) is NaN: vmax returns its 2nd operand */
    case ACT_GELU: return FN(vgelu)(x);
    case OP_ERF: return FN(verf)(x);
    default: return x; /* ACT_IDENTITY */
    }
}

/* Squared errors of one vector of outputs against targets t, summed in double. */
static inline __attribute__((always_inline)) void FN(acc_sq)(vf y, const REAL *t, int valid, double *acc4) {
    vf d = vsub(y, vload(t));
    FN(acc_sum)(vmul(d, d), valid, acc4);
}

/* Softmax cross-entropy of one vector of points, summed in double: logits z[c * ld] of n_classes
 * classes, labels (class indices as REAL) y. Max-subtraction keeps every exp in (0, 1], so the sum
 * s is in [1, n_classes]; any NaN logit makes s, and so the loss, NaN. */
static inline __attribute__((always_inline)) void FN(acc_xent)(const REAL *z, int64_t ld, int n_classes,
                                                               const REAL *labels, int valid, double *acc4) {
    vf m = vload(z);
    for (int c = 1; c < n_classes; c++) m = vmax(m, vload(z + c * ld));
    const vf y = vload(labels);
    vf s = vzero(), picked = vzero();
    for (int c = 0; c < n_classes; c++) {
        vf d = vsub(vload(z + c * ld), m);
        s = vadd(s, FN(vexp_neg)(d));
        picked = vsel(vceq(y, vset1((REAL)c)), d, picked); /* z_y - m */
    }
    FN(acc_sum)(vsub(FN(vlog)(s), picked), valid, acc4);
}

/* Shallow net 1 -> H (tanh) -> 1: every hidden unit of SHALLOW_NV point vectors in registers. */
static double FN(shallow_sse)(const FN(net_t) *net, const REAL *p) {
    const int H = net->width;
    const REAL *w1 = p, *b1 = p + H, *w2 = p + 2 * H;
    const REAL b2 = net->out_bias ? p[3 * H] : (REAL)0;
    const int64_t nv = net->ld / VL;
    double acc4[4] = {0, 0, 0, 0};
    int64_t v = 0;
    for (; v + SHALLOW_NV <= nv; v += SHALLOW_NV) {
        vf x[SHALLOW_NV], y[SHALLOW_NV];
        for (int k = 0; k < SHALLOW_NV; k++) { x[k] = vload(net->x + (v + k) * VL); y[k] = vset1(b2); }
        for (int j = 0; j < H; j++) {
            vf w = vset1(w1[j]), b = vset1(b1[j]), o = vset1(w2[j]);
            for (int k = 0; k < SHALLOW_NV; k++) y[k] = vfma(o, FN(vtanh)(vfma(w, x[k], b)), y[k]);
        }
        for (int k = 0; k < SHALLOW_NV; k++) {
            int64_t valid = net->P - (v + k) * VL;
            FN(acc_sq)(y[k], net->t + (v + k) * VL, valid < VL ? (int)valid : VL, acc4);
        }
    }
    for (; v < nv; v++) {
        vf x = vload(net->x + v * VL), y = vset1(b2);
        for (int j = 0; j < H; j++) y = vfma(vset1(w2[j]), FN(vtanh)(vfma(vset1(w1[j]), x, vset1(b1[j]))), y);
        int64_t valid = net->P - v * VL;
        FN(acc_sq)(y, net->t + v * VL, valid < VL ? (int)valid : VL, acc4);
    }
    return (acc4[0] + acc4[1]) + (acc4[2] + acc4[3]);
}

/* One register tile of a dense layer, MO outputs x NV point vectors: the pre-activations
 * W hin + b, stored. The tile holds MO * NV accumulators, NV input vectors and one broadcast weight
 * in registers; it must not hold anything else. (e51682c made the activation a compile-time constant
 * inside this tile: gcc then hoisted tanh's 13 constants into registers for the whole layer, ran out
 * of them and kept two accumulators on the stack, a store-to-load round trip in every iteration's
 * dependency chain: the deep net ran at 0.62x. The activation is now a separate pass, FN(activate).) */
static inline __attribute__((always_inline)) void FN(dense_tile)(
        const int MO, const int NV, const REAL *W, int fan_in, const REAL *bias,
        const REAL *hin, int64_t ld_in, REAL *hout, int64_t ld_out) {
    vf acc[TILE_MO][TILE_NV];
    for (int m = 0; m < MO; m++)
        for (int k = 0; k < NV; k++) acc[m][k] = bias ? vset1(bias[m]) : vzero();
    for (int i = 0; i < fan_in; i++) {
        vf h[TILE_NV];
        for (int k = 0; k < NV; k++) h[k] = vload(hin + i * ld_in + k * VL);
        for (int m = 0; m < MO; m++) {
            vf w = vset1(W[(int64_t)m * fan_in + i]);
            for (int k = 0; k < NV; k++) acc[m][k] = vfma(w, h[k], acc[m][k]);
        }
    }
    for (int m = 0; m < MO; m++)
        for (int k = 0; k < NV; k++) vstore(hout + m * ld_out + k * VL, acc[m][k]);
}

/* The tiles of MO outputs (o0 <= o < o1, a multiple of MO apart) over nv point vectors. */
static inline __attribute__((always_inline)) void FN(dense_rows)(
        const int MO, int o0, int o1, const REAL *W, const REAL *bias, int fan_in, const REAL *hin,
        int64_t ld_in, REAL *hout, int64_t ld_out, int nv) {
    for (int o = o0; o + MO <= o1; o += MO) {
        const REAL *Wo = W + (int64_t)o * fan_in, *bo = bias ? bias + o : NULL;
        REAL *ho = hout + o * ld_out;
        int k = 0;
        for (; k + TILE_NV <= nv; k += TILE_NV)
            FN(dense_tile)(MO, TILE_NV, Wo, fan_in, bo, hin + k * VL, ld_in, ho + k * VL, ld_out);
        switch (nv - k) { /* the last block of a layer is short */
        case 0: break;
#if TILE_NV > 3
        case 5: FN(dense_tile)(MO, 5, Wo, fan_in, bo, hin + k * VL, ld_in, ho + k * VL, ld_out); break;
        case 4: FN(dense_tile)(MO, 4, Wo, fan_in, bo, hin + k * VL, ld_in, ho + k * VL, ld_out); break;
        case 3: FN(dense_tile)(MO, 3, Wo, fan_in, bo, hin + k * VL, ld_in, ho + k * VL, ld_out); break;
#endif
        case 2: FN(dense_tile)(MO, 2, Wo, fan_in, bo, hin + k * VL, ld_in, ho + k * VL, ld_out); break;
        default: FN(dense_tile)(MO, 1, Wo, fan_in, bo, hin + k * VL, ld_in, ho + k * VL, ld_out); break;
        }
    }
}

/* The activation of rows x nv point vectors of a layer's output, in place (act a constant in each
 * loop, so that each loop holds its own function's constants and nothing else). */
static void FN(activate)(REAL *h, int rows, int64_t ld, int nv, int act) {
#define ACT_LOOP(ACT) for (int o = 0; o < rows; o++) \
        for (int k = 0; k < nv; k++) vstore(h + o * ld + k * VL, FN(vapply)(vload(h + o * ld + k * VL), ACT))
    switch (act) {
    case ACT_TANH: ACT_LOOP(ACT_TANH); break;
    case ACT_RELU: ACT_LOOP(ACT_RELU); break;
    case ACT_GELU: ACT_LOOP(ACT_GELU); break;
    default: break; /* ACT_IDENTITY */
    }
#undef ACT_LOOP
}

/* hout[o][0:nv*VL] = act(W hin + b) for a block of nv <= BLK_V point vectors: register tiles of
 * TILE_MO outputs (then 4, 2, 1 for the rest of fan_out) x TILE_NV point vectors, then the
 * activation in place while the block is in L1. */
static void FN(dense)(const REAL *W, const REAL *bias, int fan_in, int fan_out, const REAL *hin,
                      int64_t ld_in, REAL *hout, int64_t ld_out, int nv, int act) {
    int o = 0;
    if (fan_out >= TILE_MO) {
        o = fan_out / TILE_MO * TILE_MO;
        FN(dense_rows)(TILE_MO, 0, o, W, bias, fan_in, hin, ld_in, hout, ld_out, nv);
    }
#if TILE_MO > 4
    if (fan_out - o >= 4) { FN(dense_rows)(4, o, o + 4, W, bias, fan_in, hin, ld_in, hout, ld_out, nv); o += 4; }
#endif
    if (fan_out - o >= 2) { FN(dense_rows)(2, o, o + 2, W, bias, fan_in, hin, ld_in, hout, ld_out, nv); o += 2; }
    if (fan_out - o >= 1) FN(dense_rows)(1, o, o + 1, W, bias, fan_in, hin, ld_in, hout, ld_out, nv);
    FN(activate)(hout, fan_out, ld_out, nv, act);
}

/* Generic MLP: the sum over points of the loss terms (squared errors or cross-entropies);
 * scratch holds 2 * max(width, out_f) * BLK REALs. */
static double FN(generic_sum)(const FN(net_t) *net, const REAL *p, REAL *scratch) {
    const int wmax = net->width > net->out_f ? net->width : net->out_f;
    REAL *buf[2] = {scratch, scratch + (int64_t)wmax * BLK};
    const int64_t nv_all = net->ld / VL;
    double acc4[4] = {0, 0, 0, 0};
    for (int64_t v0 = 0; v0 < nv_all; v0 += BLK_V) {
        int nv = (int)(nv_all - v0 < BLK_V ? nv_all - v0 : BLK_V);
        const REAL *hin = net->x + v0 * VL;
        int64_t ld_in = net->ld;
        const REAL *q = p;
        int fan_in = net->in_f;
        for (int layer = 0; layer <= net->depth; layer++) {
            int last = layer == net->depth;
            int fan_out = last ? net->out_f : net->width;
            int has_bias = last ? net->out_bias : 1;
            const REAL *W = q, *b = has_bias ? q + (int64_t)fan_in * fan_out : NULL;
            q += (int64_t)fan_in * fan_out + (has_bias ? fan_out : 0);
            REAL *hout = buf[layer & 1];
            FN(dense)(W, b, fan_in, fan_out, hin, ld_in, hout, BLK, nv, last ? ACT_IDENTITY : net->act);
            hin = hout; ld_in = BLK; fan_in = fan_out;
        }
        for (int k = 0; k < nv; k++) {
            int64_t left = net->P - (v0 + k) * VL;
            const int valid = left < VL ? (int)left : VL;
            if (net->loss == LOSS_XENT) {
                FN(acc_xent)(hin + k * VL, BLK, net->out_f, net->t + (v0 + k) * VL, valid, acc4);
            } else {
                for (int o = 0; o < net->out_f; o++)
                    FN(acc_sq)(vload(hin + o * BLK + k * VL), net->t + o * net->ld + (v0 + k) * VL, valid, acc4);
            }
        }
    }
    return (acc4[0] + acc4[1]) + (acc4[2] + acc4[3]);
}

/* The loss U, summed and divided in double: the mean squared error over points and outputs, or the
 * mean cross-entropy over points. */
static inline double FN(net_loss)(const FN(net_t) *net, const REAL *p, REAL *scratch) {
    const int shallow = net->depth == 1 && net->in_f == 1 && net->out_f == 1 && net->act == ACT_TANH
                        && net->loss == LOSS_MSE;
    double sum = shallow ? FN(shallow_sse)(net, p) : FN(generic_sum)(net, p, scratch);
    return sum / ((double)net->P * (net->loss == LOSS_MSE ? (double)net->out_f : 1.0));
}

static int64_t FN(scratch_len)(const FN(net_t) *net) {
    const int wmax = net->width > net->out_f ? net->width : net->out_f;
    return 2 * (int64_t)wmax * BLK;
}

/* arch: depth, width, in_f, out_f, out_bias, activation (ACT_*), loss (LOSS_*).
 * NEGD_BAD_ARCH for an activation or loss code this build does not know, else 0. */
static int FN(net_from)(FN(net_t) *net, const int32_t *arch, int64_t P, int64_t ld, const REAL *x,
                        const REAL *t) {
    net->depth = arch[0]; net->width = arch[1]; net->in_f = arch[2]; net->out_f = arch[3];
    net->out_bias = arch[4]; net->act = arch[5]; net->loss = arch[6];
    net->P = P; net->ld = ld; net->x = x; net->t = t;
    const int known = net->act >= 0 && net->act < N_ACTIVATIONS && (net->loss == LOSS_MSE || net->loss == LOSS_XENT);
    return known ? 0 : NEGD_BAD_ARCH;
}

/* ------------------------------------------------------------------ exported entry points */
/* The kernel's elementwise op (ACT_* or OP_ERF) of n values (accuracy tests and benchmarks);
 * NEGD_BAD_ARCH for an unknown op. */
int FN(negd_elementwise)(int op, const REAL *x, REAL *y, int64_t n) {
    if (op < 0 || op > OP_ERF) return NEGD_BAD_ARCH;
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, FN(vapply)(vload(x + i), op));
    for (; i < n; i++) {
        REAL a[VL] = {0}, b[VL];
        a[0] = x[i];
        vstore(b, FN(vapply)(vload(a), op));
        y[i] = b[0];
    }
    return 0;
}

/* The kernel's tanh of n values. */
void FN(negd_tanh)(const REAL *x, REAL *y, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, FN(vtanh)(vload(x + i)));
    if (i < n) FN(negd_elementwise)(ACT_TANH, x + i, y + i, n - i);
}

/* ------------------------------------------------------------------ machine limits (negd bench) */
/* One core's FMA peak in this type: FLOP (2 per lane and FMA) per CPU-second of this thread, from
 * FMA_CHAINS independent chains of vector FMAs held in registers (enough to cover the FMA latency
 * times the FMA ports of current x86 cores), run for about `seconds`. */
#define FMA_CHAINS 10
double FN(negd_fma_peak)(double seconds) {
    vf c[FMA_CHAINS];
    const vf a = vset1((REAL)1.0000001), b = vset1((REAL)-1e-7);
    for (int j = 0; j < FMA_CHAINS; j++) c[j] = vset1((REAL)j);
    const double t0 = thread_cpu_seconds();
    double t = t0;
    int64_t rounds = 0;
    do {
        for (int k = 0; k < 100000; k++)
            for (int j = 0; j < FMA_CHAINS; j++) c[j] = vfma(c[j], a, b);
        rounds++;
        t = thread_cpu_seconds();
    } while (t - t0 < seconds);
    REAL lanes[VL];
    vf sum = c[0];
    for (int j = 1; j < FMA_CHAINS; j++) sum = vadd(sum, c[j]);
    vstore(lanes, sum);
    negd_limit_sink = (double)lanes[0]; /* the chains' result is used: they cannot be optimized away */
    return (double)rounds * 100000.0 * FMA_CHAINS * VL * 2.0 / (t - t0);
}

/* The kernel's tanh in this type: evaluations per CPU-second of this thread over 2048 values that
 * stay in L1 (load, tanh, store, as the layers' activation pass does), run for about `seconds`. */
double FN(negd_tanh_throughput)(double seconds) {
    enum { LEN = 2048 };
    static __thread REAL x_tls[LEN], y_tls[LEN];
    /* the arrays' addresses once: an access to a __thread array in a shared library may call
     * __tls_get_addr, and the asm's memory clobber below made gcc call it again for every vector (the
     * probe measured 11.4 instead of ~7.2 cycles per float32 vector, and 40 instead of ~19 for float64) */
    REAL *x = x_tls, *y = y_tls;
    __asm__ volatile("" : "+r"(x), "+r"(y));
    for (int i = 0; i < LEN; i++) x[i] = (REAL)(i - LEN / 2) / (REAL)256;
    const double t0 = thread_cpu_seconds();
    double t = t0;
    int64_t rounds = 0;
    do {
        for (int k = 0; k < 200; k++) {
            for (int i = 0; i < LEN; i += VL) vstore(y + i, FN(vtanh)(vload(x + i)));
            __asm__ volatile("" : : "r"(x), "r"(y) : "memory"); /* each pass is stored and read back */
        }
        rounds++;
        t = thread_cpu_seconds();
    } while (t - t0 < seconds);
    negd_limit_sink = (double)y[LEN / 3];
    return (double)rounds * 200.0 * LEN / (t - t0);
}
#undef FMA_CHAINS

/* loss[r] (double) of every row r of params [R, N]. */
int FN(negd_mlp_loss)(const int32_t *arch, int64_t P, int64_t ld, const REAL *x, const REAL *t,
                      const REAL *params, int64_t R, int64_t N, double *loss, int nthreads) {
    FN(net_t) net;
    int err = FN(net_from)(&net, arch, P, ld, x, t);
    if (err) return err;
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1)
    {
        REAL *scratch = aligned_alloc(32, FN(scratch_len)(&net) * sizeof(REAL));
        if (!scratch) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(dynamic, realization_chunk(R, nthreads))
            for (int64_t r = 0; r < R; r++) loss[r] = FN(net_loss)(&net, params + r * N, scratch);
        }
        free(scratch);
    }
    return err;
}

/* steps of neuroevolution of R realizations, in place on params [R, N] and loss [R] (double).
 * sigma: one value (sigma_len 1) or N values, of type REAL. beta: > 0, INFINITY for zero temperature.
 * counts[r]: accepted moves; ties[r]: proposals whose loss equalled the current one exactly (dU == 0,
 * the sign of a loss that does not resolve the move; see negd.resolution). accepted[r] and tied[r]
 * describe the last step. */
int FN(negd_fused_ne)(const int32_t *arch, int64_t P, int64_t ld, const REAL *x, const REAL *t,
                      REAL *params, double *loss, uint8_t *accepted, uint8_t *tied, int64_t *counts,
                      int64_t *ties,
                      const int64_t *rid, int64_t R, int64_t N, uint64_t seed, int64_t step0, int64_t steps,
                      const REAL *sigma, int64_t sigma_len, double beta, int nthreads) {
    /* counters: realizations in range, steps step0 .. step0 + steps - 1 in [0, 2^44) */
    if (steps < 0 || step0 < 0 || step0 > COUNTER_LIMIT - steps) return NEGD_BAD_STEP;
    int bad = check_counters(rid, R, NULL, 0, 0);
    if (bad) return bad;
    FN(net_t) net;
    int err = FN(net_from)(&net, arch, P, ld, x, t);
    if (err) return err;
    const int zero_temperature = isinf(beta);
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1)
    {
        REAL *scratch = aligned_alloc(32, FN(scratch_len)(&net) * sizeof(REAL));
        float *z = aligned_alloc(32, ROUND32(N) * sizeof(float));
        REAL *prop = aligned_alloc(32, ROUND32(N) * sizeof(REAL));
        if (!scratch || !z || !prop) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(dynamic, realization_chunk(R, nthreads))
            for (int64_t r = 0; r < R; r++) {
                REAL *p = params + r * N;
                double old = loss[r];
                int64_t count = 0, tie = 0;
                uint8_t last = accepted[r], last_tie = tied[r];
                for (int64_t s = 0; s < steps; s++) {
                    /* words 1..3 per step: the high step bits enter word 3 past 2^32 steps */
                    const ctr_t mutation = counter_words(step0 + s, rid[r], 0u);
                    normals(seed, mutation, N, z);
                    /* (REAL)xi * sigma, then + x: the two roundings of negd.rules.Neuroevolution */
                    int moved = 0;
                    if (sigma_len == 1) {
                        const REAL sg = sigma[0];
                        for (int64_t i = 0; i < N; i++) prop[i] = p[i] + (REAL)z[i] * sg;
                    } else {
                        for (int64_t i = 0; i < N; i++) prop[i] = p[i] + (REAL)z[i] * sigma[i];
                    }
                    for (int64_t i = 0; i < N; i++) moved |= prop[i] != p[i];
                    double fresh = FN(net_loss)(&net, prop, scratch);
                    /* negd.rules.metropolis_accept, in the same float64 arithmetic */
                    double d_u = fresh - old;
                    last_tie = d_u == 0;
                    tie += last_tie;
                    int downhill = d_u <= 0 || !isfinite(old);
                    int ok;
                    if (zero_temperature) {
                        ok = isfinite(fresh) && downhill;
                    } else {
                        double u = (double)uniform_bits(seed, counter_words(step0 + s, rid[r], 1u)) * 0x1p-32;
                        ok = isfinite(fresh) && (downhill || u < exp(-beta * d_u));
                    }
                    /* a proposal that rounds back to x (sigma below the parameters' resolution) is no move */
                    ok = ok && moved;
                    if (ok) {
                        memcpy(p, prop, N * sizeof(REAL));
                        old = fresh;
                        count++;
                    }
                    last = (uint8_t)ok;
                }
                loss[r] = old;
                counts[r] = count;
                ties[r] = tie;
                accepted[r] = last;
                tied[r] = last_tie;
            }
        }
        free(scratch); free(z); free(prop);
    }
    return err;
}

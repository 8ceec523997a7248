/* Forward pass, loss and fused neuroevolution of an MLP, written once for one parameter type.
 *
 * negd_kernels.c includes this file twice: once with REAL = float (8 points per AVX2 register)
 * and once with REAL = double (4 per register). Before each inclusion it defines
 *   REAL, FN(name)                     the parameter type and the suffix of every name (_f32, _f64);
 *   vf, VL, vset1 ... vdiv, PIN3       the vector layer of that type (vsel, vceq, vclt: lane masks);
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

/* One register tile of a dense layer: MO outputs x NV point vectors. */
static inline __attribute__((always_inline)) void FN(dense_tile)(
        const int MO, const int NV, const REAL *W, int fan_in, const REAL *bias,
        const REAL *hin, int64_t ld_in, REAL *hout, int64_t ld_out, int act) {
    /* act is a runtime code, but one per layer: the branch in the store loop below is predictable */
    vf acc[4][3];
    for (int m = 0; m < MO; m++)
        for (int k = 0; k < NV; k++) acc[m][k] = bias ? vset1(bias[m]) : vzero();
    for (int i = 0; i < fan_in; i++) {
        vf h[3];
        for (int k = 0; k < NV; k++) h[k] = vload(hin + i * ld_in + k * VL);
        /* keep the NV input vectors in registers: otherwise gcc re-loads them in every FMA
         * (MO times as many loads, and the tile becomes load bound) */
        if (NV == 3) PIN3(h);
        for (int m = 0; m < MO; m++) {
            vf w = vset1(W[(int64_t)m * fan_in + i]);
            for (int k = 0; k < NV; k++) acc[m][k] = vfma(w, h[k], acc[m][k]);
        }
    }
    for (int m = 0; m < MO; m++)
        for (int k = 0; k < NV; k++)
            vstore(hout + m * ld_out + k * VL, FN(vapply)(acc[m][k], act));
}

/* hout[o][0:nv*VL] = act(W hin + b) for a block of nv point vectors (act a constant where inlined). */
static inline __attribute__((always_inline)) void FN(dense_act)(
        const REAL *W, const REAL *bias, int fan_in, int fan_out, const REAL *hin, int64_t ld_in, REAL *hout,
        int64_t ld_out, int nv, int act) {
    int o = 0;
    for (; o + 4 <= fan_out; o += 4) {
        const REAL *Wo = W + (int64_t)o * fan_in, *bo = bias ? bias + o : NULL;
        int k = 0;
        for (; k + 3 <= nv; k += 3)
            FN(dense_tile)(4, 3, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
        for (; k < nv; k++)
            FN(dense_tile)(4, 1, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
    }
    for (; o < fan_out; o++) {
        const REAL *Wo = W + (int64_t)o * fan_in, *bo = bias ? bias + o : NULL;
        int k = 0;
        for (; k + 3 <= nv; k += 3)
            FN(dense_tile)(1, 3, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
        for (; k < nv; k++)
            FN(dense_tile)(1, 1, Wo, fan_in, bo, hin + k * VL, ld_in, hout + o * ld_out + k * VL, ld_out, act);
    }
}

/* FN(dense_act) with the activation as a compile-time constant in each case: a runtime code reaching
 * the tiles made gcc keep every activation's code in the hot loop (deep 8x32 net: 0.76x as fast). */
static void FN(dense)(const REAL *W, const REAL *bias, int fan_in, int fan_out, const REAL *hin,
                      int64_t ld_in, REAL *hout, int64_t ld_out, int nv, int act) {
    switch (act) {
    case ACT_TANH: FN(dense_act)(W, bias, fan_in, fan_out, hin, ld_in, hout, ld_out, nv, ACT_TANH); break;
    case ACT_RELU: FN(dense_act)(W, bias, fan_in, fan_out, hin, ld_in, hout, ld_out, nv, ACT_RELU); break;
    case ACT_GELU: FN(dense_act)(W, bias, fan_in, fan_out, hin, ld_in, hout, ld_out, nv, ACT_GELU); break;
    default: FN(dense_act)(W, bias, fan_in, fan_out, hin, ld_in, hout, ld_out, nv, ACT_IDENTITY); break;
    }
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
void FN(negd_tanh)(const REAL *x, REAL *y, int64_t n) { FN(negd_elementwise)(ACT_TANH, x, y, n); }

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
#pragma omp for schedule(static)
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
#pragma omp for schedule(static)
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

/*
 * Compiled inner loops of the audio core: one call per 20 ms frame and direction.
 *
 * Optional: built at install time when a C compiler is present; telephony/audio falls back to
 * numpy otherwise, with output identical to within 1 LSB. No numpy C-API: buffers only.
 *
 * up3(state, taps, decode_table, ulaw) -> bytes
 *   state: writable buffer of (K-1) doubles, K = taps per polyphase branch (history, 8 kHz)
 *   taps:  buffer of 3*K doubles, bank[j*3 + p] (the polyphase matrix, window index j)
 *   decode_table: 256 int16 (μ-law code -> sample)
 *   ulaw:  μ-law bytes, any length n; returns 3n pcm16 little-endian samples (6n bytes)
 *
 * down3(state, kernel, encode_table, pcm16) -> bytes
 *   state: writable buffer of (T-1) + 3 doubles: history of T-1 input samples, then up to two
 *          pending samples and their count in the last slot
 *   kernel: T doubles (reversed low-pass)
 *   encode_table: 65536 uint8 (pcm16 bit pattern -> μ-law code)
 *   pcm16: whole int16 samples, little-endian (an odd trailing byte is the caller's concern)
 *   returns one μ-law byte per completed group of three input samples *
 * echo_frame(block, ring, h, cap, window, near, far, pos, learned, since_caller,
 *            prior, margin, step, share, learn_share, hold) -> (pos, share, since_caller, taught)
 *   One frame of the echo judge (telephony/audio/echo_judge.py, whose numpy path is the
 *   reference): the band powers of the caller's frame and of what played (a 256-point real
 *   FFT of each), the band-power echo estimate over LAGS frames, the share of the frame's power
 *   beyond it, and, on a frame of echo alone, one NLMS step of the echo path.
 *   block: writable 2*256 doubles (the last samples of near, then of far); ring: writable
 *   2*LAGS*13 doubles; h: writable LAGS*13 doubles; cap: LAGS*13 doubles (the most echo the
 *   line's quiet frames allow, per lag and band: before the path has learned, the prior is
 *   held under sum_k cap*far); window: 256 doubles; near, far: 320 bytes of pcm16 each.
 *   taught: 0 (no step), 1 (a step on a silent frame), 2 (a step on sound). The module's
 *   ECHO_ABI (2) names this signature.
 *
 * nlms(w, near, far, first, count, offset, mu, adapt) -> residual energy
 *   The early echo fit (telephony/audio/echo_fit.py, whose numpy loop is the reference): a
 *   waveform echo path of len(w) taps at a known bulk delay. For each sample j in [first,
 *   first + count): y = sum_k w[k] * far[j - offset - k], e = near[j] - y; returns the sum of
 *   e^2 and, when adapt, takes one normalised LMS step per sample (w += mu e x / (x.x + eps),
 *   eps = 1000 per tap). w: writable doubles; near, far: doubles of one length (the presence
 *   test's buffers, far aligned with near); raises ValueError when a sample's window falls
 *   outside them.
 *
 * mean_square(pcm16) -> float
 *   The mean of the squared samples of pcm16 little-endian bytes (0.0 when empty): the speech
 *   detector's loudness, asked of every caller frame while the agent is audible. Raises
 *   ValueError on an odd byte count.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Round half to even (as numpy.rint) and clip to int16. Adding and removing 1.5 * 2^52 rounds a
 * double of magnitude below 2^51 to an integer in the default rounding mode, inline (nearbyint is
 * a library call); the clip comes first so the operand is always in range. */
static inline int16_t to_i16(double v) {
    if (v > 32767.0) return 32767;
    if (v < -32768.0) return -32768;
    volatile double shifted = v + 6755399441055744.0;
    return (int16_t)(shifted - 6755399441055744.0);
}

/* acc[i] += c * x[i] for i < n: independent lanes, so the compiler vectorises it exactly. */
static inline void axpy(double *restrict acc, const double *restrict x, double c, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) acc[i] += c * x[i];
}

#define STACK_SAMPLES 2048

/* The filters' multiply-adds, each sample's sum in the same order whatever the vector width:
 * with GCC on glibc x86-64 also compiled for AVX2 (four doubles a vector instead of two; no
 * FMA, so every rounding is as before), chosen at load time by what the CPU has. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define WIDE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WIDE_CLONES
#endif

/* up3: acc[p * n + i] = sum_j bank[j * 3 + p] * x[i + j], j < k (the polyphase branches) */
WIDE_CLONES
static void up3_kernel(double *acc, const double *x, const double *bank, Py_ssize_t k,
                       Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < k; j++)
        for (int p = 0; p < 3; p++) axpy(acc + p * n, x + j, bank[j * 3 + p], n);
}

/* down3: acc[g] = sum_r sum_m h[3m + r] s_r[g + m] (the phase streams, span samples each) */
WIDE_CLONES
static void down3_kernel(double *acc, const double *phase, const double *h, Py_ssize_t span,
                         Py_ssize_t taps, Py_ssize_t groups) {
    for (int r = 0; r < 3; r++)
        for (Py_ssize_t m = 0; 3 * m + r < taps; m++)
            axpy(acc, phase + r * span + m, h[3 * m + r], groups);
}

static PyObject *up3(PyObject *self, PyObject *args) {
    Py_buffer st, tp, tab, in;
    if (!PyArg_ParseTuple(args, "w*y*y*y*", &st, &tp, &tab, &in)) return NULL;
    PyObject *out = NULL;
    double *heap = NULL;
    Py_ssize_t hist_n = st.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t k = hist_n + 1;
    if (tp.len != (Py_ssize_t)(3 * k * sizeof(double)) || tab.len != 256 * 2) {
        PyErr_SetString(PyExc_ValueError, "up3: state, taps or table of the wrong size");
        goto done;
    }
    const double *bank = (const double *)tp.buf;
    const int16_t *table = (const int16_t *)tab.buf;
    const uint8_t *codes = (const uint8_t *)in.buf;
    Py_ssize_t n = in.len;
    double stack[STACK_SAMPLES * 4 + 64];
    double *x = stack;
    size_t need = (size_t)(hist_n + n + 3 * n);
    if (need > sizeof(stack) / sizeof(double)) {
        heap = (double *)PyMem_Malloc(need * sizeof(double));
        if (!heap) { PyErr_NoMemory(); goto done; }
        x = heap;
    }
    double *acc = x + hist_n + n; /* 3 phases, n outputs each */
    memcpy(x, st.buf, (size_t)hist_n * sizeof(double));
    for (Py_ssize_t i = 0; i < n; i++) x[hist_n + i] = (double)table[codes[i]];
    memset(acc, 0, (size_t)(3 * n) * sizeof(double));
    up3_kernel(acc, x, bank, k, n);
    out = PyBytes_FromStringAndSize(NULL, n * 6);
    if (out) {
        int16_t *y = (int16_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++)
            for (int p = 0; p < 3; p++) y[3 * i + p] = to_i16(acc[p * n + i]);
        memcpy(st.buf, x + n, (size_t)hist_n * sizeof(double));
    }
done:
    PyMem_Free(heap);
    PyBuffer_Release(&st); PyBuffer_Release(&tp); PyBuffer_Release(&tab); PyBuffer_Release(&in);
    return out;
}

static PyObject *down3(PyObject *self, PyObject *args) {
    Py_buffer st, kr, tab, in;
    if (!PyArg_ParseTuple(args, "w*y*y*y*", &st, &kr, &tab, &in)) return NULL;
    PyObject *out = NULL;
    double *heap = NULL;
    Py_ssize_t taps = kr.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t hist_n = taps - 1;
    if (taps < 4 || hist_n % 3 || st.len != (Py_ssize_t)((hist_n + 3) * sizeof(double)) ||
        tab.len != 65536 || in.len % 2) {
        PyErr_SetString(PyExc_ValueError, "down3: state, kernel, table or input of wrong size");
        goto done;
    }
    double *state = (double *)st.buf;
    const double *h = (const double *)kr.buf;
    const uint8_t *enc = (const uint8_t *)tab.buf;
    const uint8_t *raw = (const uint8_t *)in.buf;
    Py_ssize_t pending = (Py_ssize_t)state[hist_n + 2];
    Py_ssize_t n_in = in.len / 2;
    Py_ssize_t total = pending + n_in;
    Py_ssize_t groups = total / 3;
    Py_ssize_t used = groups * 3;
    Py_ssize_t span = hist_n / 3 + groups + 1; /* length of each phase stream */
    double stack[STACK_SAMPLES * 3 + 512];
    double *x = stack;
    size_t need = (size_t)(hist_n + total + 3 * span + groups);
    if (need > sizeof(stack) / sizeof(double)) {
        heap = (double *)PyMem_Malloc(need * sizeof(double));
        if (!heap) { PyErr_NoMemory(); goto done; }
        x = heap;
    }
    double *phase = x + hist_n + total; /* s_r[t] = x[3t + 2 + r] */
    double *acc = phase + 3 * span;
    /* x = history | pending | input */
    memcpy(x, state, (size_t)(hist_n + pending) * sizeof(double));
    for (Py_ssize_t i = 0; i < n_in; i++) {
        int16_t s = (int16_t)(raw[2 * i] | (raw[2 * i + 1] << 8));
        x[hist_n + pending + i] = (double)s;
    }
    /* y[g] = sum_j h[j] x[3g + 2 + j] = sum_r sum_m h[3m + r] s_r[g + m] */
    for (int r = 0; r < 3; r++) {
        double *s_r = phase + r * span;
        Py_ssize_t len = (hist_n + 1 - r + 2) / 3 - 1 + groups; /* t < groups + max m */
        for (Py_ssize_t t = 0; t < len && 3 * t + 2 + r < hist_n + total; t++)
            s_r[t] = x[3 * t + 2 + r];
    }
    memset(acc, 0, (size_t)groups * sizeof(double));
    down3_kernel(acc, phase, h, span, taps, groups);
    out = PyBytes_FromStringAndSize(NULL, groups);
    if (out) {
        uint8_t *y = (uint8_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t g = 0; g < groups; g++) y[g] = enc[(uint16_t)to_i16(acc[g])];
        /* new history: the taps-1 samples before the first unused one; then the leftovers */
        memmove(state, x + used, (size_t)hist_n * sizeof(double));
        Py_ssize_t left = total - used;
        for (Py_ssize_t i = 0; i < left; i++) state[hist_n + i] = x[hist_n + used + i];
        state[hist_n + 2] = (double)left;
    }
done:
    PyMem_Free(heap);
    PyBuffer_Release(&st); PyBuffer_Release(&kr); PyBuffer_Release(&tab); PyBuffer_Release(&in);
    return out;
}


/* ---------------------------------------------------------------- the echo judge's frame */

#define EJ_FFT 256
#define EJ_FRAME 160
#define EJ_BANDS 13 /* FFT bins 8..111 in bands of 8: 250-3500 Hz */

static double ej_tw_re[EJ_FFT / 2], ej_tw_im[EJ_FFT / 2];
static uint8_t ej_rev[EJ_FFT / 2]; /* 7-bit reversal: the 128-point FFT of a packed real block */

static void ej_init(void) {
    for (int k = 0; k < EJ_FFT / 2; k++) {
        ej_tw_re[k] = cos(2.0 * M_PI * k / EJ_FFT);
        ej_tw_im[k] = -sin(2.0 * M_PI * k / EJ_FFT);
    }
    for (int i = 0; i < EJ_FFT / 2; i++) {
        int r = 0;
        for (int b = 0; b < 7; b++) r |= ((i >> b) & 1) << (6 - b);
        ej_rev[i] = (uint8_t)r;
    }
}

/* In-place forward complex FFT of 128 points (radix 2, decimation in time; twiddles from the
 * 256-point table: e^(-2 pi i j / len) is its entry j * 256 / len). */
static void ej_fft(double *re, double *im) {
    for (int i = 0; i < EJ_FFT / 2; i++) {
        int j = ej_rev[i];
        if (j > i) {
            double t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (int len = 2; len <= EJ_FFT / 2; len <<= 1) {
        int half = len >> 1, step = EJ_FFT / len;
        for (int i = 0; i < EJ_FFT / 2; i += len)
            for (int j = 0; j < half; j++) {
                double wr = ej_tw_re[j * step], wi = ej_tw_im[j * step];
                int a = i + j, b = a + half;
                double tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr; im[b] = im[a] - ti;
                re[a] += tr; im[a] += ti;
            }
    }
}

static PyObject *echo_frame(PyObject *self, PyObject *args) {
    Py_buffer bl, rg, hb, cb, wn, nb, fb;
    Py_ssize_t pos, since;
    int learned;
    double prior_f, margin, step, share_thr, learn_share;
    Py_ssize_t hold;
    if (!PyArg_ParseTuple(args, "w*w*w*y*y*y*y*npndddddn", &bl, &rg, &hb, &cb, &wn, &nb, &fb,
                          &pos, &learned, &since, &prior_f, &margin, &step, &share_thr, &learn_share,
                          &hold))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t lags = hb.len / (Py_ssize_t)(EJ_BANDS * sizeof(double));
    if (bl.len != (Py_ssize_t)(2 * EJ_FFT * sizeof(double)) || lags < 1 ||
        hb.len != (Py_ssize_t)(lags * EJ_BANDS * sizeof(double)) || cb.len != hb.len ||
        rg.len != (Py_ssize_t)(2 * lags * EJ_BANDS * sizeof(double)) ||
        wn.len != (Py_ssize_t)(EJ_FFT * sizeof(double)) || nb.len != 2 * EJ_FRAME ||
        fb.len != 2 * EJ_FRAME || pos < 0 || pos > lags) {
        PyErr_SetString(PyExc_ValueError, "echo_frame: a state buffer or frame of the wrong size");
        goto done;
    }
    double *block = (double *)bl.buf, *ring = (double *)rg.buf, *h = (double *)hb.buf;
    const double *cap = (const double *)cb.buf;
    const double *window = (const double *)wn.buf;
    const uint8_t *near = (const uint8_t *)nb.buf, *farb = (const uint8_t *)fb.buf;
    /* the block: the last 96 samples of each, then this frame */
    const int keep = EJ_FFT - EJ_FRAME;
    memmove(block, block + EJ_FRAME, (size_t)keep * sizeof(double));
    memmove(block + EJ_FFT, block + EJ_FFT + EJ_FRAME, (size_t)keep * sizeof(double));
    for (int i = 0; i < EJ_FRAME; i++) {
        block[keep + i] = (double)(int16_t)(near[2 * i] | (near[2 * i + 1] << 8));
        block[EJ_FFT + keep + i] = (double)(int16_t)(farb[2 * i] | (farb[2 * i + 1] << 8));
    }
    /* the spectra, one real FFT each (one complex FFT of both would leak far into a silent
     * near frame by rounding, and a silent frame must have no power at all): the 256 real
     * samples packed as 128 complex ones (even samples real, odd imaginary), a 128-point FFT
     * Z, then X[k] = (Z[k] + Z*[128-k]) / 2 + W^k (Z[k] - Z*[128-k]) / 2i, W = e^(-2 pi i/256),
     * for the bins the bands use (8..111): half the work of a 256-point complex FFT, and a
     * silent block still gives exactly 0 */
    double n[EJ_BANDS], f[EJ_BANDS];
    for (int side = 0; side < 2; side++) {
        double re[EJ_FFT / 2], im[EJ_FFT / 2];
        const double *x = block + side * EJ_FFT;
        for (int i = 0; i < EJ_FFT / 2; i++) {
            re[i] = x[2 * i] * window[2 * i];
            im[i] = x[2 * i + 1] * window[2 * i + 1];
        }
        ej_fft(re, im);
        double *bands = side ? f : n;
        for (int b = 0; b < EJ_BANDS; b++) {
            double p = 0.0;
            for (int k = 8 * (b + 1); k < 8 * (b + 2); k++) {
                int c = EJ_FFT / 2 - k;
                double er = 0.5 * (re[k] + re[c]), ei = 0.5 * (im[k] - im[c]);
                double dr = re[k] - re[c], di = im[k] + im[c]; /* Z[k] - Z*[c] */
                double orr = 0.5 * di, oi = -0.5 * dr;           /* divided by 2i */
                double wr = ej_tw_re[k], wi = ej_tw_im[k];
                double xr = er + wr * orr - wi * oi, xi = ei + wr * oi + wi * orr;
                p += xr * xr + xi * xi;
            }
            bands[b] = p;
        }
    }
    /* what played goes into the ring, newest first (see EchoJudge._push) */
    if (pos == 0) {
        memcpy(ring + lags * EJ_BANDS, ring, (size_t)(lags * EJ_BANDS) * sizeof(double));
        pos = lags;
    }
    pos -= 1;
    memcpy(ring + pos * EJ_BANDS, f, sizeof(f));
    const double *far = ring + pos * EJ_BANDS; /* row k: k frames ago */
    double prior[EJ_BANDS], estimate[EJ_BANDS];
    double total = 0.0, beyond = 0.0, prior_sum = 0.0;
    for (int b = 0; b < EJ_BANDS; b++) {
        double top = 0.0, est = 0.0, most = 0.0;
        for (Py_ssize_t k = 0; k < lags; k++) {
            double v = far[k * EJ_BANDS + b];
            if (v > top) top = v;
            est += h[k * EJ_BANDS + b] * v;
        }
        prior[b] = prior_f * top;
        estimate[b] = est;
        double bound = margin * est;
        if (!learned) { /* the prior, held under the cap, stands until the path has learned */
            for (Py_ssize_t k = 0; k < lags; k++) most += cap[k * EJ_BANDS + b] * far[k * EJ_BANDS + b];
            double held = prior[b] < most ? prior[b] : most;
            if (held > bound) bound = held;
        }
        total += n[b];
        if (n[b] > bound) beyond += n[b] - bound;
        prior_sum += prior[b];
    }
    double share = total > 0.0 ? beyond / total : 0.0;
    since = share > share_thr ? 0 : since + 1;
    int taught = 0;
    if (since >= hold && share < learn_share && total <= prior_sum && prior_sum > 0.0) {
        for (int b = 0; b < EJ_BANDS; b++) {
            double norm = 1e-9, target = n[b] < prior[b] ? n[b] : prior[b];
            for (Py_ssize_t k = 0; k < lags; k++) norm += far[k * EJ_BANDS + b] * far[k * EJ_BANDS + b];
            double g = step * (target - estimate[b]) / norm;
            for (Py_ssize_t k = 0; k < lags; k++) {
                double v = h[k * EJ_BANDS + b] + far[k * EJ_BANDS + b] * g;
                h[k * EJ_BANDS + b] = v > 0.0 ? v : 0.0;
            }
        }
        taught = total > 0.0 ? 2 : 1;
    }
    out = Py_BuildValue("ndni", pos, share, since, taught);
done:
    PyBuffer_Release(&bl); PyBuffer_Release(&rg); PyBuffer_Release(&hb); PyBuffer_Release(&cb);
    PyBuffer_Release(&wn); PyBuffer_Release(&nb); PyBuffer_Release(&fb);
    return out;
}

static PyObject *nlms(PyObject *self, PyObject *args) {
    Py_buffer wb, nb, fb;
    Py_ssize_t first, count, offset;
    double mu;
    int adapt;
    if (!PyArg_ParseTuple(args, "w*y*y*nnndp", &wb, &nb, &fb, &first, &count, &offset, &mu, &adapt))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t taps = wb.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t n = nb.len / (Py_ssize_t)sizeof(double);
    if (taps < 1 || wb.len != taps * (Py_ssize_t)sizeof(double) || fb.len != nb.len ||
        nb.len != n * (Py_ssize_t)sizeof(double) || count < 0 || first - offset - taps + 1 < 0 ||
        first - offset >= n || first + count > n) {
        PyErr_SetString(PyExc_ValueError, "nlms: a window outside the buffers");
        goto done;
    }
    double *w = (double *)wb.buf;
    const double *near = (const double *)nb.buf, *far = (const double *)fb.buf;
    const double eps = 1000.0 * (double)taps;
    double energy = 0.0;
    for (Py_ssize_t j = first; j < first + count; j++) {
        const double *x = far + (j - offset - taps + 1); /* x[taps-1-k] = far[j - offset - k] */
        double y = 0.0, xx = 0.0;
        for (Py_ssize_t i = 0; i < taps; i++) {
            y += w[taps - 1 - i] * x[i];
            xx += x[i] * x[i];
        }
        double e = near[j] - y;
        energy += e * e;
        if (adapt) {
            double g = mu * e / (xx + eps);
            for (Py_ssize_t i = 0; i < taps; i++) w[taps - 1 - i] += g * x[i];
        }
    }
    out = PyFloat_FromDouble(energy);
done:
    PyBuffer_Release(&wb); PyBuffer_Release(&nb); PyBuffer_Release(&fb);
    return out;
}

static PyObject *mean_square(PyObject *self, PyObject *args) {
    Py_buffer pb;
    if (!PyArg_ParseTuple(args, "y*", &pb)) return NULL;
    if (pb.len % 2) {
        PyBuffer_Release(&pb);
        PyErr_SetString(PyExc_ValueError, "mean_square: pcm16 needs an even number of bytes");
        return NULL;
    }
    const uint8_t *b = (const uint8_t *)pb.buf;
    Py_ssize_t n = pb.len / 2;
    int64_t acc = 0; /* 2^30 a sample at most: exact up to 2^33 samples */
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t v = (int16_t)(b[2 * i] | (b[2 * i + 1] << 8));
        acc += (int64_t)v * v;
    }
    PyBuffer_Release(&pb);
    return PyFloat_FromDouble(n ? (double)acc / (double)n : 0.0);
}

static PyMethodDef methods[] = {
    {"up3", up3, METH_VARARGS, "μ-law 8 kHz -> pcm16 24 kHz, one frame (see the file header)."},
    {"down3", down3, METH_VARARGS, "pcm16 24 kHz -> μ-law 8 kHz, one frame (see the file header)."},
    {"echo_frame", echo_frame, METH_VARARGS, "One frame of the echo judge (see the file header)."},
    {"nlms", nlms, METH_VARARGS, "The early echo fit over a span of samples (see the file header)."},
    {"mean_square", mean_square, METH_VARARGS, "Mean square of pcm16 samples (see the file header)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fir", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fir(void) {
    ej_init();
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ECHO_ABI", 2) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

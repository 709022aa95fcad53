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
 *   returns one μ-law byte per completed group of three input samples
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
    for (Py_ssize_t j = 0; j < k; j++)
        for (int p = 0; p < 3; p++) axpy(acc + p * n, x + j, bank[j * 3 + p], n);
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
    for (int r = 0; r < 3; r++)
        for (Py_ssize_t m = 0; 3 * m + r < taps; m++)
            axpy(acc, phase + r * span + m, h[3 * m + r], groups);
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

static PyMethodDef methods[] = {
    {"up3", up3, METH_VARARGS, "μ-law 8 kHz -> pcm16 24 kHz, one frame (see the file header)."},
    {"down3", down3, METH_VARARGS, "pcm16 24 kHz -> μ-law 8 kHz, one frame (see the file header)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fir", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fir(void) { return PyModule_Create(&module); }

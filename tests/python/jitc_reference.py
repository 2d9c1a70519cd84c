"""An independent numpy reimplementation of the JIT-connectivity generator, written from the
specification in kernels/jitc/jitc_gen.h alone. The tests compare it bit for bit with the
library: this is the check that the specification is complete and that the compiled code
(with its compiler flags) follows it."""

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Vectorised Philox4x32-10 over uint64 arrays holding 32-bit words."""
    c = [np.asarray(v, dtype=np.uint64) & MASK32 for v in (c0, c1, c2, c3)]
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    for rnd in range(10):
        if rnd:
            k0 = (k0 + W0) & 0xFFFFFFFF
            k1 = (k1 + W1) & 0xFFFFFFFF
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK32
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return c


def m53(a, b):
    return ((a << np.uint64(32)) | b) >> np.uint64(11)


def m52(a, b):
    return ((a << np.uint64(32)) | b) >> np.uint64(12)


INV_ODD = [1.0 / (2 * k + 1) for k in range(20)]  # nearest doubles, as in the header
LN2 = float.fromhex("0x1.62e42fefa39efp-1")
SQRT2 = float.fromhex("0x1.6a09e667f3bcdp+0")


def _series(z, terms):
    p = np.full_like(z, INV_ODD[terms - 1])
    for k in range(terms - 2, -1, -1):
        p = p * z + INV_ODD[k]
    return p


def det_log(u):
    u = np.asarray(u, dtype=np.float64)
    bits = u.view(np.uint64)
    e = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 1023
    m = ((bits & np.uint64((1 << 52) - 1)) | np.uint64(1023 << 52)).view(np.float64)
    big = m > SQRT2
    m = np.where(big, m * 0.5, m)
    e = e + big
    s = (m - 1.0) / (m + 1.0)
    return e.astype(np.float64) * LN2 + (s + s) * _series(s * s, 10)


def det_log1m(p):
    if p >= 0.5:
        return float(det_log(np.array([1.0 - p]))[0])
    s = np.array([-p / (2.0 - p)])
    return float(((s + s) * _series(s * s, 20))[0])


_AS241 = {
    "A": [3.387132872796366608, 133.14166789178437745, 1971.5909503065514427,
          13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
          33430.575583588128105, 2509.0809287301226727],
    "B": [1.0, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
          21213.794301586595867, 39307.89580009271061, 28729.085735721942674,
          5226.495278852545925],
    "C": [1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055,
          3.64784832476320460504, 1.27045825245236838258, .24178072517745061177,
          .0227238449892691845833, 7.7454501427834140764e-4],
    "D": [1.0, 2.05319162663775882187, 1.6763848301838038494, .68976733498510000455,
          .14810397642748007459, .0151986665636164571966, 5.475938084995344946e-4,
          1.05075007164441684324e-9],
    "E": [6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358,
          .29656057182850489123, .026532189526576123093, .0012426609473880784386,
          2.71155556874348757815e-5, 2.01033439929228813265e-7],
    "F": [1.0, .59983220655588793769, .13692988092273580531, .0148753612908506148525,
          7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7,
          2.04426310338993978564e-15],
}


def _horner(x, c):
    p = np.full_like(x, c[7])
    for k in range(6, -1, -1):
        p = p * x + c[k]
    return p


def det_ndtri(v):
    v = np.asarray(v, dtype=np.float64)
    q = v - 0.5
    central = (q <= 0.425) & (q >= -0.425)
    r_c = 0.180625 - q * q
    z_c = (q * _horner(r_c, _AS241["A"])) / _horner(r_c, _AS241["B"])
    tail = np.where(q < 0, v, 1.0 - v)
    tail = np.where(central, 0.5, tail)  # keep log's argument valid where unused
    r = np.sqrt(-det_log(tail))
    near = r <= 5.0
    r1 = r - 1.6
    r2 = r - 5.0
    z_n = _horner(r1, _AS241["C"]) / _horner(r1, _AS241["D"])
    z_f = _horner(r2, _AS241["E"]) / _horner(r2, _AS241["F"])
    z_t = np.where(near, z_n, z_f)
    z_t = np.where(q < 0, -z_t, z_t)
    return np.where(central, z_c, z_t)


def block_shift(prob):
    b = 5
    while b < 24 and np.ldexp(prob, b) < 32.0:
        b += 1
    return b


def entries(prob, seed, shape):
    """(rows, cols) of the non-zero entries of A, row-major order."""
    n_rows, n_cols = shape
    useed = seed & 0xFFFFFFFFFFFFFFFF
    k0, k1 = useed & 0xFFFFFFFF, useed >> 32
    b = block_shift(prob)
    block = 1 << b
    n_blocks = (n_cols + block - 1) // block
    rows_out, cols_out = [], []
    if n_rows == 0 or n_blocks == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rr, bb = np.meshgrid(np.arange(n_rows), np.arange(n_blocks), indexing="ij")
    rr, bb = rr.ravel(), bb.ravel()
    start = bb * block
    end = np.minimum(start + block, n_cols)
    if prob >= 1.0:
        for r, s, e in zip(rr, start, end):
            rows_out.append(np.full(e - s, r))
            cols_out.append(np.arange(s, e))
    else:
        inv_l = 1.0 / det_log1m(prob)
        c = start.copy()
        draw = np.zeros_like(c)
        alive = c < end
        while alive.any():
            idx = np.nonzero(alive)[0]
            d = draw[idx]
            w = philox4x32_10(rr[idx], bb[idx], d // 2, np.zeros_like(d), k0, k1)
            m = np.where(d % 2 == 0, m53(w[0], w[1]), m53(w[2], w[3]))
            u = (m + np.uint64(1)).astype(np.float64) * 2.0 ** -53
            r = det_log(u) * inv_l
            draw[idx] += 1
            stop = r >= (end[idx] - c[idx]).astype(np.float64)
            go = idx[~stop]
            c[go] += r[~stop].astype(np.int64)
            rows_out.append(rr[go])
            cols_out.append(c[go].copy())
            c[go] += 1
            alive[idx[stop]] = False
            alive[go] = c[go] < end[go]
    rows = np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64)
    cols = np.concatenate(cols_out) if cols_out else np.zeros(0, np.int64)
    order = np.lexsort((cols, rows))
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def variates(seed, rows, cols, dist):
    useed = seed & 0xFFFFFFFFFFFFFFFF
    k0, k1 = useed & 0xFFFFFFFF, useed >> 32
    w = philox4x32_10(rows, cols, np.zeros_like(rows), np.ones_like(rows), k0, k1)
    if dist == "uniform":
        return m53(w[0], w[1]).astype(np.float64) * 2.0 ** -53
    v = (np.uint64(2) * m52(w[0], w[1]) + np.uint64(1)).astype(np.float64) * 2.0 ** -53
    return det_ndtri(v)


def materialize(params, prob, seed, shape, dist, dtype=np.float64):
    """Dense A: the values computed in double, rounded once to dtype."""
    rows, cols = entries(prob, seed, shape)
    a = params[0]
    if dist == "homo":
        vals = np.full(rows.shape, a, dtype=np.float64)
    else:
        b = params[1]
        t = variates(seed, rows, cols, dist)
        vals = a + (b - a) * t if dist == "uniform" else a + b * t
    out = np.zeros(shape, dtype=dtype)
    out[rows, cols] = vals.astype(dtype)
    return out

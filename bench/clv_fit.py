"""BG/NBD + Gamma-Gamma fit and 12-month CLV: segments.clv against lifetimes, in one run.

    python bench/clv_fit.py [--sizes 10000,100000,1000000] [--repeat 2] [--seed 2005]

Data: customers drawn from a known BG/NBD process (r=0.25, alpha=4 per week, a=0.8, b=2.5;
CDNOW-like) and Gamma-Gamma spend (p=6, q=3.8, v=15) with a fixed seed; first purchases spread
over two years, observed to the end of the second; purchase times rounded up to whole days (as
real transaction data is) and expressed in weeks. Both libraries get the same arrays.

Timed per size, best of --repeat: BG/NBD fit, Gamma-Gamma fit (repeat customers) and the CLV
of every customer over 12 months at 1 % a month (lifetimes' customer_lifetime_value with
freq="W", i.e. 4.345 weeks a month; segments.clv with units_per_month=4.345). Printed: the
times, the speed-up, both parameter sets side by side, the largest parameter difference and the
largest CLV difference. Goal (issue 4): >= 5x faster at 1M customers, same parameters to 1e-3.

lifetimes 0.11.3 is a bench-only dependency (pyproject extra "bench"). When it is not
importable here, the script creates a separate virtualenv (var/bench-venv, or $CLV_BENCH_VENV)
with the pinned versions below, which are known to work together and with segments.clv, and
re-runs itself there; the project's .venv is never touched.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Known to work together (lifetimes 0.11.3 needs pkg_resources, gone from setuptools >= 81).
BENCH_REQUIREMENTS = [
    "numpy==2.4.6",
    "pandas==3.1.1",
    "scipy==1.17.1",
    "autograd==1.9.1",
    "lifetimes==0.11.3",
    "setuptools<81",
]
BENCH_VENV = Path(os.environ.get("CLV_BENCH_VENV", ROOT / "var" / "bench-venv"))

TRUE_BGNBD = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
TRUE_GG = {"p": 6.0, "q": 3.8, "v": 15.0}
WEEKS_PER_MONTH = 4.345  # lifetimes' factor for freq="W"
MONTHS = 12
DISCOUNT = 0.01


def _ensure_lifetimes(argv: list[str]) -> None:
    """Re-run this script in the bench virtualenv when lifetimes is not importable here."""
    try:
        import lifetimes  # noqa: F401
    except ImportError:
        pass
    else:
        return
    if os.environ.get("CLV_BENCH_IN_VENV"):
        sys.exit("lifetimes is still not importable in the bench virtualenv")
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".requirements"
    wanted = "\n".join(BENCH_REQUIREMENTS)
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"creating {BENCH_VENV} with {', '.join(BENCH_REQUIREMENTS)}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(BENCH_VENV)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *BENCH_REQUIREMENTS], check=True
        )
        stamp.write_text(wanted)
    env = {**os.environ, "CLV_BENCH_IN_VENV": "1"}
    result = subprocess.run([str(python), str(Path(__file__).resolve()), *argv], env=env)
    sys.exit(result.returncode)


def _data(n: int, seed: int):
    import numpy as np

    from segments import clv

    rng = np.random.default_rng(seed)
    t_days = rng.integers(1, 731, size=n)  # first purchase in the two years, observed to the end
    big_t = t_days / 7.0
    x, t_x = clv.bgnbd_sample(clv.BGNBDParams(**TRUE_BGNBD), big_t, rng)
    recency_days = np.where(x > 0, np.clip(np.ceil(t_x * 7.0), 1, t_days), 0)
    spend = clv.gamma_gamma_sample(clv.GammaGammaParams(**TRUE_GG), x, rng)
    spend = np.where(x > 0, np.maximum(np.round(spend, 2), 0.01), 0.0)
    return x.astype(float), recency_days / 7.0, big_t, spend


def _best(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _ours(x, recency, big_t, spend):
    from segments import clv

    times = {}
    start = time.perf_counter()
    bg = clv.bgnbd_fit(x, recency, big_t)
    times["bgnbd"] = time.perf_counter() - start
    start = time.perf_counter()
    gg = clv.gamma_gamma_fit(x, spend)  # frequency 0 rows are ignored
    times["gamma_gamma"] = time.perf_counter() - start
    start = time.perf_counter()
    value = clv.customer_lifetime_value(
        bg, gg, x, recency, big_t, spend,
        months=MONTHS, monthly_discount_rate=DISCOUNT, units_per_month=WEEKS_PER_MONTH,
    )  # fmt: skip
    times["clv"] = time.perf_counter() - start
    params = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "p": gg.p, "q": gg.q, "v": gg.v}
    return times, params, value


def _lifetimes(x, recency, big_t, spend):
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    frame = pd.DataFrame({"frequency": x, "recency": recency, "T": big_t, "monetary": spend})
    times = {}
    start = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(frame["frequency"], frame["recency"], frame["T"])
    times["bgnbd"] = time.perf_counter() - start
    start = time.perf_counter()
    repeat = frame[frame["frequency"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(repeat["frequency"], repeat["monetary"])
    times["gamma_gamma"] = time.perf_counter() - start
    start = time.perf_counter()
    value = ggf.customer_lifetime_value(
        bgf, frame["frequency"], frame["recency"], frame["T"], frame["monetary"],
        time=MONTHS, discount_rate=DISCOUNT, freq="W",
    ).to_numpy()  # fmt: skip
    times["clv"] = time.perf_counter() - start
    params = {**bgf.params_.to_dict(), **ggf.params_.to_dict()}
    return times, params, value


def _timed(fn, args, repeat):
    best = None
    for _ in range(repeat):
        times, params, value = fn(*args)
        times["total"] = sum(times.values())
        if best is None or times["total"] < best[0]["total"]:
            best = (times, params, value)
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--seed", type=int, default=2005)
    args = parser.parse_args(argv)
    _ensure_lifetimes(argv)

    import lifetimes
    import numpy as np
    import pandas as pd
    import scipy

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"scipy {scipy.__version__}, lifetimes {lifetimes.__version__}; {os.cpu_count()} CPUs"
    )
    print(f"true BG/NBD {TRUE_BGNBD}, Gamma-Gamma {TRUE_GG}; seed {args.seed}")
    print(f"timings: best of {args.repeat}; CLV over {MONTHS} months at {DISCOUNT:.0%} a month\n")
    names = ["r", "alpha", "a", "b", "p", "q", "v"]
    verdict = 0
    for n in (int(s) for s in args.sizes.split(",")):
        data = _data(n, args.seed)
        repeaters = int((data[0] > 0).sum())
        ours_t, ours_p, ours_v = _timed(_ours, data, args.repeat)
        theirs_t, theirs_p, theirs_v = _timed(_lifetimes, data, args.repeat)
        print(f"== {n:,} customers ({repeaters:,} repeat) ==")
        print(f"{'stage':<12}{'segments.clv':>14}{'lifetimes':>12}{'speed-up':>10}")
        for stage in ("bgnbd", "gamma_gamma", "clv", "total"):
            ratio = theirs_t[stage] / ours_t[stage]
            print(f"{stage:<12}{ours_t[stage]:>13.3f}s{theirs_t[stage]:>11.3f}s{ratio:>9.1f}x")
        print(f"{'param':<12}{'segments.clv':>14}{'lifetimes':>12}{'|diff|':>10}")
        diffs = []
        for name in names:
            diff = abs(ours_p[name] - theirs_p[name])
            diffs.append(diff)
            print(f"{name:<12}{ours_p[name]:>14.6f}{theirs_p[name]:>12.6f}{diff:>10.2e}")
        clv_rel = float(np.max(np.abs(ours_v - theirs_v) / np.maximum(np.abs(theirs_v), 1e-9)))
        speedup = theirs_t["total"] / ours_t["total"]
        print(
            f"max parameter |diff| {max(diffs):.2e}; max CLV relative diff {clv_rel:.2e}; "
            f"speed-up {speedup:.1f}x\n"
        )
        if n >= 1_000_000:
            ok = speedup >= 5 and max(diffs) <= 1e-3
            verdict |= 0 if ok else 1
            print(f"goal at {n:,}: >= 5x and parameters to 1e-3: {'MET' if ok else 'NOT MET'}\n")
    return verdict


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

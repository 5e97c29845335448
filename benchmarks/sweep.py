"""One parameter sweep: any DeepImpute hyperparameters x datasets x seeds, on the paper's masked-value protocol.

For each dataset (``_common.load_dataset``: genes detected in >= 5% of cells), 10 non-zeros per gene are hidden
once with ``sdi.tl.mask`` (seed 0); then every combination of the ``--set`` values is fitted with each seed
(``sdi.DeepImpute(**combination, **fixed, random_state=seed)`` on the masked counts) and scored on the hidden
entries (``sdi.tl.masked_metrics``: MSE and Pearson r in log1p space) for each fill the model has. Prints one row
per fit and, with several seeds, the mean over seeds.

It replaces the one-off experiment scripts (learning rate, batch size, epoch size, early-stopping threshold,
patience, ...), e.g.::

    python benchmarks/sweep.py --set learning_rate=1e-3,3e-3 --datasets pbmc4k_2100,mouse1m_10k --seeds 0,1,2
    python benchmarks/sweep.py --set batch_size=64,256 --set hidden_units=256,512 --fixed max_epochs=50
    python benchmarks/sweep.py --set patience=5,4,3 --set early_stop_tol=0,1e-3 --datasets sim_4000x3200

Values are Python literals (``1e-3``, ``None``, ``True``, ``"paper"``) or bare words (``--set preset=default,paper``).
``--quick``: the learning rate at 1e-3 and 3e-3 on a 300-cell simulation, two epochs (the CI smoke test).
"""

from __future__ import annotations

import ast
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402


def parse_values(text: str) -> list:
    out = []
    for v in text.split(","):
        try:
            out.append(ast.literal_eval(v))
        except (ValueError, SyntaxError):
            out.append(v)
    return out


def parse_sets(items: list[str]) -> dict[str, list]:
    sets = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            msg = f"--set/--fixed take name=value[,value...], got {item!r}"
            raise SystemExit(msg)
        sets[name.strip()] = parse_values(values)
    return sets


def run(a, combo: dict, fixed: dict, seed: int) -> dict:
    import scdeepimpute as sdi

    X, info = a.layers["masked"], a.uns["masked"]
    model = sdi.DeepImpute(**combo, **fixed, random_state=seed)
    t0 = time.perf_counter()
    model.fit(X, progress=False)
    row = {"fit s": time.perf_counter() - t0, "epochs": int(model.history_.stopped_epoch)}
    fills = ("detected", "expected") if model.params["detection_head"] else ("detected",)
    out = model.impute(X, fills=fills)
    for fill in fills:
        r = sdi.tl.masked_metrics(info["values"], out[fill][info["obs_idx"], info["var_idx"]])
        row[f"MSE {fill}"], row[f"r {fill}"] = r["mse"], r["pearson"]
    return row


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(argv=None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2", help="a swept hyperparameter")
    p.add_argument("--fixed", action="append", default=[], metavar="NAME=V", help="a hyperparameter held fixed")
    p.add_argument("--datasets", default="pbmc4k_2100", help="comma-separated names for _common.load_dataset")
    p.add_argument("--seeds", default="0", help="comma-separated fit seeds")
    p.add_argument("--cells", type=int, default=None, help="subsample each dataset to this many cells")
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds = "sim_300x200", "0"
        args.set = args.set or ["learning_rate=1e-3,3e-3"]
        args.fixed = [*args.fixed, "max_epochs=2"]
    C.quiet()
    import scdeepimpute as sdi

    sets, fixed = parse_sets(args.set), {k: v[0] for k, v in parse_sets(args.fixed).items()}
    seeds = [int(s) for s in args.seeds.split(",")]
    names = list(sets)
    rows = []
    for name in args.datasets.split(","):
        if not C.dataset_available(name):
            print(f"{name}: not in {C.SHARED}, skipped")
            continue
        a, _ = C.load_dataset(name, n_obs=args.cells)
        sdi.tl.mask(a, random_state=0)
        for values in itertools.product(*(sets[k] for k in names)):
            combo = dict(zip(names, values, strict=True))
            for seed in seeds:
                row = {"dataset": f"{name} ({a.n_obs}x{a.n_vars})", **combo, "seed": seed, **run(a, combo, fixed, seed)}
                rows.append(row)
                print(" ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)
    if not rows:
        print("no dataset available")
        return 1
    header = list(dict.fromkeys(k for r in rows for k in r))
    print(f"\nfixed: {fixed or 'none'}; masked protocol: sdi.tl.mask(random_state=0)\n")
    print(C.markdown_table(header, [[fmt(r.get(k, "")) for k in header] for r in rows]))
    if len(seeds) > 1:
        import pandas as pd

        df = pd.DataFrame(rows)
        keys = ["dataset", *names]
        metrics = [k for k in header if k not in (*keys, "seed")]
        mean = df.groupby(keys, sort=False)[metrics].agg(lambda s: s.mean()).reset_index()
        print(f"\nmean over seeds {args.seeds}:\n")
        print(C.markdown_table(list(mean.columns), [[fmt(v) for v in r] for r in mean.itertuples(index=False)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

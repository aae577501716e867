#!/usr/bin/env python3
"""Trains XGBoost on a labeljoin output's train/ channel and evaluates on validation/.

Reads the channels the way SageMaker's built-in XGBoost does with content type text/csv:
every file under the channel directory (recursively) whose name does not start with '_'
or '.', no header, label in column 0, every other column a numeric feature (empty = missing). Reports AUC
and exits non-zero if a file is unreadable, a channel is empty, or AUC <= 0.5.

Usage: python3 infra/xgboost_check.py OUTPUT_DIR [--rounds N]
"""
import argparse
import csv
import os
import sys

import numpy as np
import xgboost as xgb


def channel_files(root):
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        for name in sorted(filenames):
            if not name.startswith(("_", ".")):
                files.append(os.path.join(dirpath, name))
    return files


def read_channel(root):
    """Rows of every file of a channel as (labels, features); fails on any bad cell."""
    files = channel_files(root)
    if not files:
        sys.exit(f"error: no data files under {root}")
    rows, width = [], None
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            for n, rec in enumerate(csv.reader(f), 1):
                if not rec:
                    continue
                try:
                    # An empty field is a missing value (NaN), as in XGBoost's CSV parser.
                    values = [float(v) if v != "" else float("nan") for v in rec]
                except ValueError as e:
                    sys.exit(f"error: {path}:{n}: not numeric text/csv ({e}); a header row?")
                if width is None:
                    width = len(values)
                elif len(values) != width:
                    sys.exit(f"error: {path}:{n}: {len(values)} columns, expected {width}")
                rows.append(values)
    if not rows:
        sys.exit(f"error: {root} has files but no rows")
    data = np.asarray(rows, dtype=np.float32)
    return data[:, 0], data[:, 1:], len(files)


def auc(labels, scores):
    """Area under the ROC curve (rank statistic, ties averaged)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    pos = labels > 0
    n_pos, n_neg = pos.sum(), (~pos).sum()
    if n_pos == 0 or n_neg == 0:
        sys.exit("error: validation needs both labels to compute AUC")
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    y_tr, x_tr, f_tr = read_channel(os.path.join(a.output, "train"))
    y_va, x_va, f_va = read_channel(os.path.join(a.output, "validation"))
    if x_tr.shape[1] != x_va.shape[1]:
        sys.exit(f"error: train has {x_tr.shape[1]} features, validation {x_va.shape[1]}")
    params = {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "max_depth": 6,
        "eta": 0.2,
        "nthread": 1,
        "seed": 0,
    }
    booster = xgb.train(params, xgb.DMatrix(x_tr, label=y_tr), num_boost_round=a.rounds)
    score = auc(y_va, booster.predict(xgb.DMatrix(x_va)))
    print(
        f"xgboost {xgb.__version__}: train {len(y_tr)} rows / {f_tr} files "
        f"({int(y_tr.sum())} positive), validation {len(y_va)} rows / {f_va} files "
        f"({int(y_va.sum())} positive), {x_tr.shape[1]} features: AUC {score:.4f}"
    )
    if not score > 0.5:
        sys.exit(f"error: AUC {score:.4f} is not above 0.5")


if __name__ == "__main__":
    main()

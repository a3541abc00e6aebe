"""Exact-line match and CER of a CTC text recogniser in ONNX Runtime.

usage: ocr_eval.py MODEL DATA.npz TEXTS.txt   prints JSON {"exact_match": …, "cer": …}
Greedy CTC decoding with the dictionary in the model's `character` metadata
(index 0 blank, index i = line i-1, one past the end = space).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a):
        diag, row[0] = row[0], i + 1
        for j, cb in enumerate(b):
            diag, row[j + 1] = row[j + 1], min(diag + (ca != cb), row[j] + 1, row[j + 1] + 1)
    return row[len(b)]


def decode(best, chars):
    """Greedy CTC: best class per step, repeats merged, blanks (0) dropped."""
    text, prev = "", 0
    for k in best:
        if k != 0 and k != prev:
            text += chars[k - 1] if k - 1 < len(chars) else " "
        prev = k
    return text


def score(outputs, want, chars):
    """Exact-line match and CER of [N, T, C] outputs against the expected lines, both with
    their ends trimmed as prunq's `eval` compares them (a space read in the padding is no
    misreading)."""
    exact = edits = total = 0
    for row, ref in zip(outputs.argmax(-1), want):
        text, ref = decode(row, chars).strip(), ref.strip()
        exact += text == ref
        edits += edit_distance(text, ref)
        total += len(ref)
    return exact / len(outputs), edits / max(total, 1)


def main():
    model, data, texts = sys.argv[1:4]
    meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    chars = meta["character"].split("\n")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.load(data)["x"]
    want = open(texts, encoding="utf-8").read().split("\n")[: len(x)]
    out = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[s : s + 32]})[0] for s in range(0, len(x), 32)])
    exact, cer = score(out, want, chars)
    print(json.dumps({"exact_match": exact, "cer": cer}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Rebuilds the seed corpus in Tests/fuzz/corpus/ from the real data the program embeds,
Sources/ReplicaData/Resources/.

    python3 Tests/fuzz/make-seeds.py [--replica PATH]

Every seed is a trimmed piece of a real file (at most 64 KiB). The safetensors and
bpe-vocabulary seeds come from real checkpoints: a 1-step charlm and a 1-step translate run of
`replica` (default .build/release/replica) on small models. Multi-file seeds join their files
with the "\\n#FILE\\n" line the fuzz targets split at (see Tests/fuzz/README.md).
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "Sources", "ReplicaData", "Resources")
CORPUS = os.path.join(ROOT, "Tests", "fuzz", "corpus")
SEPARATOR = b"\n#FILE\n"
LIMIT = 64 * 1024


def lines(path, count=None):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        result = f.read().split(b"\n")
    if result and result[-1] == b"":
        result.pop()
    return result if count is None else result[:count]


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def seed(target, name, data):
    assert len(data) <= LIMIT, f"{target}/{name}: {len(data)} bytes"
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def text_file(rows):
    return b"".join(row + b"\n" for row in rows)


def cora_subgraph(nodes=40, columns=64):
    """Nodes 0..nodes-1 of Cora with their edges, labels, and the feature columns they use most."""
    raw = os.path.join(DATA, "cora", "raw")
    features = [row.split(b",") for row in lines(os.path.join(raw, "node-feat.csv.gz"), nodes)]
    used = sorted(range(len(features[0])), key=lambda c: -sum(row[c] != b"0" for row in features))[:columns]
    used.sort()
    feature_rows = [b",".join(row[c] for c in used) for row in features]
    labels = lines(os.path.join(raw, "node-label.csv.gz"), nodes)
    edges = [e for e in lines(os.path.join(raw, "edge.csv.gz")) if all(int(v) < nodes for v in e.split(b","))]
    # Planetoid's public split puts nodes 0..139 in train; the seed spreads its nodes over three splits.
    third = nodes // 3
    splits = [range(0, third), range(third, 2 * third), range(2 * third, nodes)]
    return [
        text_file([str(nodes).encode()]),
        text_file([str(len(edges)).encode()]),
        text_file(feature_rows),
        text_file(labels),
        text_file(edges),
    ] + [text_file([str(i).encode() for i in split]) for split in splits]


def multi30k(train=40, other=10):
    folder = os.path.join(DATA, "multi30k")
    files = []
    for name, count in [("train", train), ("val", other), ("test_2016_flickr", other)]:
        for language in ["de", "en"]:
            files.append(text_file(lines(os.path.join(folder, f"{name}.{language}.gz"), count)))
    return files


def replica_checkpoint(replica, workdir, arguments):
    checkpoints = os.path.join(workdir, "checkpoints")
    subprocess.run([replica, "train"] + arguments + ["--steps", "1", "--checkpoint-dir", checkpoints, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    with open(os.path.join(checkpoints, "latest")) as f:
        name = f.read().strip()
    return os.path.join(checkpoints, os.path.basename(name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", default=os.path.join(ROOT, ".build", "release", "replica"))
    args = parser.parse_args()
    shutil.rmtree(CORPUS, ignore_errors=True)

    shakespeare = open(os.path.join(DATA, "tinyshakespeare.txt"), "rb").read()
    german = text_file(lines(os.path.join(DATA, "multi30k", "train.de.gz"), 60))

    # gzip-lines: real .gz files as they are (small ones) and trimmed, re-compressed pieces.
    seed("gzip-lines", "cora-num-node-list.csv.gz", open(os.path.join(DATA, "cora", "raw", "num-node-list.csv.gz"), "rb").read())
    seed("gzip-lines", "cora-train.csv.gz", open(os.path.join(DATA, "cora", "split", "public", "train.csv.gz"), "rb").read())
    seed("gzip-lines", "shakespeare-2k.gz", gz(shakespeare[:2048]))
    seed("gzip-lines", "multi30k-de-two-members.gz", gz(german[:1500]) + gz(german[1500:3000]))
    seed("gzip-lines", "cora-labels-crlf.csv", text_file(lines(os.path.join(DATA, "cora", "raw", "node-label.csv.gz"), 50)).replace(b"\n", b"\r\n"))

    # node-csv: a 40-node piece of Cora, plain and gzip-compressed.
    cora = cora_subgraph()
    seed("node-csv", "cora-40-plain", SEPARATOR.join(cora))
    seed("node-csv", "cora-40-gzip", SEPARATOR.join(gz(part) for part in cora))
    seed("node-csv", "cora-12-plain", SEPARATOR.join(cora_subgraph(nodes=12, columns=16)))

    # text: Tiny Shakespeare and German captions (multi-byte UTF-8).
    seed("text", "shakespeare-4k.txt", shakespeare[:4096])
    seed("text", "multi30k-de.txt", german[:4096])

    # translation: the six Multi30k files, trimmed, plain and gzip-compressed.
    pairs = multi30k()
    seed("translation", "multi30k-plain", SEPARATOR.join(pairs))
    seed("translation", "multi30k-gzip", SEPARATOR.join(gz(part) for part in multi30k(train=20, other=5)))

    # safetensors and bpe-vocabulary: real checkpoints of tiny models.
    if not os.access(args.replica, os.X_OK):
        raise SystemExit(f"{args.replica}: no replica binary; build it or pass --replica PATH")
    with tempfile.TemporaryDirectory() as work:
        text = os.path.join(work, "shakespeare.txt")
        with open(text, "wb") as f:
            f.write(shakespeare[:20000])
        charlm = replica_checkpoint(args.replica, work, [
            "charlm", "--data", text, "--layers", "1", "--heads", "2", "--embedding", "8", "--block-size", "8",
            "--batch-size", "2", "--warmup", "1"])
        seed("safetensors", "charlm-model.safetensors", open(os.path.join(charlm, "model.safetensors"), "rb").read())
        seed("safetensors", "charlm-optimizer.safetensors", open(os.path.join(charlm, "optimizer.safetensors"), "rb").read())

        folder = os.path.join(work, "multi30k")
        os.makedirs(folder)
        names = ["train.de", "train.en", "val.de", "val.en", "test_2016_flickr.de", "test_2016_flickr.en"]
        for name, data in zip(names, multi30k(train=300, other=10)):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        translate = replica_checkpoint(args.replica, os.path.join(work, "t"), [
            "translate", "--data", folder, "--vocabulary", "120", "--embedding", "8", "--heads", "2", "--layers", "1",
            "--feed-forward", "16", "--batch-size", "200", "--warmup", "1"])
        state = open(os.path.join(translate, "state.json"), "rb").read()
        seed("bpe-vocabulary", "translate-state.json", state)
        seed("bpe-vocabulary", "tokenizer.json", json.dumps(json.loads(state)["tokenizer"], ensure_ascii=False).encode())

    for target in sorted(os.listdir(CORPUS)):
        sizes = [os.path.getsize(os.path.join(CORPUS, target, f)) for f in os.listdir(os.path.join(CORPUS, target))]
        print(f"{target}: {len(sizes)} seeds, {sum(sizes)} bytes")


if __name__ == "__main__":
    main()

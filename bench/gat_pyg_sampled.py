"""PyTorch Geometric peer of `replica train gat` with neighbour-sampled mini-batches (issue 23):
PyG's NeighborLoader (GraphSAGE's sampler: per hop, each node keeps at most `--fanout` of its
in-neighbours, drawn uniformly without replacement) feeding GATConv, GCNConv or SAGEConv, Adam,
and evaluation by layer-wise full-graph inference (PyG's `inference` pattern: each layer over all
nodes in chunks of `--eval-chunk` seed nodes with all their neighbours, no sampling). Any graph in
the OGB raw layout (the embedded Cora by default; `replica data synth-graph` output; ogbn-arxiv).

    bench/run.sh bench/gat_pyg_sampled.py --threads 1 --batch-size 64 --fanout 10,5 --epochs 20
    bench/run.sh bench/gat_pyg_sampled.py --data /tmp/arxiv --batch-size 1024 --fanout 15,10 --epochs 10 --json
    bench/run.sh bench/gat_pyg_sampled.py --model gcn --data /tmp/arxiv --batch-size 1024 --fanout 15,10

Prints one line per epoch (training seconds, evaluation seconds, seed nodes/s, loss, accuracies)
and a summary: test accuracy at the selected epoch, the median training epoch time, load seconds,
peak RSS and the versions used; with --json the summary is one JSON line on stdout (keys sorted,
Replica's summary keys where they exist) and the other lines go to stderr.

The sampler. NeighborLoader needs pyg-lib or torch-sparse's compiled `neighbor_sample`, and
neither has a wheel for torch 2.13 on PyPI: pyg-lib is not on PyPI at all, torch-scatter (2.1.2)
and torch-sparse (0.6.18, which imports torch-scatter) only as source distributions. bench/run.sh
compiles those two against the venv's torch the first time (launch/python.sh's
REPLICA_PYTHON_SAMPLED and REPLICA_TORCH_EXTENSIONS: pip install --no-build-isolation with ninja
and MAX_JOBS=2, Debian's g++ installed if missing): about 20 minutes on a 2-core machine for a
fresh venv, under a minute in all when pip's wheel cache already holds the two wheels. DGL was not
needed. torch-sparse's sampler draws from torch's generator (torch.manual_seed), one
`torch::randint` per draw, in one thread: slower than pyg-lib's would be (on a 20 k-node graph with
--batch-size 512 --fanout 15,10, 0.7 s of a 4.3 s GAT epoch at 1 thread).

The same run as Replica's, and where it differs:
- Graph: edge.csv made symmetric, self-loops and duplicates removed; the sampler sees no self-loop,
  and each layer gives every node exactly one (GATConv's add_self_loops; GCN a weight 1/deg):
  Replica's sampler likewise always keeps a node's self-loop and does not count it in the fanout.
- Features divided by their row sum (--no-normalize-features: as read), held dense [N, F]
  (Replica keeps them sparse).
- gat (defaults as Replica's): dropout on every layer's input, GATConv layers of --heads × --hidden
  concatenated with ELU between them, the last of --output-heads averaged; attention dropout 0.6.
  Replica also drops the projected features where they are aggregated (--value-dropout 0.6) and
  drops the first layer's input per head; PyG's GATConv does neither (Replica's --value-dropout 0
  comes closest).
- gcn: Kipf & Welling's GCN (16 hidden, ReLU, no bias, dropout 0.5, lr 0.01, weight decay on the
  first layer only) with the whole graph's normalisation 1/sqrt(deg(s) deg(t)) on every sampled edge,
  as Replica's GCN on a sampled subgraph (PyG's GCNConv would renormalise over the subgraph).
- sage: GraphSAGE's mean aggregator (SAGEConv, root weight and bias, ReLU) with gcn's defaults
  otherwise; Replica has no such model.
- Adam with L2 decay in the gradient, not on biases; the loss is the batch mean.
- Epochs: Replica's early stopping (an epoch whose validation accuracy is at least the best or
  whose validation loss is at most the lowest resets --patience; one that is both is selected)
  and its defaults (gat 100000 epochs with patience 100; gcn 200). One process: no ranks. The
  epoch time is the median of the epochs after the first (training only; evaluation apart).
- Without --batch-size one batch holds every training node (one step per epoch, as Replica's full
  batch); without --fanout every neighbour is taken.
- Random streams: torch's (shuffling, sampling, dropout, initialisation), not Replica's.
"""
import argparse
import gzip
import json
import os
import resource
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
import torch_geometric
from torch_geometric.data import Data
from torch_geometric.loader import NeighborLoader
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

# torch-sparse is the sampler here on purpose (the docstring): no need to say pyg-lib is missing.
warnings.filterwarnings("ignore", message="Using 'NeighborSampler' without a 'pyg-lib' installation")


# --- the OGB raw layout -------------------------------------------------------------------------

def find(folder, stem):
    """folder/stem.csv.gz, else folder/stem.csv (either may be gzip or plain: the magic bytes decide)."""
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise SystemExit(f"error: {os.path.join(folder, stem + '.csv.gz')}: no such file (nor {stem}.csv); "
                     "expected the OGB raw layout: raw/{edge,node-feat,node-label,num-node-list,num-edge-list}.csv.gz "
                     "and split/public/{train,valid,test}.csv.gz")


def split_folder(directory):
    """split/public, else the only folder in split/ (OGB's split/time, split/sales_ranking)."""
    split = os.path.join(directory, "split")
    if os.path.isdir(os.path.join(split, "public")):
        return os.path.join(split, "public")
    folders = sorted(entry for entry in os.listdir(split) if os.path.isdir(os.path.join(split, entry))) \
        if os.path.isdir(split) else []
    if len(folders) != 1:
        raise SystemExit(f"error: {split}: no public/ and {len(folders)} split folders; expected split/public/{{train,valid,test}}.csv.gz")
    return os.path.join(split, folders[0])


def read_numbers(path, dtype, block=1 << 26):
    """Every comma- or newline-separated number of a CSV file, and its line count and first line's
    field count: [values], lines, columns. Read in blocks cut at line ends, each parsed by numpy's C
    parser (np.fromstring), so memory is the result plus one block."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    parts, lines, columns, rest = [], 0, None, b""
    with (gzip.open if compressed else open)(path, "rb") as f:
        while True:
            chunk = f.read(block)
            text = rest + chunk
            cut = len(text) if not chunk else text.rfind(b"\n") + 1
            text, rest = text[:cut], text[cut:]
            text = text.rstrip(b"\r\n")
            if text:
                if columns is None:
                    columns = text.split(b"\n", 1)[0].count(b",") + 1
                count = text.count(b"\n") + 1
                try:
                    values = np.fromstring(text.replace(b"\n", b","), dtype=dtype, sep=",")
                except ValueError:   # numpy 2.4 on a malformed number (before: fewer values, and a warning)
                    values = np.zeros(0, dtype)
                if values.size != count * columns:
                    raise SystemExit(f"error: {path}, lines {lines + 1}-{lines + count}: expected {count} lines of "
                                     f"{columns} numbers (a malformed number or a ragged line)")
                parts.append(values)
                lines += count
            if not chunk:
                break
    values = np.concatenate(parts) if parts else np.zeros(0, dtype)
    return values, lines, columns or 0


def load(directory):
    """The graph, as Replica's NodePropertyDataset reads it, with edges made symmetric without self-loops.
    Returns x [N, F] float32, y [N] int64, edge_index [2, E'] int64 sorted by target, splits."""
    if not os.path.isdir(directory):
        raise SystemExit(f"error: {directory}: no such directory; --data is a folder in the OGB raw layout")
    raw, split = os.path.join(directory, "raw"), split_folder(directory)
    nodes = int(read_numbers(find(raw, "num-node-list"), np.int64)[0][0])
    listed = int(read_numbers(find(raw, "num-edge-list"), np.int64)[0][0])
    features, lines, columns = read_numbers(find(raw, "node-feat"), np.float32)
    if lines != nodes:
        raise SystemExit(f"error: node-feat has {lines} rows for {nodes} nodes")
    labels, lines, _ = read_numbers(find(raw, "node-label"), np.int64)
    if lines != nodes:
        raise SystemExit(f"error: node-label has {lines} lines for {nodes} nodes")
    edges, lines, _ = read_numbers(find(raw, "edge"), np.int64)
    if lines != listed or edges.size != 2 * listed:
        raise SystemExit(f"error: edge has {lines} lines, num-edge-list says {listed}")
    if edges.size and (edges.min() < 0 or edges.max() >= nodes):
        raise SystemExit(f"error: edge lists a node id outside 0..{nodes - 1}")
    source, target = edges[0::2], edges[1::2]
    del edges
    keep = source != target
    source, target = np.concatenate([source[keep], target[keep]]), np.concatenate([target[keep], source[keep]])
    key = np.unique(target * nodes + source)   # sorted by target, then source; duplicates gone
    del source, target
    edge_index = torch.from_numpy(np.stack([key % nodes, key // nodes]))
    splits = {name: torch.from_numpy(read_numbers(find(split, name), np.int64)[0]) for name in ("train", "valid", "test")}
    return (torch.from_numpy(features.reshape(nodes, columns)), torch.from_numpy(labels), edge_index, splits)


# --- the models ---------------------------------------------------------------------------------

class Net(torch.nn.Module):
    """`layers` message-passing layers: dropout on every layer's input, ELU (gat) or ReLU between
    them; gat's hidden heads concatenated and its last layer's averaged."""

    def __init__(self, args, features, classes, gcn_weights=None):
        super().__init__()
        self.kind, self.dropout = args.model, args.dropout
        self.gcn_self_weight = None if gcn_weights is None else gcn_weights   # [N] 1/deg: a self-loop's weight
        convs, width = [], features
        for index in range(args.layers):
            last = index == args.layers - 1
            outputs = classes if last else args.hidden
            if args.model == "gat":
                heads = args.output_heads if last else args.heads
                convs.append(GATConv(width, outputs, heads=heads, concat=not last, dropout=args.attention_dropout))
                width = outputs * heads
            elif args.model == "gcn":
                convs.append(GCNConv(width, outputs, add_self_loops=False, normalize=False, bias=False))
                width = outputs
            else:
                convs.append(SAGEConv(width, outputs))
                width = outputs
        self.convs = torch.nn.ModuleList(convs)

    def layer(self, index, x, edge_index, edge_weight, n_id):
        """Layer `index` over a (sub)graph whose node j is global node n_id[j]."""
        x = F.dropout(x, p=self.dropout, training=self.training)
        if self.kind == "gcn":
            loops = torch.arange(x.shape[0]).repeat(2, 1)
            x = self.convs[index](x, torch.cat([edge_index, loops], 1),
                                  torch.cat([edge_weight, self.gcn_self_weight[n_id]]))
        else:
            x = self.convs[index](x, edge_index)
        if index < len(self.convs) - 1:
            x = F.elu(x) if self.kind == "gat" else F.relu(x)
        return x

    def forward(self, batch):
        x = batch.x
        for index in range(len(self.convs)):
            x = self.layer(index, x, batch.edge_index, getattr(batch, "edge_weight", None), batch.n_id)
        return x[:batch.batch_size]

    @torch.no_grad()
    def inference(self, x, loader):
        """Every node's logits, layer by layer: each layer over all nodes, a chunk of seeds with all
        their in-neighbours at a time. [N, F] -> [N, K]"""
        for index in range(len(self.convs)):
            outputs = []
            for batch in loader:
                out = self.layer(index, x[batch.n_id], batch.edge_index, getattr(batch, "edge_weight", None), batch.n_id)
                outputs.append(out[:batch.batch_size])
            x = torch.cat(outputs)
        return x

    def parameter_groups(self, weight_decay):
        """Adam's L2 decay: gcn on the first layer's weight only (Kipf's code), else on all but biases."""
        decayed, kept = [], []
        for name, parameter in self.named_parameters():
            first_weight = name.startswith("convs.0.") and not name.endswith("bias")
            (decayed if (first_weight if self.kind == "gcn" else not name.endswith("bias")) else kept).append(parameter)
        return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


# --- training -----------------------------------------------------------------------------------

def parse_arguments():
    default_data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Sources/ReplicaData/Resources/cora")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data, help="a folder in the OGB raw layout (default: the embedded Cora)")
    parser.add_argument("--model", choices=("gat", "gcn", "sage"), default="gat")
    parser.add_argument("--hidden", type=int, help="features per head in hidden layers (default 8; gcn, sage 16)")
    parser.add_argument("--heads", type=int, default=8, help="attention heads of hidden layers, concatenated (gat)")
    parser.add_argument("--output-heads", type=int, default=1, help="attention heads of the output layer, averaged (gat)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, help="dropout on every layer's input (default 0.6; gcn, sage 0.5)")
    parser.add_argument("--attention-dropout", type=float, default=0.6, help="(gat)")
    parser.add_argument("--no-normalize-features", dest="normalize_features", action="store_false")
    parser.add_argument("--lr", type=float, help="Adam's learning rate (default 0.005; gcn, sage 0.01)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="L2 decay in the gradient, not on biases")
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: gat 100000, gcn and sage 200)")
    parser.add_argument("--patience", type=int, default=100, help="stop after this many epochs without validation improvement; 0: never")
    parser.add_argument("--batch-size", type=int, help="seed nodes per step (default: every training node, one step an epoch)")
    parser.add_argument("--fanout", help="neighbours sampled per node and hop, one count per layer, such as 15,10 (default: all)")
    parser.add_argument("--eval-chunk", type=int, default=4096, help="seed nodes per chunk of layer-wise inference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--json", action="store_true", help="the summary as one JSON line on stdout; the rest on stderr")
    args = parser.parse_args()
    gat = args.model == "gat"
    args.hidden = args.hidden or (8 if gat else 16)
    args.dropout = (0.6 if gat else 0.5) if args.dropout is None else args.dropout
    args.lr = args.lr or (0.005 if gat else 0.01)
    args.epochs = args.epochs or (100_000 if gat else 200)
    args.fanout = [int(value) for value in args.fanout.split(",")] if args.fanout else [-1] * args.layers
    if len(args.fanout) != args.layers or min(args.fanout) < 1 and args.fanout != [-1] * args.layers:
        parser.error(f"--fanout gives {len(args.fanout)} positive counts for {args.layers} layers; give one per layer, such as 10,10")
    return args


def evaluate(model, x, y, splits, loader):
    """Loss and accuracy of every split by layer-wise inference, in evaluation mode."""
    model.eval()
    logits = model.inference(x, loader)
    result = {}
    for name, key in (("train", "train"), ("valid", "val"), ("test", "test")):
        nodes = splits[name]
        result[f"{key}_loss"] = F.cross_entropy(logits[nodes], y[nodes], ignore_index=-1).item()
        result[f"{key}_accuracy"] = (logits[nodes].argmax(1) == y[nodes]).float().mean().item()
    return result


def median(values):
    return sorted(values)[len(values) // 2] if values else float("nan")


def main():
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    human = sys.stderr if args.json else sys.stdout
    started = time.perf_counter()
    x, y, edge_index, splits = load(args.data)
    load_seconds = time.perf_counter() - started
    nodes, edges = x.shape[0], edge_index.shape[1]
    if args.normalize_features:
        x = x / x.sum(dim=1, keepdim=True).clamp(min=1)   # rows summing to 0 or less kept (T.NormalizeFeatures clamps too)
    classes = int(y.max()) + 1
    data = Data(x=x, y=y, edge_index=edge_index, num_nodes=nodes)
    gcn_self_weight = None
    if args.model == "gcn":   # the whole graph's normalisation, degrees with the self-loop
        inverse_root = (torch.bincount(edge_index[1], minlength=nodes).float() + 1).rsqrt()
        data.edge_weight = inverse_root[edge_index[0]] * inverse_root[edge_index[1]]
        gcn_self_weight = inverse_root * inverse_root
    train = splits["train"]
    batch_size = args.batch_size or len(train)
    print(f"{os.path.abspath(args.data)}: {nodes} nodes, {edges} edges (symmetric, no self-loops), {x.shape[1]} features, "
          f"{classes} classes, {len(train)}/{len(splits['valid'])}/{len(splits['test'])} train/val/test, "
          f"read in {load_seconds:.1f} s", file=human)
    # edge_index is sorted by target (load), so the loaders' CSC needs no sort.
    train_loader = NeighborLoader(data, num_neighbors=args.fanout, input_nodes=train, batch_size=batch_size,
                                  shuffle=True, is_sorted=True)
    inference_loader = NeighborLoader(data, num_neighbors=[-1], input_nodes=None, batch_size=args.eval_chunk,
                                      shuffle=False, is_sorted=True)
    model = Net(args, x.shape[1], classes, gcn_self_weight)
    optimizer = torch.optim.Adam(model.parameter_groups(args.weight_decay), lr=args.lr)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {parameters} parameters, batch {batch_size} seed nodes, fanout "
          f"{','.join(map(str, args.fanout)) if args.fanout[0] > 0 else 'all'}, {args.threads} thread(s), "
          f"up to {args.epochs} epochs, patience {args.patience}", file=human)

    epoch_times, eval_times, steps = [], [], 0
    best_accuracy, lowest_loss, waited, selected, selected_epoch = -1.0, float("inf"), 0, {}, 0
    epoch = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        total_loss = 0.0
        for batch in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(batch), batch.y[:batch.batch_size], ignore_index=-1)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * batch.batch_size
            steps += 1
        epoch_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = evaluate(model, x, y, splits, inference_loader)
        eval_times.append(time.perf_counter() - start)
        print(f"epoch {epoch}: train {epoch_times[-1]:.2f} s ({len(train) / epoch_times[-1]:.0f} seed nodes/s), "
              f"evaluation {eval_times[-1]:.2f} s, loss {total_loss / len(train):.4f}, "
              f"val {result['val_accuracy']:.4f}, test {result['test_accuracy']:.4f}", file=human)
        # Replica's early stopping (GATTask.shouldStop).
        accuracy, validation_loss = result["val_accuracy"], result["val_loss"]
        if accuracy >= best_accuracy or validation_loss <= lowest_loss:
            if accuracy >= best_accuracy and validation_loss <= lowest_loss:
                selected, selected_epoch = result, epoch
            best_accuracy, lowest_loss, waited = max(best_accuracy, accuracy), min(lowest_loss, validation_loss), 0
        else:
            waited += 1
            if args.patience > 0 and waited >= args.patience:
                break
    seconds = time.perf_counter() - started
    selected = selected or result
    timed = epoch_times[1:] or epoch_times   # the first epoch warms up
    epoch_seconds = median(timed)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "task": "pyg sampled", "model": args.model, "ranks": 1, "threads": args.threads, "steps": steps,
        "epochs": epoch, "selected_epoch": selected_epoch, "seconds": seconds, "param_count": parameters,
        "val_accuracy": selected["val_accuracy"], "test_accuracy": selected["test_accuracy"],
        "epoch_seconds": epoch_seconds, "epoch_ms": epoch_seconds * 1e3, "eval_seconds": median(eval_times),
        "seed_nodes_per_s": len(train) / epoch_seconds, "load_seconds": load_seconds, "peak_rss_mb": peak_rss_mb,
        "batch_size": batch_size, "fanout": args.fanout if args.fanout[0] > 0 else None, "nodes": nodes, "edges": edges,
        "seed": args.seed, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
        "sampler": sampler_version(),
    }
    print(json.dumps(summary, sort_keys=True) if args.json else
          f"done: {epoch} epochs, selected epoch {selected_epoch}: val accuracy {summary['val_accuracy']:.4f}, "
          f"test accuracy {summary['test_accuracy']:.4f}, {epoch_seconds:.3f} s/epoch training "
          f"({summary['seed_nodes_per_s']:.0f} seed nodes/s), {summary['eval_seconds']:.3f} s evaluation, "
          f"load {load_seconds:.1f} s, peak RSS {peak_rss_mb:.0f} MiB, {seconds:.1f} s in all "
          f"(torch {torch.__version__}, PyG {torch_geometric.__version__}, {summary['sampler']})")


def sampler_version():
    """What NeighborLoader samples with: pyg-lib, else torch-sparse."""
    if torch_geometric.typing.WITH_PYG_LIB:
        import pyg_lib
        return f"pyg-lib {pyg_lib.__version__}"
    import torch_sparse
    return f"torch-sparse {torch_sparse.__version__}"


if __name__ == "__main__":
    main()

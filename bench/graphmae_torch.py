#!/usr/bin/env python3
"""GraphMAE (Hou et al., KDD 2022), transductive Cora, ported from THUDM/GraphMAE
(graphmae/models/edcoder.py, gat.py, evaluation.py, utils.py, loss_func.py,
main_transductive.py, configs.yml "cora") to plain PyTorch, no DGL.

DGL's GATConv is re-implemented with index ops (u_add_v, edge softmax per destination,
u_mul_e + sum). Modules are built in the authors' order so that torch.manual_seed(seed)
gives the same initial parameters as their code on CPU; forward passes draw random numbers
in the same order (randperm x3, then dropout / attention dropout per layer), and the
authors' interim linear probes every 200 epochs (which draw a LogisticRegression init)
are kept so the RNG stream matches. Edge order differs from DGL's (attention-dropout masks
land on different edges; same distribution).

For comparing `replica train graphmae` with the authors' algorithm on the same data and machine:

    bench/run.sh bench/graphmae_torch.py --seeds 0 1 2 3 4 --threads 1 [--json results.jsonl]

prints, per seed, the linear probe's test accuracy at the best validation epoch (the authors'
`estp_test_acc`, what `replica train graphmae` reports as test_accuracy) and after its last epoch
(`final_acc`). About 0.6 s an epoch at 1 thread here (Replica: about 0.2 s).

Variants (off by default = the authors' code):
  --token-after-dropout   add the mask token after layer 0's input dropout (Replica)
  --decay-weights-only    Adam L2 only on weights/attention vectors/mask token, not on GAT biases,
                          PReLU slopes or the probe's bias (Replica)
"""
import warnings
warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
import argparse, copy, gzip, json, math, os, random, sys, time
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- data
def read_csv_gz(path, dtype):
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=1)

def load_cora(root):
    feat = read_csv_gz(os.path.join(root, "raw/node-feat.csv.gz"), np.float32)
    if feat.ndim == 1: feat = feat[:, None]
    labels = read_csv_gz(os.path.join(root, "raw/node-label.csv.gz"), np.int64).reshape(-1)
    edges = read_csv_gz(os.path.join(root, "raw/edge.csv.gz"), np.int64).reshape(-1, 2)
    N = feat.shape[0]
    split = {k: read_csv_gz(os.path.join(root, f"split/public/{k}.csv.gz"), np.int64).reshape(-1)
             for k in ("train", "valid", "test")}
    # DGL CoraGraphDataset: symmetric (nx.from_dict_of_lists), row-normalised features (_preprocess_features)
    src = np.concatenate([edges[:, 0], edges[:, 1]]); dst = np.concatenate([edges[:, 1], edges[:, 0]])
    pairs = np.unique(np.stack([src, dst], 1), axis=0)
    n_sym = len(pairs)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]          # remove_self_loop()
    n_nosl = len(pairs)
    rowsum = feat.sum(1)
    with np.errstate(divide="ignore"):
        r_inv = np.power(rowsum, -1.0)
    r_inv[np.isinf(r_inv)] = 0.0
    feat = (feat * r_inv[:, None]).astype(np.float32)
    # add_self_loop(): self loops appended after the other edges
    loops = np.arange(N)
    src = np.concatenate([pairs[:, 0], loops]); dst = np.concatenate([pairs[:, 1], loops])
    info = dict(nodes=N, raw_edges=len(edges), directed_edges_symmetric=n_sym, directed_edges_no_selfloops=n_nosl,
                edges_with_selfloops=len(src), features=feat.shape[1], classes=int(labels.max()) + 1,
                train=len(split["train"]), valid=len(split["valid"]), test=len(split["test"]),
                zero_feature_rows=int((rowsum == 0).sum()))
    order = np.lexsort((src, dst))                       # sort by dst, then src: CSR rows = destinations
    src, dst = src[order], dst[order]
    def mask(idx):
        m = torch.zeros(N, dtype=torch.bool); m[torch.from_numpy(idx)] = True; return m
    s_t, d_t = torch.from_numpy(src), torch.from_numpy(dst)
    crow = torch.zeros(N + 1, dtype=torch.long); crow[1:] = torch.cumsum(torch.bincount(d_t, minlength=N), 0)
    perm_t = torch.from_numpy(np.lexsort((dst, src)))      # edge order of the transpose (rows = sources)
    crow_t = torch.zeros(N + 1, dtype=torch.long); crow_t[1:] = torch.cumsum(torch.bincount(s_t, minlength=N), 0)
    g = dict(N=N, src=s_t, dst=d_t, crow=crow, crow_t=crow_t, perm_t=perm_t, col_t=d_t[perm_t],

             train_mask=mask(split["train"]), val_mask=mask(split["valid"]), test_mask=mask(split["test"]),
             label=torch.from_numpy(labels))
    return g, torch.from_numpy(feat), info

# ---------------------------------------------------------------- model (gat.py)
def edge_softmax(e, dst, N):
    """DGL edge_softmax (norm_by='dst'): softmax of e [E,H,1] over each destination's incoming edges."""
    E, H, _ = e.shape
    idx = dst.view(-1, 1, 1).expand_as(e)
    emax = torch.full((N, H, 1), float("-inf"), dtype=e.dtype).scatter_reduce(0, idx, e.detach(), "amax", include_self=True)
    ex = torch.exp(e - emax[dst])
    denom = torch.zeros((N, H, 1), dtype=e.dtype).index_add(0, dst, ex)
    return ex / denom[dst]

class UMulESum(torch.autograd.Function):
    """DGL update_all(u_mul_e('ft','a','m'), sum('m','ft')): out[i,h] = sum over edges j->i of a[e,h] * ft[j,h].
    feat [N,H,C], a [E,H,1] (edges sorted by destination) -> [N,H,C]. CSR sparse products; same values as
    gather + index_add up to float summation order."""
    @staticmethod
    def forward(ctx, feat, a, g):
        N, H = g["N"], feat.shape[1]
        out = torch.empty_like(feat)
        for h in range(H):
            A = torch.sparse_csr_tensor(g["crow"], g["src"], a[:, h, 0].contiguous(), size=(N, N))
            out[:, h, :] = torch.sparse.mm(A, feat[:, h, :].contiguous())
        ctx.save_for_backward(feat, a)
        ctx.g = g
        return out

    @staticmethod
    def backward(ctx, grad_out):
        feat, a = ctx.saved_tensors
        g = ctx.g
        N, H = g["N"], feat.shape[1]
        grad_out = grad_out.contiguous()
        grad_feat = grad_a = None
        if ctx.needs_input_grad[0]:
            grad_feat = torch.empty_like(feat)
            for h in range(H):
                AT = torch.sparse_csr_tensor(g["crow_t"], g["col_t"], a[g["perm_t"], h, 0].contiguous(), size=(N, N))
                grad_feat[:, h, :] = torch.sparse.mm(AT, grad_out[:, h, :].contiguous())
        if ctx.needs_input_grad[1]:
            grad_a = torch.empty_like(a)
            zeros = torch.zeros(len(g["src"]), dtype=a.dtype)
            for h in range(H):
                P = torch.sparse_csr_tensor(g["crow"], g["src"], zeros, size=(N, N))
                grad_a[:, h, 0] = torch.sparse.sampled_addmm(P, grad_out[:, h, :], feat[:, h, :].t().contiguous(),
                                                             beta=0.0).values()
        return grad_feat, grad_a, None

class GATConv(nn.Module):
    def __init__(self, in_feats, out_feats, num_heads, feat_drop=0., attn_drop=0., negative_slope=0.2,
                 residual=False, activation=None, bias=True, norm=None, concat_out=True):
        super().__init__()
        assert not residual
        self._num_heads = num_heads
        self._out_feats = out_feats
        self._concat_out = concat_out
        self.fc = nn.Linear(in_feats, out_feats * num_heads, bias=False)
        self.attn_l = nn.Parameter(torch.FloatTensor(size=(1, num_heads, out_feats)))
        self.attn_r = nn.Parameter(torch.FloatTensor(size=(1, num_heads, out_feats)))
        self.feat_drop = nn.Dropout(feat_drop)
        self.attn_drop = nn.Dropout(attn_drop)
        self.leaky_relu = nn.LeakyReLU(negative_slope)
        if bias:
            self.bias = nn.Parameter(torch.FloatTensor(size=(num_heads * out_feats,)))
        else:
            self.register_buffer("bias", None)
        self.register_buffer("res_fc", None)
        self.reset_parameters()
        self.activation = activation
        self.norm = norm
        if norm is not None:
            self.norm = norm(num_heads * out_feats)

    def reset_parameters(self):
        gain = nn.init.calculate_gain("relu")
        nn.init.xavier_normal_(self.fc.weight, gain=gain)
        nn.init.xavier_normal_(self.attn_l, gain=gain)
        nn.init.xavier_normal_(self.attn_r, gain=gain)
        if self.bias is not None:
            nn.init.constant_(self.bias, 0)

    def forward(self, graph, feat, post_drop_add=None, nonzero_rows=None):
        src, dst, N = graph["src"], graph["dst"], graph["N"]
        h = self.feat_drop(feat)
        if post_drop_add is not None:       # variant (a): mask token added after the input dropout
            rows, token = post_drop_add
            h = h.clone(); h[rows] += token
        if nonzero_rows is None:
            feat_src = self.fc(h).view(-1, self._num_heads, self._out_feats)
        else:   # rows outside nonzero_rows are exactly 0 in h, so fc gives 0 there
            feat_src = h.new_zeros(h.shape[0], self._num_heads * self._out_feats)
            feat_src = feat_src.index_put((nonzero_rows,), self.fc(h[nonzero_rows]))
            feat_src = feat_src.view(-1, self._num_heads, self._out_feats)
        el = (feat_src * self.attn_l).sum(dim=-1).unsqueeze(-1)       # [N,H,1]
        er = (feat_src * self.attn_r).sum(dim=-1).unsqueeze(-1)
        e = self.leaky_relu(el[src] + er[dst])                          # u_add_v  [E,H,1]
        a = self.attn_drop(edge_softmax(e, dst, N))
        rst = UMulESum.apply(feat_src, a, graph)                         # u_mul_e, sum
        if self.bias is not None:
            rst = rst + self.bias.view(1, self._num_heads, self._out_feats)
        rst = rst.flatten(1) if self._concat_out else torch.mean(rst, dim=1)
        if self.norm is not None:
            rst = self.norm(rst)
        if self.activation:
            rst = self.activation(rst)
        return rst

class GAT(nn.Module):
    def __init__(self, in_dim, num_hidden, out_dim, num_layers, nhead, nhead_out, activation, feat_drop, attn_drop,
                 negative_slope, residual, norm, concat_out=False, encoding=False):
        super().__init__()
        self.num_layers = num_layers
        self.gat_layers = nn.ModuleList()
        last_activation = nn.PReLU() if encoding else None
        last_norm = norm if encoding else None
        if num_layers == 1:
            self.gat_layers.append(GATConv(in_dim, out_dim, nhead_out, feat_drop, attn_drop, negative_slope, False,
                                           norm=last_norm, concat_out=concat_out))
        else:
            self.gat_layers.append(GATConv(in_dim, num_hidden, nhead, feat_drop, attn_drop, negative_slope, residual,
                                           nn.PReLU(), norm=norm, concat_out=concat_out))
            for _ in range(1, num_layers - 1):
                self.gat_layers.append(GATConv(num_hidden * nhead, num_hidden, nhead, feat_drop, attn_drop,
                                               negative_slope, residual, nn.PReLU(), norm=norm, concat_out=concat_out))
            self.gat_layers.append(GATConv(num_hidden * nhead, out_dim, nhead_out, feat_drop, attn_drop,
                                           negative_slope, False, activation=last_activation, norm=last_norm,
                                           concat_out=concat_out))
        self.head = nn.Identity()

    def forward(self, g, inputs, post_drop_add=None, nonzero_rows=None):
        h = inputs
        for l in range(self.num_layers):
            h = self.gat_layers[l](g, h, post_drop_add if l == 0 else None, nonzero_rows if l == 0 else None)
        return self.head(h)

# ---------------------------------------------------------------- edcoder.py
def sce_loss(x, y, alpha=3):
    x = F.normalize(x, p=2, dim=-1)
    y = F.normalize(y, p=2, dim=-1)
    loss = (1 - (x * y).sum(dim=-1)).pow_(alpha)
    return loss.mean()

class PreModel(nn.Module):
    def __init__(self, in_dim, num_hidden=512, num_layers=2, nhead=4, nhead_out=1, feat_drop=0.2, attn_drop=0.1,
                 negative_slope=0.2, mask_rate=0.5, replace_rate=0.05, alpha_l=3, token_after_dropout=False):
        super().__init__()
        self._mask_rate = mask_rate
        self._replace_rate = replace_rate
        self._mask_token_rate = 1 - replace_rate
        self.token_after_dropout = token_after_dropout
        self.dense_decoder = False
        enc_num_hidden = num_hidden // nhead
        # create_norm(None) -> nn.Identity (a no-op) in the encoder; None in the decoder
        self.encoder = GAT(in_dim, enc_num_hidden, enc_num_hidden, num_layers, nhead, nhead, "prelu", feat_drop,
                           attn_drop, negative_slope, False, nn.Identity, concat_out=True, encoding=True)
        self.decoder = GAT(num_hidden, num_hidden // nhead_out, in_dim, 1, nhead, nhead_out, "prelu", feat_drop,
                           attn_drop, negative_slope, False, nn.Identity, concat_out=True, encoding=False)
        self.enc_mask_token = nn.Parameter(torch.zeros(1, in_dim))
        self.encoder_to_decoder = nn.Linear(num_hidden, num_hidden, bias=False)
        self.criterion = partial(sce_loss, alpha=alpha_l)

    def encoding_mask_noise(self, g, x, mask_rate=0.3):
        num_nodes = g["N"]
        perm = torch.randperm(num_nodes)
        num_mask_nodes = int(mask_rate * num_nodes)
        mask_nodes = perm[:num_mask_nodes]
        keep_nodes = perm[num_mask_nodes:]
        if self._replace_rate > 0:
            num_noise_nodes = int(self._replace_rate * num_mask_nodes)
            perm_mask = torch.randperm(num_mask_nodes)
            token_nodes = mask_nodes[perm_mask[: int(self._mask_token_rate * num_mask_nodes)]]
            noise_nodes = mask_nodes[perm_mask[-int(self._replace_rate * num_mask_nodes):]]
            noise_to_be_chosen = torch.randperm(num_nodes)[:num_noise_nodes]
            out_x = x.clone()
            out_x[token_nodes] = 0.0
            out_x[noise_nodes] = x[noise_to_be_chosen]
        else:
            out_x = x.clone()
            token_nodes = mask_nodes
            out_x[mask_nodes] = 0.0
        if self.token_after_dropout:
            return out_x, (mask_nodes, keep_nodes), (token_nodes, self.enc_mask_token)
        out_x[token_nodes] += self.enc_mask_token
        return out_x, (mask_nodes, keep_nodes), None

    def forward(self, g, x):
        use_x, (mask_nodes, keep_nodes), post = self.encoding_mask_noise(g, x, self._mask_rate)
        enc_rep = self.encoder(g, use_x, post)
        rep = self.encoder_to_decoder(enc_rep)
        rep[mask_nodes] = 0                          # re-mask
        recon = self.decoder(g, rep, nonzero_rows=None if self.dense_decoder else keep_nodes)
        return self.criterion(recon[mask_nodes], x[mask_nodes])

    def embed(self, g, x):
        return self.encoder(g, x)

# ---------------------------------------------------------------- evaluation.py
class LogisticRegression(nn.Module):
    def __init__(self, num_dim, num_class):
        super().__init__()
        self.linear = nn.Linear(num_dim, num_class)
    def forward(self, g, x, *args):
        return self.linear(x)

def accuracy(y_pred, y_true):
    y_true = y_true.squeeze().long()
    preds = y_pred.max(1)[1].type_as(y_true)
    return preds.eq(y_true).double().sum().item() / len(y_true)

def make_adam(module, lr, wd, weights_only):
    if not weights_only:
        return torch.optim.Adam(module.parameters(), lr=lr, weight_decay=wd)
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (no_decay if (name.endswith(".bias") or ".activation." in name) else decay).append(p)
    return torch.optim.Adam([dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)], lr=lr)

def node_classification_evaluation(model, g, x, num_classes, lr_f, wd_f, max_epoch_f, weights_only=False):
    model.eval()
    with torch.no_grad():
        emb = model.embed(g, x)
    clf = LogisticRegression(emb.shape[1], num_classes)
    opt = make_adam(clf, lr_f, wd_f, weights_only)
    criterion = nn.CrossEntropyLoss()
    tr, va, te, labels = g["train_mask"], g["val_mask"], g["test_mask"], g["label"]
    best_val_acc, best_val_epoch, best_model = 0, 0, None
    for epoch in range(max_epoch_f):
        clf.train()
        out = clf(g, emb)
        loss = criterion(out[tr], labels[tr])
        opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            clf.eval()
            pred = clf(g, emb)
            val_acc = accuracy(pred[va], labels[va])
            test_acc = accuracy(pred[te], labels[te])
        if val_acc >= best_val_acc:
            best_val_acc, best_val_epoch = val_acc, epoch
            best_model = copy.deepcopy(clf)
    best_model.eval()
    with torch.no_grad():
        estp_test_acc = accuracy(best_model(g, emb)[te], labels[te])
    return test_acc, estp_test_acc, best_val_acc, best_val_epoch

# ---------------------------------------------------------------- main_transductive.py
def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

def run_seed(seed, g, x, num_classes, args):
    set_random_seed(seed)
    model = PreModel(x.shape[1], token_after_dropout=args.token_after_dropout)
    optimizer = make_adam(model, 1e-3, 2e-4, args.decay_weights_only)
    max_epoch = args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda epoch: (1 + np.cos(epoch * np.pi / max_epoch)) * 0.5)
    t0 = time.time(); interim = []
    for epoch in range(max_epoch):
        model.train()
        loss = model(g, x)
        optimizer.zero_grad(); loss.backward(); optimizer.step(); scheduler.step()
        if (epoch + 1) % 200 == 0:
            if not args.no_interim_probes:   # the authors' muted probes (draw RNG for the probe's init)
                fa, ea, _, _ = node_classification_evaluation(model, g, x, num_classes, 0.01, 1e-4, 300, args.decay_weights_only)
                interim.append((epoch + 1, round(fa, 4), round(ea, 4)))
            print(f"  seed {seed} epoch {epoch+1} loss {loss.item():.4f} {time.time()-t0:.0f}s"
                  + (f" interim probe final/estp {interim[-1][1]:.4f}/{interim[-1][2]:.4f}" if interim else ""), flush=True)
    train_s = time.time() - t0
    model.eval()
    final_acc, estp_acc, best_val, best_ep = node_classification_evaluation(model, g, x, num_classes, 0.01, 1e-4, 300,
                                                                            args.decay_weights_only)
    return dict(seed=seed, estp_test_acc=estp_acc, final_test_acc=final_acc, best_val_acc=best_val,
                best_val_epoch=best_ep, last_loss=loss.item(), sec_per_epoch=train_s / max_epoch,
                interim=interim)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1500)
    ap.add_argument("--json", type=str, default=None, help="append per-seed results (JSON lines) here")
    ap.add_argument("--data", type=str, default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Sources/ReplicaData/Resources/cora"))
    ap.add_argument("--tag", type=str, default="authors")
    ap.add_argument("--token-after-dropout", action="store_true")
    ap.add_argument("--decay-weights-only", action="store_true")
    ap.add_argument("--no-interim-probes", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g, x, info = load_cora(args.data)
    print("data:", json.dumps(info), flush=True)
    num_classes = info["classes"]
    results = []
    for seed in args.seeds:
        r = run_seed(seed, g, x, num_classes, args)
        r.update(tag=args.tag, epochs=args.epochs, threads=args.threads,
                 token_after_dropout=args.token_after_dropout, decay_weights_only=args.decay_weights_only)
        results.append(r)
        print(f"seed {seed}: estp_test_acc {r['estp_test_acc']:.4f} final_test_acc {r['final_test_acc']:.4f} "
              f"best_val {r['best_val_acc']:.4f}@{r['best_val_epoch']} {r['sec_per_epoch']*1e3:.1f} ms/epoch", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    e = np.array([r["estp_test_acc"] for r in results]); fa = np.array([r["final_test_acc"] for r in results])
    print(f"# [{args.tag}] seeds {args.seeds}: early-stopping_acc {e.mean():.4f}±{e.std():.4f}  "
          f"final_acc {fa.mean():.4f}±{fa.std():.4f}  "
          f"{np.mean([r['sec_per_epoch'] for r in results])*1e3:.1f} ms/epoch", flush=True)

if __name__ == "__main__":
    main()

"""PyTorch peer of `replica bench step --model mlm`: the same BERT-style masked language model
(token and learned position embeddings scaled by sqrt(d), dropout 0.1, nn.TransformerEncoder
pre-norm with ReLU, a final LayerNorm, an output layer tied to the token embedding with its own
bias, computed at the masked rows only, as Replica's) on the same data: Multi30k's English
training sentences, `<s>` ids `</s>` cut to the model's maximum length, encoded with the BPE
vocabulary of a Replica mlm checkpoint (its state.json), in length-bucketed batches of
--batch-size sentences (pools of 100 batches sorted by length), BERT's masking (each ordinary
token chosen with probability 0.15; of those 80% <mask>, 10% a random token, 10% kept), loss
summed over the chosen tokens over their count, AdamW (lr 1e-3, betas 0.9 and 0.99, weight
decay 0.01) with gradient clipping at 1. One difference: PyTorch's encoder layers cannot drop the
LayerNorms' bias alone, which Replica's norms do not have (1,152 parameters more here).

tokens_per_s counts the real (non-padding) tokens of the timed steps over their summed time; Replica's
counts a batch's sentences at their mean length over the median step time (the same figure over
many steps). tokens_per_cpu_s divides by the process's CPU time instead.

Run (1 thread, as `replica bench step --model mlm --threads 1`):
    replica train mlm --steps 1 --checkpoint-dir runs/mlm      # for the vocabulary
    bench/run.sh bench/mlm_torch.py --checkpoint runs/mlm --threads 1 [--json]
"""
import json
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from translate_torch import BPE, checkpoint_state, peer_arguments, read_lines, step_result

PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
FIRST_ORDINARY = 5


def make_batches(sentences, per_batch, seed):
    """Pools of 100 batches, each sorted by length and cut into batches of `per_batch`; then shuffled."""
    order = list(range(len(sentences)))
    rng = random.Random(seed)
    rng.shuffle(order)
    pool = 100 * per_batch
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: len(sentences[i]))
        batches += [chunk[i:i + per_batch] for i in range(0, len(chunk), per_batch)]
    rng.shuffle(batches)
    return batches


def masked_batch(sentences, indices, vocab, rate, generator):
    """Padded inputs [B, T], padding mask, flat rows of the chosen tokens and their original ids."""
    T = max(len(sentences[i]) for i in indices)
    inputs = torch.full((len(indices), T), PAD, dtype=torch.long)
    for row, i in enumerate(indices):
        inputs[row, :len(sentences[i])] = torch.tensor(sentences[i])
    ordinary = inputs >= FIRST_ORDINARY
    chosen = ordinary & (torch.rand(inputs.shape, generator=generator) < rate)
    draw = torch.rand(inputs.shape, generator=generator)
    targets = inputs[chosen]
    masked = inputs.clone()
    masked[chosen & (draw < 0.8)] = MASK
    randomised = chosen & (draw >= 0.8) & (draw < 0.9)
    masked[randomised] = torch.randint(FIRST_ORDINARY, vocab, inputs.shape, generator=generator)[randomised]
    rows = chosen.reshape(-1).nonzero().squeeze(1)
    return masked, inputs == PAD, rows, targets


class MaskedLM(nn.Module):
    def __init__(self, vocab, d, heads, layers, ffn, dropout, max_len):
        super().__init__()
        self.d = d
        self.embedding = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(max_len, d)
        nn.init.normal_(self.embedding.weight, std=d ** -0.5)
        nn.init.normal_(self.positions.weight, std=d ** -0.5)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, ids, padding, rows):
        T = ids.shape[1]
        x = self.dropout((self.embedding(ids) + self.positions.weight[:T]) * self.d ** 0.5)
        hidden = self.encoder(x, src_key_padding_mask=padding).reshape(-1, self.d)[rows]
        return hidden @ self.embedding.weight.t() + self.bias


def main():
    args = peer_arguments(__doc__, "mlm", 64, "sentences a batch").parse_args()
    state = checkpoint_state(args.checkpoint, args.threads, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    bpe = BPE(state["tokenizer"])
    config = state["config"]
    length = config["max_length"]
    sentences = [([BOS] + bpe.encode(line) + [EOS])[:length] for line in read_lines(os.path.join(args.data, "train.en.gz"))]
    batches = make_batches(sentences, args.batch_size, args.seed)

    model = MaskedLM(bpe.count, config["embedding"], config["heads"], config["layers"], config["feed_forward"],
                     config["dropout"], length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
    model.train()
    seconds, cpu_seconds, tokens = 0.0, 0.0, 0
    for step in range(args.warmup_steps + args.steps):
        ids, padding, rows, targets = masked_batch(sentences, batches[step % len(batches)], bpe.count, 0.15, generator)
        started, cpu_started = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        logits = model(ids, padding, rows)
        loss = F.cross_entropy(logits, targets, reduction="sum") / max(1, targets.numel())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
        if step >= args.warmup_steps:
            seconds += elapsed
            cpu_seconds += cpu_elapsed
            tokens += int((~padding).sum())
    parameters = sum(p.numel() for p in model.parameters())
    result = step_result("mlm (torch nn.TransformerEncoder)", args, parameters, seconds, cpu_seconds, tokens)
    print(f"torch mlm step: {result['ms_per_step']:.1f} ms/step, {result['tokens_per_s']:.0f} tokens/s, "
          f"{result['tokens_per_cpu_s']:.0f} tokens/CPU-s, {torch.get_num_threads()} thread(s), {parameters} parameters")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

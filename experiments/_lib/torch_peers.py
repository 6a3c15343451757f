"""PyTorch peers of the benchmarked jaxnets models (optional: used only when ``torch`` imports).

The same networks as the jaxnets rungs, in eager PyTorch on the CPU with 2 intra-op threads, the
usual way a PyTorch user writes them (``nn.Module`` + ``torch.optim``), weights copied from the
jaxnets params so that one epoch of both is the same computation:

- ``mlp_epoch``: 784-256-10 sigmoid MLP (the E1 (a) network), softmax cross-entropy, plain SGD;
- ``cnn_epoch``: doc 003 §3.5's 2-layer / 3-layer CNNs (conv 'valid' + ReLU, 2×2 max-pool,
  dense), NCHW as PyTorch's kernels want it (the data are transposed once, outside the timing);
- ``transformer_chunk``: the E7 character GPT (pre-norm blocks, causal attention, ReLU MLP,
  dropout) with AdamW and global-norm clipping, ``steps`` steps on random windows.

Every ``run()`` does its whole epoch / chunk and returns when the work is done (PyTorch's CPU
ops are synchronous). Never imported by the library or the tests' required path: callers check
:func:`available` first.
"""
from __future__ import annotations

import os

import numpy as np

THREADS = 2
#: set (to anything but "" or "0") to leave the PyTorch rungs out even where torch imports: the GPU
#: check does, since these peers run on the CPU and would be compared with JAX on the GPU
NO_PEERS_ENV = "JAXNETS_NO_TORCH_PEERS"


def available() -> bool:
    if os.environ.get(NO_PEERS_ENV, "") not in ("", "0"):
        return False
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch():
    import torch
    torch.set_num_threads(THREADS)
    return torch


def version() -> str:
    torch = _torch()
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, eager"


def _dense(torch, p):
    lin = torch.nn.Linear(*np.asarray(p["W"]).shape)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.array(p["W"], np.float32).T.copy()))
        lin.bias.copy_(torch.from_numpy(np.array(p["b"], np.float32)))
    return lin


def _conv(torch, p):
    W = np.asarray(p["W"], np.float32)                      # (kh, kw, C_in, C_out), HWIO
    c = torch.nn.Conv2d(W.shape[2], W.shape[3], W.shape[:2])
    with torch.no_grad():
        c.weight.copy_(torch.from_numpy(W.transpose(3, 2, 0, 1).copy()))   # OIHW
        c.bias.copy_(torch.from_numpy(np.array(p["b"], np.float32)))
    return c


def mlp_module(params):
    torch = _torch()
    return torch.nn.Sequential(_dense(torch, params[0]), torch.nn.Sigmoid(), _dense(torch, params[1]))


def cnn_module(params):
    """params of ``cnn.cnn2()`` / ``cnn.cnn3()`` (a list, ``{}`` for pool and flatten) → nn.Sequential.
    The dense head sees the NCHW flatten, so its rows are permuted from jaxnets' NHWC flatten."""
    torch = _torch()
    mods, shape = [], (28, 28, 1)
    for p in params:
        if p and np.asarray(p["W"]).ndim == 4:
            mods += [_conv(torch, p), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            kh, kw, _, co = np.asarray(p["W"]).shape
            shape = ((shape[0] - kh + 1) // 2, (shape[1] - kw + 1) // 2, co)
        elif p:
            H, Wd, C = shape
            W = np.asarray(p["W"]).reshape(H, Wd, C, -1).transpose(2, 0, 1, 3).reshape(H * Wd * C, -1)
            mods += [torch.nn.Flatten(), _dense(torch, {"W": W, "b": p["b"]})]
    return torch.nn.Sequential(*mods)


def _sgd_epoch(module, X, Y, batch, lr, chunk=None):
    """run(): one epoch of plain SGD over contiguous batches of X (torch tensors) — the data are
    pre-ordered, as the jaxnets minimal scan's are. ``chunk`` (dividing ``batch``): each step's
    gradient accumulated over chunks of that many examples (each chunk's mean loss × chunk/batch),
    the step jaxnets' ``microbatch`` takes, written the usual PyTorch way."""
    torch = _torch()
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    nb, c = len(X) // batch, chunk or batch
    if batch % c:
        raise ValueError(f"torch_peers: chunk {c} must divide the batch {batch}")

    def run():
        for i in range(nb):
            opt.zero_grad(set_to_none=True)
            for j in range(i * batch, (i + 1) * batch, c):
                loss = loss_fn(module(X[j:j + c]), Y[j:j + c])
                (loss if c == batch else loss * (c / batch)).backward()
            opt.step()
    return run


def mlp_epoch(params, X, Y, batch, lr=0.01):
    """(run, module): X (n, 784) float32, Y (n,) int labels."""
    torch = _torch()
    m = mlp_module(params)
    return _sgd_epoch(m, torch.from_numpy(np.array(X, np.float32)),
                      torch.from_numpy(np.array(Y, np.int64)), batch, lr), m


def cnn_epoch(params, X, Y, batch, lr=0.01, chunk=None):
    """(run, module): X (n, 28, 28, 1) NHWC float32 (transposed to NCHW here, once), Y (n,);
    ``chunk``: see :func:`_sgd_epoch`."""
    torch = _torch()
    m = cnn_module(params)
    Xt = torch.from_numpy(np.ascontiguousarray(np.asarray(X, np.float32).transpose(0, 3, 1, 2)))
    return _sgd_epoch(m, Xt, torch.from_numpy(np.array(Y, np.int64)), batch, lr, chunk), m


def _gpt(torch, vocab, block_size, n_embd, n_head, n_layer, dropout):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
            self.qkv, self.proj = nn.Linear(n_embd, 3 * n_embd, bias=False), nn.Linear(n_embd, n_embd)
            self.ff = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd))
            self.drop = nn.Dropout(dropout)
            self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))

        def forward(self, x):
            B, T, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, n_head, d // n_head).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-2, -1)) * (d // n_head) ** -0.5
            att = self.drop(F.softmax(att.masked_fill(~self.mask[:T, :T], float("-inf")), dim=-1))
            x = x + self.drop(self.proj((att @ v).transpose(1, 2).reshape(B, T, d)))
            return x + self.drop(self.ff(self.ln2(x)))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, n_embd), nn.Embedding(block_size, n_embd)
            self.blocks = nn.Sequential(*[Block() for _ in range(n_layer)])
            self.ln_f, self.head = nn.LayerNorm(n_embd), nn.Linear(n_embd, vocab)

        def forward(self, idx, targets):
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            logits = self.head(self.ln_f(self.blocks(x)))
            return F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
    return GPT()


def transformer_chunk(vocab, cfg: dict, train_tokens, steps, lr=1e-3, weight_decay=0.01, seed=0):
    """run(): ``steps`` AdamW steps (the notebook's: PyTorch defaults, no clipping) of the E7 GPT on
    random windows of train_tokens (n,)."""
    torch = _torch()
    torch.manual_seed(seed)
    m = _gpt(torch, vocab, cfg["block_size"], cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["dropout"])
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    data = torch.from_numpy(np.array(train_tokens, np.int64))
    B, T = cfg["batch_size"], cfg["block_size"]
    gen = torch.Generator().manual_seed(seed)

    def run():
        for _ in range(steps):
            s = torch.randint(0, len(data) - T - 1, (B,), generator=gen)
            pos = s[:, None] + torch.arange(T)[None, :]
            opt.zero_grad(set_to_none=True)
            m(data[pos], data[pos + 1]).backward()
            opt.step()
    return run

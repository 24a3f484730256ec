"""Small, reproducible CPU training for zoo models (fixed seed, deterministic order)."""

from __future__ import annotations

import torch

from interp_audit.model.subject import Subject


def train_answer_model(
    subject: Subject,
    prompts: list[str],
    answers: list[str],
    *,
    epochs: int = 6,
    lr: float = 3e-3,
    batch_size: int = 256,
    seed: int = 0,
    weight_decay: float = 0.01,
    log=print,
) -> Subject:
    """Train ``subject`` to answer each prompt with its answer token at the last position."""
    torch.manual_seed(seed)
    tokens = torch.tensor([subject.to_tokens(p) for p in prompts])
    target = torch.tensor([subject.answer_token(a)[0] for a in answers])
    model = subject.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(tokens) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        order = torch.randperm(len(tokens), generator=g)
        total = 0.0
        for start in range(0, len(tokens), batch_size):
            idx = order[start : start + batch_size]
            logits = model(tokens[idx])[:, -1]
            loss = torch.nn.functional.cross_entropy(logits, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(tokens):.4f}")
    model.eval()
    for p in model.parameters():
        p.grad = None
    return subject

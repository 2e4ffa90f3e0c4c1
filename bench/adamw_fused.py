#!/usr/bin/env python3
"""AdamW on CPU: foreach vs fused, interleaved (bench/README.md "Fused AdamW on CPU"). Run: python bench/adamw_fused.py"""
import time, torch
torch.manual_seed(0)
shapes = [(30522, 384)] + [(384, 384)] * 24 + [(1536, 384), (384, 1536)] * 6 + [(384,)] * 50
def make(fused):
    ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    for p in ps: p.grad = torch.randn_like(p)
    return ps, torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, fused=fused)
res = {True: [], False: []}
for rep in range(4):
    for fused in (False, True):
        ps, opt = make(fused)
        opt.step()
        t0 = time.perf_counter()
        for _ in range(10): opt.step()
        res[fused].append((time.perf_counter() - t0) / 10)
n = sum(torch.Size(s).numel() for s in shapes)
print(f"params {n/1e6:.1f}M foreach {min(res[False])*1e3:.1f} ms  fused {min(res[True])*1e3:.1f} ms  ratio {min(res[False])/min(res[True]):.2f}")
# equality
torch.manual_seed(1); a, oa = make(False); torch.manual_seed(1); b, ob = make(True)
for _ in range(3): oa.step(); ob.step()
print("max diff", max((x - y).abs().max().item() for x, y in zip(a, b)))

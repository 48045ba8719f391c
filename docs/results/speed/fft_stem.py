"""The bundled model's stem (7 x 7, stride 2, 80 -> 64 channels on a 512 x 512 draw) as an FFT
convolution against oneDNN's direct one (a negative result: not used).

The stride-2 convolution splits into four stride-1 convolutions of the input's polyphase
components with 4 x 4 sub-kernels (one convolution of 320 channels at half resolution); that one
runs as overlap-save FFT convolutions in T x T tiles, the channel sums as complex matrix products
batched over the frequencies. Random weights and inputs (the time does not depend on them).

    OMP_NUM_THREADS=2 .venv/bin/python docs/results/speed/fft_stem.py 2 32   # threads, tile
"""
import math
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]))
T = int(sys.argv[2])
g = torch.Generator().manual_seed(0)
C, O, H, W = 80, 64, 512, 512
x = torch.randn(1, C, H, W, generator=g).contiguous(memory_format=torch.channels_last)
w = torch.randn(O, C, 7, 7, generator=g) * 0.05
wcl = w.contiguous(memory_format=torch.channels_last)
def direct():
    return F.conv2d(x, wcl, stride=2, padding=3)
# polyphase weights: (O, 4C, 4, 4)
wp = torch.zeros(O, 4, C, 4, 4)
for p in range(2):
    for q in range(2):
        sub = w[:, :, p::2, q::2]
        wp[:, 2*p+q, :, :sub.shape[2], :sub.shape[3]] = sub
wp = wp.reshape(O, 4*C, 4, 4)
K = 4; S = T - K + 1  # outputs per tile side
# correlation via FFT: y = irfft(X * conj(Wf))  -> use flipped kernel conv; easier: Wf of kernel placed at origin, correlation = ifft(X * conj(Wf))
Wf = torch.fft.rfft2(wp, s=(T, T)).conj()  # (O, 4C, T, T//2+1)
nb = T * (T // 2 + 1)
Wm = Wf.permute(2, 3, 1, 0).reshape(nb, 4*C, O).contiguous()  # (bins, 4C, O)
def fftconv():
    xp = F.pad(x, (3, 3, 3, 3))
    ph = torch.cat([xp[:, :, p::2, q::2][:, :, :H//2+3, :W//2+3] for p in range(2) for q in range(2)], 1)  # (1,4C,h+3,w+3)
    ho, wo = H // 2, W // 2
    nt_r, nt_c = math.ceil(ho / S), math.ceil(wo / S)
    need_h, need_w = nt_r * S + K - 1, nt_c * S + K - 1
    ph = F.pad(ph, (0, need_w - ph.shape[3], 0, need_h - ph.shape[2]))
    tiles = ph.unfold(2, T, S).unfold(3, T, S)  # (1, 4C, nt_r, nt_c, T, T)
    tiles = tiles[0].permute(1, 2, 0, 3, 4).reshape(nt_r * nt_c, 4*C, T, T)
    Xf = torch.fft.rfft2(tiles)  # (nt, 4C, T, T/2+1)
    Xm = Xf.permute(2, 3, 0, 1).reshape(nb, nt_r*nt_c, 4*C)
    Ym = torch.bmm(Xm, Wm)  # (bins, nt, O)
    Yf = Ym.reshape(T, T//2+1, nt_r*nt_c, O).permute(2, 3, 0, 1)
    y = torch.fft.irfft2(Yf, s=(T, T))[:, :, :S, :S]  # (nt, O, S, S)
    y = y.reshape(nt_r, nt_c, O, S, S).permute(2, 0, 3, 1, 4).reshape(1, O, nt_r*S, nt_c*S)
    return y[:, :, :ho, :wo]
with torch.inference_mode():
    a = direct(); b = fftconv()
    print("max err", float((a-b).abs().max()), "scale", float(a.abs().max()))
    def tm(f):
        bst = 1e9
        for _ in range(4):
            t = time.perf_counter(); f(); bst = min(bst, time.perf_counter()-t)
        return bst
    print("direct", round(tm(direct),3), "fft", round(tm(fftconv),3))

#!/usr/bin/python3
# PyTorch reference for cq's fake-quantization ops (run with Debian's /usr/bin/python3, which has torch 1.13):
# torch.fake_quantize_per_{tensor,channel}_affine (forward, STE backward), torch's learnable per-channel op
# (LSQ+: scale and zero-point gradients with grad_factor), and the LSQ paper's formulas written out in float64.
# Writes tests/expected/qat/fake_quant.json; tests/test_qat.cpp checks cq's ops against it to 1e-6.
#   /usr/bin/python3 scripts/qat_reference.py [OUT.json]
import json
import math
import sys

import torch


def lsq_formulas(x, dy, scale, zp, qmin, qmax, grad_factor, group):
    """LSQ (Esser et al., eq. 3) with LSQ+'s offset: v̂ = (clamp(round(v/s) + z, qmin, qmax) − z)·s;
    ∂v̂/∂s = round(v/s) − v/s inside, (qmin − z) / (qmax − z) when clipped; ∂v̂/∂z = 0 inside, −s outside;
    ∂v̂/∂v = 1 inside, 0 outside (STE); scale and zero-point gradients times grad_factor."""
    n = len(x)
    ds = [0.0] * ((n + group - 1) // group)
    dz = [0.0] * len(ds)
    dx = [0.0] * n
    for i in range(n):
        p = i // group
        s = float(scale[p])
        z = int(zp[p])
        inv = float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(s, dtype=torch.float32))
        q = z + int(torch.round(torch.tensor(x[i], dtype=torch.float32) * torch.tensor(inv, dtype=torch.float32)).item())
        if q < qmin or q > qmax:
            ds[p] += dy[i] * ((qmin if q < qmin else qmax) - z)
            dz[p] += dy[i] * (-s)
        else:
            dx[i] = dy[i]
            ds[p] += dy[i] * ((q - z) - x[i] / s)
    return dx, [v * grad_factor for v in ds], [v * grad_factor for v in dz]


def case(name, rows, cols, group, qmin, qmax, symmetric, seed, clip_frac):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows * cols, generator=g, dtype=torch.float32) * 0.7
    dy = torch.randn(rows * cols, generator=g, dtype=torch.float32)
    n_groups = rows * cols // group
    xg = x.view(n_groups, group)
    if symmetric:
        scale = (xg.abs().amax(dim=1) * clip_frac / qmax).clamp_min(1e-4)
        zp = torch.zeros(n_groups, dtype=torch.int32)
    else:
        lo = xg.amin(dim=1).clamp_max(0) * clip_frac
        hi = xg.amax(dim=1).clamp_min(0) * clip_frac
        scale = ((hi - lo) / (qmax - qmin)).clamp_min(1e-4)
        zp = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int32)
    # forward + STE backward: torch.fake_quantize_per_channel_affine over groups (axis 0 of the [groups, group] view)
    xr = xg.clone().requires_grad_(True)
    y = torch.fake_quantize_per_channel_affine(xr, scale, zp, 0, qmin, qmax)
    y.backward(dy.view(n_groups, group))
    # learnable (LSQ+) per channel: scale and zero-point gradients
    grad_factor = 1.0 / math.sqrt(group * qmax)
    xl = xg.clone().requires_grad_(True)
    sl = scale.clone().requires_grad_(True)
    zl = zp.to(torch.float32).clone().requires_grad_(True)
    yl = torch._fake_quantize_learnable_per_channel_affine(xl, sl, zl, 0, qmin, qmax, grad_factor)
    yl.backward(dy.view(n_groups, group))
    assert torch.equal(yl.detach(), y.detach()), name
    fdx, fds, fdz = lsq_formulas(x.tolist(), dy.tolist(), scale.tolist(), zp.tolist(), qmin, qmax, grad_factor, group)
    return {
        "name": name, "rows": rows, "cols": cols, "group": group, "qmin": qmin, "qmax": qmax, "grad_factor": grad_factor,
        "x": x.tolist(), "dy": dy.tolist(), "scale": scale.tolist(), "zero_point": zp.tolist(),
        "y": y.detach().reshape(-1).tolist(), "dx_ste": xr.grad.reshape(-1).tolist(),
        "torch_lsq": {"dx": xl.grad.reshape(-1).tolist(), "dscale": sl.grad.tolist(), "dzero_point": zl.grad.tolist()},
        "formula_lsq": {"dx": fdx, "dscale": fds, "dzero_point": fdz},
    }


def per_tensor_case(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, generator=g, dtype=torch.float32) * 2.0
    dy = torch.randn(64, generator=g, dtype=torch.float32)
    scale, zp, qmin, qmax = 0.0173, 117, 0, 255
    xr = x.clone().requires_grad_(True)
    y = torch.fake_quantize_per_tensor_affine(xr, scale, zp, qmin, qmax)
    y.backward(dy)
    return {"name": "per_tensor_u8", "x": x.tolist(), "dy": dy.tolist(), "scale": scale, "zero_point": zp, "qmin": qmin,
            "qmax": qmax, "y": y.detach().tolist(), "dx_ste": xr.grad.tolist()}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/expected/qat/fake_quant.json"
    cases = [
        case("int8_channel_sym", 6, 40, 40, -127, 127, True, 1, 0.8),
        case("int4_group32_sym", 3, 96, 32, -7, 7, True, 2, 0.7),
        case("int4_group16_asym", 4, 48, 16, 0, 15, False, 3, 0.75),
        case("u8_tensor_asym", 1, 200, 200, 0, 255, False, 4, 0.6),
        case("int3_channel_sym_odd", 5, 37, 37, -3, 3, True, 5, 0.9),
    ]
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases, "per_tensor": per_tensor_case(6)}, f)
    print("wrote", out)


if __name__ == "__main__":
    main()

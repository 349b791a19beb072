#!/usr/bin/env python3
"""Peer comparison on one GPU: MoE / MoA blocks and whole-model generation, this library included.

Runs on the GPU machine, whose Python has torch and transformers and nothing else:

  python3 bench/peers_gpu.py --jetmoe-json OUT/gpu_jetmoe.json   # what scripts/gpu-run.sh perf runs
  python3 bench/peers_gpu.py --jetmoe-bench build/cuda/bench/bench_cuda   # runs bench_cuda itself
  python3 bench/peers_gpu.py --tokens 1,256 --skip-model
  python3 bench/peers_gpu.py --jetmoe-only --jetmoe-json F   # tables and plots of bench_cuda alone (no torch)

Implementations, on the shapes of the CPU suite (bench/bench_moe.cpp) and the same routing
distributions, bf16 weights:

  transformers      transformers' own JetMoeMoE / JetMoeMoA modules, eager (a Python loop over
                    experts, a host sync for the expert sizes), bf16 activations
  grouped_mm        a careful PyTorch MoE: top-k, stable sort by expert, per-expert counts kept on
                    the GPU, torch._grouped_mm for the expert GEMMs, index_add to combine; no host
                    sync, so it is also timed captured as a CUDA graph (grouped_mm+graph)
  dense             the dense layer with the same FLOPs per token (the CPU suite's peer)
  jetmoe            this library (bench_cuda's JSON): moe_layer queued kernel by kernel, and
  jetmoe+graph      moe_layer_recorded, the same layer replayed as a CUDA graph; moa_map/reduce

Points: T in 1,16,64,256,1024,4096,16384; all three distributions (uniform, zipf s=1, one-expert =
experts 0..k-1) for the two JetMoE shapes, uniform only for Mixtral-like and fine-grained
(--all-distributions: all everywhere) — the same product as bench_cuda's. Whole model: the
JetMoE-8B shape with random bf16 weights, transformers eager against bench_cuda's generate, the same
(batch, prompt, decode steps): (1, 2048, 64) and (8, 512, 64).

Method (the same as bench_cuda's): CUDA events around each call; before every timed call the L2 is
flushed by READING a 256 MiB buffer (a sum into a preallocated scalar), outside the events; 3
warm-up calls; 5 repetitions, each the mean of up to 10 calls (fewer once they add up to 20 ms);
median, min and max over the repetitions. Routing distributions are imposed by adding a bias of 64
to the router logits of pre-drawn experts (a forward hook on the transformers router's linear
layer; the same bias in grouped_mm; bench_cuda adds it inside its router kernel).

Floors: a device-to-device copy (bytes read + written) and a bf16 8192³ GEMM on random data, best
of 12, measured here and by bench_cuda with the same definitions; every row, jetmoe's included,
is held to ONE set: the better of the two measurements of each. Bytes of a block: bf16 weights of
the experts that receive rows + the router weights + activations in and out at 2 bytes (bf16);
the model: all weights for a prefill, for a decode step the weights its tokens select plus a bf16
KV cache. floor = max(bytes / bandwidth, FLOPs / peak); floor_frac = floor / time.

Outputs in --out: gpu_peers.json (every row), gpu_peers.md (tables), and PNGs (in --img, default
--out): gpu_latency.png, gpu_floor_fraction.png, gpu_distributions.png, gpu_stages.png, gpu_e2e.png.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot as cpu_plot  # noqa: E402  (bench/plot.py: parse_name / summarise of Google Benchmark JSON)

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # --jetmoe-only works without torch
    torch = None
    F = None

MLP_SHAPES = {
    "jetmoe-8b-mlp": dict(E=8, k=2, H=2048, I=5632),
    "mixtral": dict(E=8, k=2, H=4096, I=14336),
    "fine-grained": dict(E=128, k=8, H=2048, I=768),
}
MOA_SHAPES = {"jetmoe-8b-moa": dict(E=8, k=2, H=2048, kv_heads=16, kv_channels=128)}
SHAPE_TITLES = {
    "jetmoe-8b-mlp": "JetMoE-8B MLP (E=8, k=2, 2048→5632)",
    "mixtral": "Mixtral-like (E=8, k=2, 4096→14336)",
    "fine-grained": "fine-grained (E=128, k=8, 2048→768)",
    "jetmoe-8b-moa": "JetMoE-8B MoA (E=8, k=2, 2048→2048)",
}
DISTRIBUTIONS = ["uniform", "zipf", "one-expert"]
ALL_DISTRIBUTION_SHAPES = {"jetmoe-8b-mlp", "jetmoe-8b-moa"}  # the others run uniform only
DEFAULT_TOKENS = "1,16,64,256,1024,4096,16384"
STEERING_BIAS = 64.0  # far above the spread of the logits: the drawn experts always win
ELEMENT_BYTES = 2     # bf16 weights
ACT_BYTES = 2         # activations in the shared block floor (bf16)
MODEL_CASES = [(1, 2048), (8, 512)]  # (batch, prompt), as bench_cuda's generate
DECODE_STEPS = 64
JETMOE_8B = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=24, num_local_experts=8,
                 num_experts_per_tok=2, num_key_value_heads=16, kv_channels=128, intermediate_size=5632,
                 max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True)
IMPLS = ["dense", "transformers", "grouped_mm", "grouped_mm+graph", "jetmoe", "jetmoe+graph"]
STYLES = {"dense": ("k", "s"), "transformers": ("tab:red", "o"), "grouped_mm": ("tab:blue", "^"),
          "grouped_mm+graph": ("tab:cyan", "v"), "jetmoe": ("tab:green", "D"), "jetmoe+graph": ("tab:olive", "P")}
JETMOE_STAGES = ["router", "plan", "grouped_glu", "grouped_linear", "combine"]


def distributions_for(shape, all_distributions=False):
    return DISTRIBUTIONS if all_distributions or shape in ALL_DISTRIBUTION_SHAPES else ["uniform"]


class Deadline:
    """Seconds left of an optional budget; sections check it before each point."""

    def __init__(self, budget_s):
        self.end = time.monotonic() + budget_s if budget_s and budget_s > 0 else math.inf

    def left(self):
        return self.end - time.monotonic()


# ---- timing -------------------------------------------------------------------------------------

class GpuTimer:
    def __init__(self, flush_bytes=256 << 20, repetitions=5, max_calls=10, cap_seconds=0.02, warmup=3):
        self.flush_buffer = torch.rand(flush_bytes // 4, dtype=torch.float32, device="cuda")
        self.sink = torch.empty((), dtype=torch.float32, device="cuda")
        self.repetitions, self.max_calls, self.cap_seconds, self.warmup = repetitions, max_calls, cap_seconds, warmup

    def flush(self):
        torch.sum(self.flush_buffer, dim=0, dtype=torch.float32, out=self.sink)  # reads 256 MiB, writes 4 bytes

    def _once(self, fn):
        self.flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3

    def time(self, fn):
        for _ in range(self.warmup):
            fn()
        torch.cuda.synchronize()
        means, calls = [], 0
        for _ in range(self.repetitions):
            total, calls = 0.0, 0
            while calls < self.max_calls and (calls == 0 or total < self.cap_seconds):
                total += self._once(fn)
                calls += 1
            means.append(total / calls)
        return {"median": statistics.median(means), "min": min(means), "max": max(means), "reps": len(means),
                "calls": calls}


def measure_floors():
    """Copy bandwidth (bytes read + written) and bf16 GEMM peak on random data, best of 12 each."""
    n = 1 << 28  # 1 GiB of floats per buffer: far beyond any L2
    a = torch.rand(n, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    best = math.inf
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e-3)
    bandwidth = 2 * a.numel() * 4 / best
    del a, b
    m = 8192
    x = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    best = math.inf
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mm(x, y)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e-3)
    del x, y
    torch.cuda.empty_cache()
    return {"copy_bytes_per_s": bandwidth, "gemm_flops_per_s": 2 * m ** 3 / best}


def floor_seconds(floors, bytes_, flops):
    return max(bytes_ / floors["copy_bytes_per_s"], flops / floors["gemm_flops_per_s"])


def apply_floors(results, floors):
    """floor_s / floor_frac of every row from its bytes and FLOPs, all against the same floors."""
    for r in results:
        if r.get("block") == "model":
            if "prefill_s" in r:
                f = floor_seconds(floors, r["prefill_bytes"], r["prefill_flops"])
                r["prefill_floor_frac"] = f / r["prefill_s"]
            if "decode_step_s" in r:
                f = floor_seconds(floors, r["decode_bytes"], r["decode_flops"])
                r["decode_floor_frac"] = f / r["decode_step_s"]
        elif "median" in r:
            r["floor_s"] = floor_seconds(floors, r["bytes"], r["flops"])
            r["floor_frac"] = r["floor_s"] / r["median"] if r["median"] > 0 else 0.0


# ---- routing distributions ----------------------------------------------------------------------

def draw_experts(distribution, tokens, experts, k, generator):
    """(T, k) distinct expert ids per token."""
    if distribution == "uniform":
        return torch.rand(tokens, experts, generator=generator).argsort(dim=1)[:, :k]
    if distribution == "zipf":
        weights = 1.0 / torch.arange(1, experts + 1, dtype=torch.float64)
        return torch.multinomial(weights.expand(tokens, experts), k, replacement=False, generator=generator)
    if distribution == "one-expert":
        return torch.arange(k).expand(tokens, k).clone()
    raise ValueError(distribution)


def steering(chosen, experts):
    """(T, E) bias: STEERING_BIAS on each token's drawn experts, 0 elsewhere."""
    bias = torch.zeros(chosen.shape[0], experts, dtype=torch.float32)
    return bias.scatter_(1, chosen, STEERING_BIAS).cuda()


@contextlib.contextmanager
def steered(router, bias):
    """While inside: the transformers block's router logits get `bias` added (its own dtype)."""
    hook = router.register_forward_hook(lambda _m, _i, out: out + bias.to(out.dtype))
    try:
        yield
    finally:
        hook.remove()


# ---- the grouped_mm MoE -------------------------------------------------------------------------

def grouped_mm(*args, **kwargs):
    fn = getattr(F, "grouped_mm", None) or torch._grouped_mm
    return fn(*args, **kwargs)


def route(x, router_weight, k, bias):
    """Top-k then softmax over the k (JetMoE's router), sorted by expert without a host sync."""
    experts = router_weight.shape[0]
    logits = F.linear(x, router_weight).float() + bias
    top_logits, top_ids = logits.topk(k, dim=1)
    gates = torch.softmax(top_logits, dim=1).to(x.dtype)
    flat_ids = top_ids.flatten()
    order = flat_ids.argsort(stable=True)  # sorted row -> flat slot (token * k + j)
    counts = torch.zeros(experts, dtype=torch.int64, device=x.device).scatter_add_(0, flat_ids, torch.ones_like(flat_ids))
    offsets = counts.cumsum(0).to(torch.int32)  # end of each expert's rows, as grouped_mm wants
    return order, order // k, gates.flatten()[order], offsets


def grouped_moe_mlp(x, w, k, bias):
    order, token_of_row, row_gates, offsets = route(x, w["router"], k, bias)
    h = grouped_mm(x[token_of_row], w["input"].transpose(1, 2), offs=offsets)  # (N, 2I)
    gate_half, up_half = h.chunk(2, dim=-1)
    z = grouped_mm(F.silu(gate_half) * up_half, w["output"].transpose(1, 2), offs=offsets)  # (N, H)
    y = torch.zeros_like(x).index_add_(0, token_of_row, z * row_gates[:, None])
    return y + w["bias"]


def grouped_moa_map(x, w, k, bias):
    order, token_of_row, row_gates, offsets = route(x, w["router"], k, bias)
    q_sorted = grouped_mm(x[token_of_row], w["input"].transpose(1, 2), offs=offsets)  # (N, Dq)
    q = torch.empty_like(q_sorted).index_copy_(0, order, q_sorted)  # back to token-major slots
    return q.view(x.shape[0], k, -1), (order, token_of_row, row_gates, offsets)


def grouped_moa_reduce(o, w, plan):
    order, token_of_row, row_gates, offsets = plan
    tokens = o.shape[0]
    z = grouped_mm(o.reshape(-1, o.shape[-1])[order], w["output"].transpose(1, 2), offs=offsets)  # (N, H)
    y = torch.zeros(tokens, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, token_of_row, z * row_gates[:, None])
    return y + w["bias"]


def as_cuda_graph(fn):
    """fn captured once as a CUDA graph (static shapes, no host sync inside); None when capture fails."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay
    except Exception as error:  # noqa: BLE001 - report and carry on without the graph variant
        print(f"peers_gpu: CUDA graph capture failed: {error}", file=sys.stderr)
        return None


# ---- transformers' modules ----------------------------------------------------------------------

def jetmoe_config(**fields):
    from transformers import JetMoeConfig
    config = JetMoeConfig(**fields)
    # transformers 5 can swap an MoE's expert loop for other backends; pin the eager one (a no-op
    # where JetMoE's experts do not take part in that switch).
    config._experts_implementation = "eager"
    return config


class bf16_on_cuda:
    """Parameters created directly on the GPU in bf16 (no fp32 copy on the host: the Mixtral-like
    block alone would be 5.6 GB there)."""

    def __enter__(self):
        self.dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        self.device = torch.device("cuda")
        self.device.__enter__()

    def __exit__(self, *exc):
        self.device.__exit__(*exc)
        torch.set_default_dtype(self.dtype)


def transformers_block(class_name, config):
    import transformers.models.jetmoe.modeling_jetmoe as modeling
    with bf16_on_cuda():
        block = getattr(modeling, class_name)(config)
    with torch.no_grad():
        for name, p in block.named_parameters():
            p.normal_(std=0.01 if name.endswith("bias") else 0.02)
    return block.to(device="cuda", dtype=torch.bfloat16).eval()


def router_linear(block, experts):
    """The nn.Linear producing the router logits: router.layer in transformers 4.4x–5.x, else the
    only Linear with E outputs."""
    layer = getattr(getattr(block, "router", None), "layer", None)
    if isinstance(layer, torch.nn.Linear):
        return layer
    candidates = [m for m in block.modules() if isinstance(m, torch.nn.Linear) and m.out_features == experts]
    if len(candidates) != 1:
        raise RuntimeError(f"cannot find the router of {type(block).__name__}")
    return candidates[0]


def expert_weights(block):
    return {"router": router_linear(block, block.input_linear.weight.shape[0]).weight,
            "input": block.input_linear.weight, "output": block.output_linear.weight, "bias": block.bias}


def first_output(result):
    return result[0] if isinstance(result, tuple) else result


# ---- work per call (the same formulas as bench_cuda's block floors) -------------------------------

def mlp_work(s, tokens, experts_used, dense=False):
    H, I, E, k = s["H"], s["I"], s["E"], s["k"]
    if dense:
        return ELEMENT_BYTES * 3 * k * I * H + ACT_BYTES * 2 * tokens * H, 2 * tokens * 3 * k * I * H
    return (ELEMENT_BYTES * (experts_used * 3 * H * I + E * H) + ACT_BYTES * 2 * tokens * H,
            2 * tokens * k * 3 * H * I + 2 * tokens * H * E)


def moa_work(s, tokens, experts_used, half, dense=False):
    H, Dq, E, k = s["H"], s["kv_heads"] * s["kv_channels"], s["E"], s["k"]
    activations = ACT_BYTES * tokens * (H + k * Dq)
    if dense:
        return ELEMENT_BYTES * k * Dq * H + activations, 2 * tokens * k * Dq * H
    router = ELEMENT_BYTES * E * H if half == "map" else 0
    return ELEMENT_BYTES * experts_used * Dq * H + router + activations, 2 * tokens * k * Dq * H + (
        2 * tokens * H * E if half == "map" else 0)


# ---- the block benchmarks -----------------------------------------------------------------------

def record(results, floors, impl, block, shape, distribution, tokens, timing, work, note=""):
    bytes_, flops = work
    floor = floor_seconds(floors, bytes_, flops)
    results.append(dict(impl=impl, block=block, shape=shape, distribution=distribution, T=tokens, **timing,
                        bytes=bytes_, flops=flops, floor_s=floor, floor_frac=floor / timing["median"], note=note))
    print(f"{impl:>18} {block:>10} {shape:>14} {distribution or '-':>10} T={tokens:<6} "
          f"{timing['median'] * 1e3:9.3f} ms  floor {floor / timing['median'] * 100:5.1f}%", flush=True)


def out_of_time(deadline, reserve, skipped, what):
    if deadline.left() < reserve:
        skipped.append(what)
        return True
    return False


@torch.no_grad() if torch else (lambda f: f)
def bench_mlp(results, floors, timer, shape, tokens_list, graphs, all_distributions, deadline, reserve, skipped):
    generator = torch.Generator().manual_seed(0)
    s = MLP_SHAPES[shape]
    config = jetmoe_config(hidden_size=s["H"], intermediate_size=s["I"], num_local_experts=s["E"],
                           num_experts_per_tok=s["k"], num_key_value_heads=16, kv_channels=s["H"] // 16,
                           num_hidden_layers=1)
    block = transformers_block("JetMoeMoE", config)
    w = expert_weights(block)  # grouped_mm runs on the very same tensors
    dense_in = torch.randn(2 * s["k"] * s["I"], s["H"], dtype=torch.bfloat16, device="cuda") * 0.02
    dense_out = torch.randn(s["H"], s["k"] * s["I"], dtype=torch.bfloat16, device="cuda") * 0.02
    router = router_linear(block, s["E"])
    for tokens in tokens_list:
        if out_of_time(deadline, reserve, skipped, f"mlp/{shape}/T:{tokens} and later"):
            break
        x = torch.randn(tokens, s["H"], dtype=torch.bfloat16, device="cuda")

        def dense():
            h = F.linear(x, dense_in)
            gate_half, up_half = h.chunk(2, dim=-1)
            return F.linear(F.silu(gate_half) * up_half, dense_out)

        record(results, floors, "dense", "mlp", shape, None, tokens, timer.time(dense),
               mlp_work(s, tokens, s["E"], dense=True))
        for distribution in distributions_for(shape, all_distributions):
            chosen = draw_experts(distribution, tokens, s["E"], s["k"], generator)
            used = int(chosen.unique().numel())
            bias = steering(chosen, s["E"])
            with steered(router, bias):
                x3 = x.view(1, tokens, s["H"])
                record(results, floors, "transformers", "mlp", shape, distribution, tokens,
                       timer.time(lambda: first_output(block(x3))), mlp_work(s, tokens, used))
            run = lambda: grouped_moe_mlp(x, w, s["k"], bias)  # noqa: E731
            record(results, floors, "grouped_mm", "mlp", shape, distribution, tokens, timer.time(run),
                   mlp_work(s, tokens, used))
            if graphs:
                replay = as_cuda_graph(run)
                if replay is not None:
                    record(results, floors, "grouped_mm+graph", "mlp", shape, distribution, tokens,
                           timer.time(replay), mlp_work(s, tokens, used))
                del replay
    del block, w, dense_in, dense_out
    torch.cuda.empty_cache()


@torch.no_grad() if torch else (lambda f: f)
def bench_moa(results, floors, timer, shape, tokens_list, graphs, all_distributions, deadline, reserve, skipped):
    generator = torch.Generator().manual_seed(1)
    s = MOA_SHAPES[shape]
    Dq = s["kv_heads"] * s["kv_channels"]
    config = jetmoe_config(hidden_size=s["H"], num_local_experts=s["E"], num_experts_per_tok=s["k"],
                           num_key_value_heads=s["kv_heads"], kv_channels=s["kv_channels"], num_hidden_layers=1)
    block = transformers_block("JetMoeMoA", config)
    w = expert_weights(block)
    router = router_linear(block, s["E"])
    dense_map = torch.randn(s["k"] * Dq, s["H"], dtype=torch.bfloat16, device="cuda") * 0.02
    dense_reduce = torch.randn(s["H"], s["k"] * Dq, dtype=torch.bfloat16, device="cuda") * 0.02
    for tokens in tokens_list:
        if out_of_time(deadline, reserve, skipped, f"moa/{shape}/T:{tokens} and later"):
            break
        x = torch.randn(tokens, s["H"], dtype=torch.bfloat16, device="cuda")
        o = torch.randn(tokens, s["k"], Dq, dtype=torch.bfloat16, device="cuda")
        record(results, floors, "dense", "moa_map", shape, None, tokens, timer.time(lambda: F.linear(x, dense_map)),
               moa_work(s, tokens, s["E"], "map", dense=True))
        record(results, floors, "dense", "moa_reduce", shape, None, tokens,
               timer.time(lambda: F.linear(o.view(tokens, -1), dense_reduce)),
               moa_work(s, tokens, s["E"], "reduce", dense=True))
        for distribution in distributions_for(shape, all_distributions):
            chosen = draw_experts(distribution, tokens, s["E"], s["k"], generator)
            used = int(chosen.unique().numel())
            bias = steering(chosen, s["E"])
            with steered(router, bias):
                x3, o4 = x.view(1, tokens, s["H"]), o.view(1, tokens, s["k"], Dq)
                topo = block.map(x3)[-1]  # (output, [router logits,] routing topology)
                record(results, floors, "transformers", "moa_map", shape, distribution, tokens,
                       timer.time(lambda: block.map(x3)), moa_work(s, tokens, used, "map"))
                record(results, floors, "transformers", "moa_reduce", shape, distribution, tokens,
                       timer.time(lambda: block.reduce(o4, topo)), moa_work(s, tokens, used, "reduce"))
            _, plan = grouped_moa_map(x, w, s["k"], bias)
            run_map = lambda: grouped_moa_map(x, w, s["k"], bias)  # noqa: E731
            run_reduce = lambda: grouped_moa_reduce(o, w, plan)  # noqa: E731
            for half, run in (("moa_map", run_map), ("moa_reduce", run_reduce)):
                record(results, floors, "grouped_mm", half, shape, distribution, tokens, timer.time(run),
                       moa_work(s, tokens, used, half.split("_")[1]))
                if graphs:
                    replay = as_cuda_graph(run)
                    if replay is not None:
                        record(results, floors, "grouped_mm+graph", half, shape, distribution, tokens,
                               timer.time(replay), moa_work(s, tokens, used, half.split("_")[1]))
    del block, w
    torch.cuda.empty_cache()


# ---- the whole model ----------------------------------------------------------------------------

def model_cost(c):
    """bench/model_cost.hpp's formulas, with a bf16 KV cache (the shared floor's)."""
    H, E, k, I, V, L = (c["hidden_size"], c["num_local_experts"], c["num_experts_per_tok"], c["intermediate_size"],
                        c["vocab_size"], c["num_hidden_layers"])
    Dq = c["num_key_value_heads"] * c["kv_channels"]
    moa_expert, mlp_expert = 2 * Dq * H, 3 * H * I
    shared = 2 * E * H + 2 * Dq * H + 4 * H
    active = L * (shared + k * (moa_expert + mlp_expert))
    attention = lambda keys: L * 4 * k * c["num_key_value_heads"] * c["kv_channels"] * keys  # noqa: E731
    return dict(
        total_params=V * H + H + L * (shared + E * (moa_expert + mlp_expert)),
        prefill_flops=lambda b, p: b * (2 * active * p + attention(p * (p + 1) / 2) + 2 * V * H),
        decode_bytes=lambda b, cached: ELEMENT_BYTES * (
            L * (shared + E * (1 - (1 - k / E) ** b) * (moa_expert + mlp_expert)) + V * H)
        + ACT_BYTES * L * b * cached * 2 * Dq,
        decode_flops=lambda b, cached: b * (2 * active + attention(cached + 1) + 2 * V * H),
    )


def build_model(config_fields):
    from transformers import AutoModelForCausalLM
    config = jetmoe_config(**config_fields)
    with bf16_on_cuda():  # parameters are created on the GPU in bf16 directly (17 GB, not 34 on the host)
        for kwargs in ({"attn_implementation": "eager", "experts_implementation": "eager", "dtype": torch.bfloat16},
                       {"attn_implementation": "eager", "dtype": torch.bfloat16},
                       {"attn_implementation": "eager", "torch_dtype": torch.bfloat16},
                       {"attn_implementation": "eager"}):
            try:
                model = AutoModelForCausalLM.from_config(config, **kwargs)
                break
            except TypeError:
                continue
        else:
            raise RuntimeError("AutoModelForCausalLM.from_config accepted none of the argument sets tried")
    if hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation("eager")
        except Exception as error:  # noqa: BLE001 - JetMoE's experts may not take part in the switch
            print(f"peers_gpu: set_experts_implementation('eager'): {error}", file=sys.stderr)
    return model.to(device="cuda", dtype=torch.bfloat16).eval()


def describe_backends(model):
    """What transformers says it runs: attention and experts implementations."""
    described = {"attention": getattr(model.config, "_attn_implementation", "?")}
    if hasattr(model, "get_experts_implementation"):
        try:
            described["experts"] = model.get_experts_implementation()
        except Exception as error:  # noqa: BLE001
            described["experts"] = f"unknown ({error})"
    return described


def forward(model, ids, past=None):
    try:
        return model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
    except TypeError:  # older signature without logits_to_keep
        return model(input_ids=ids, past_key_values=past, use_cache=True)


def model_row(impl, batch, prompt, steps, prefill_s, step_s, cost, note=""):
    row = dict(impl=impl, block="model", shape="jetmoe-8b-random", distribution=None, T=batch * prompt, batch=batch,
               prompt=prompt, decode_steps=steps, note=note,
               prefill_bytes=ELEMENT_BYTES * cost["total_params"], prefill_flops=cost["prefill_flops"](batch, prompt))
    if prefill_s:
        row.update(prefill_s=prefill_s, prefill_tok_s=batch * prompt / prefill_s)
    if step_s:
        cached = prompt + steps / 2
        row.update(decode_step_s=step_s, decode_tok_s=batch / step_s, decode_bytes=cost["decode_bytes"](batch, cached),
                   decode_flops=cost["decode_flops"](batch, cached))
    return row


@torch.no_grad() if torch else (lambda f: f)
def bench_model(results, decode_steps, deadline, skipped, reps=3):
    model = build_model(JETMOE_8B)
    backends = describe_backends(model)
    print(f"peers_gpu: transformers model backends: {backends}", flush=True)
    cost = model_cost(JETMOE_8B)
    generator = torch.Generator().manual_seed(2)

    def decode(out, steps):
        past, next_ids = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(steps):
            out = forward(model, next_ids, past)
            past, next_ids = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    for batch, length in MODEL_CASES:
        if out_of_time(deadline, 20, skipped, f"model B={batch} P={length}"):
            continue
        ids = torch.randint(3, JETMOE_8B["vocab_size"], (batch, length), generator=generator).cuda()
        decode(forward(model, ids), 2)  # warm-up: prefill and a few decode steps
        torch.cuda.synchronize()
        prefill_times, decode_times = [], []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = forward(model, ids)
            end.record()
            end.synchronize()
            prefill_times.append(start.elapsed_time(end) * 1e-3)
            start.record()
            decode(out, decode_steps)
            end.record()
            end.synchronize()
            decode_times.append(start.elapsed_time(end) * 1e-3)
            del out
            if deadline.left() < 10:
                break
        row = model_row("transformers", batch, length, decode_steps, statistics.median(prefill_times),
                        statistics.median(decode_times) / decode_steps, cost, note=f"eager, {backends}")
        row["reps"] = len(prefill_times)
        results.append(row)
        print(f"model transformers B={batch} P={length}: prefill {row['prefill_tok_s']:.0f} tok/s, "
              f"decode {row['decode_tok_s']:.1f} tok/s", flush=True)
    del model
    torch.cuda.empty_cache()


# ---- this library ---------------------------------------------------------------------------------

def run_jetmoe_bench(path, out_dir, timeout, existing_json=None):
    """Runs bench_cuda with JSON output (or reads existing_json); returns (rows, context, note)."""
    if existing_json:
        if not os.path.isfile(existing_json):
            return [], {}, f"{existing_json} not found (bench_cuda did not run or wrote nothing)"
        rows, context, errors = read_jetmoe_json(existing_json)
        return rows, context, f"read {existing_json}" + (f"; {errors}" if errors else "")
    candidates = [path] if path else ["build/cuda/bench/bench_cuda", "gpu-bundle/bench_cuda"]
    binary = next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)
    if binary is None:
        return [], {}, f"bench_cuda not found (looked at {', '.join(c for c in candidates if c)})"
    json_path = os.path.join(out_dir, "gpu_jetmoe.json")
    try:
        subprocess.run([binary, f"--benchmark_out={json_path}", "--benchmark_out_format=json"], check=True,
                       timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        if not os.path.isfile(json_path):
            return [], {}, f"{binary} failed: {error}"
    rows, context, errors = read_jetmoe_json(json_path)
    return rows, context, f"ran {binary}" + (f"; {errors}" if errors else "")


JETMOE_BLOCKS = {"moe_layer": ("mlp", "jetmoe"), "moe_layer_recorded": ("mlp", "jetmoe+graph"),
                 "moa_map": ("moa_map", "jetmoe"), "moa_reduce": ("moa_reduce", "jetmoe")}


def read_jetmoe_json(json_path):
    """bench_cuda's Google Benchmark JSON → rows keyed like the peers' (impl, block, shape,
    distribution, T), medians over the repetitions; plus its context and a note on errors."""
    context, records = cpu_plot.summarise(json_path)
    cost = model_cost(JETMOE_8B)
    rows, errors = [], []
    for r in records:
        if "error" in r:
            errors.append(f"{r['name']}: {r['error']}")
            continue
        kind, labels, params = r["kind"], r["labels"], r["params"]
        c = {k: v["median"] for k, v in r.get("counters", {}).items()}
        if kind in JETMOE_BLOCKS or kind in JETMOE_STAGES:
            if len(labels) < 2 or "T" not in params:
                continue
            block, impl = JETMOE_BLOCKS.get(kind, (kind, "jetmoe"))
            rows.append(dict(impl=impl, block=block, shape=labels[0], distribution=labels[1], T=params["T"],
                             median=r["seconds"]["median"], min=r["seconds"]["min"], max=r["seconds"]["max"],
                             reps=r["repetitions"], calls=c.get("calls"), bytes=c.get("bytes", 0.0),
                             flops=c.get("flops", 0.0), experts_used=c.get("experts_used"), note="bench_cuda"))
        elif kind == "generate":
            batch, prompt, graph = params.get("B"), params.get("P"), params.get("graph", 1)
            steps = int(c.get("decode_steps", DECODE_STEPS))
            row = model_row("jetmoe" if graph else "jetmoe (queued steps)", batch, prompt, steps, c.get("prefill_s"),
                            c.get("decode_step_s"), cost, note="bench_cuda generate, host clock")
            row["reps"] = r["repetitions"]
            if graph and c.get("graph_replayed", 1.0) < 1.0:
                row["note"] += "; decode steps NOT replayed as a graph (the recording failed)"
                row["impl"] = "jetmoe (graph failed)"
            rows.append(row)
    note = f"{len(errors)} benchmarks reported an error or were skipped (first: {errors[0]})" if errors else ""
    return rows, context, note


def common_floors(measured, context):
    """One set for every row: the better of the peers' measurement and bench_cuda's, per floor."""
    floors = dict(measured or {})
    sources = {"peers_gpu": dict(measured or {})}
    try:
        theirs = {"copy_bytes_per_s": float(context["floor_copy_GBps"]) * 1e9,
                  "gemm_flops_per_s": float(context["floor_gemm_GFLOPs"]) * 1e9}
        sources["bench_cuda"] = theirs
        for key, value in theirs.items():
            floors[key] = max(floors.get(key, 0.0), value)
    except (KeyError, ValueError, TypeError):
        pass
    return floors, sources


# ---- report -------------------------------------------------------------------------------------

def fmt_ms(seconds):
    if seconds is None:
        return "–"
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def fmt_pct(x):
    return "–" if x is None else f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%"


def find_row(results, **keys):
    for r in results:
        if all(r.get(k) == v for k, v in keys.items()):
            return r
    return None


def target_lines(results):
    """Issue 5's targets (stated for an H100) against this run's jetmoe numbers."""
    def layer(T, impl, dist="uniform"):
        return find_row(results, impl=impl, block="mlp", shape="jetmoe-8b-mlp", distribution=dist, T=T)

    def worst(rows):
        rows = [r for r in rows if r is not None]
        return max(rows, key=lambda r: r["median"]) if rows else None

    lines = ["| target (issue 5, H100) | queued | as a CUDA graph | met? |", "|---|---:|---:|---|"]

    def verdict(value, limit, smaller_is_better=True):
        if value is None:
            return "not measured"
        return "yes" if (value <= limit if smaller_is_better else value >= limit) else "no"

    checks = [("MoE MLP layer, T = 1: ≤ 75 µs", [1], 75e-6), ("MoE MLP layer, T = 16…256: ≤ 230 µs", [16, 64, 256], 230e-6),
              ("MoE MLP layer, T = 16384: ≤ 4.0 ms", [16384], 4e-3)]
    for label, tokens, limit in checks:
        cells = []
        for impl in ("jetmoe", "jetmoe+graph"):
            r = worst([layer(T, impl, d) for T in tokens for d in DISTRIBUTIONS])
            cells.append(r)
        best = min((c["median"] for c in cells if c), default=None)
        lines.append(f"| {label} (worst over T and distributions) | {fmt_ms(cells[0]['median'] if cells[0] else None)} | "
                     f"{fmt_ms(cells[1]['median'] if cells[1] else None)} | {verdict(best, limit)} |")
    plans = [r for r in results if r["impl"] == "jetmoe" and r["block"] == "plan" and r["shape"] == "jetmoe-8b-mlp"]
    plan = max(plans, key=lambda r: r["median"]) if plans else None
    lines.append(f"| routing plan ≤ 20 µs up to T = 16384 (worst: {plan['distribution'] if plan else '–'}, "
                 f"T = {plan['T'] if plan else '–'}) | {fmt_ms(plan['median'] if plan else None)} | – | "
                 f"{verdict(plan['median'] if plan else None, 20e-6)} |")
    queued = find_row(results, impl="jetmoe (queued steps)", block="model", batch=1, prompt=2048)
    graph = find_row(results, impl="jetmoe", block="model", batch=1, prompt=2048)
    dec = [r.get("decode_tok_s") if r else None for r in (queued, graph)]
    best_dec = max((d for d in dec if d), default=None)
    lines.append(f"| decode at batch 1 ≥ 400 tok/s (prompt 2048) | {dec[0] or 0:.0f} tok/s | {dec[1] or 0:.0f} tok/s | "
                 f"{verdict(best_dec, 400, False)} |")
    pre = [r.get("prefill_tok_s") if r else None for r in (queued, graph)]
    best_pre = max((p for p in pre if p), default=None)
    lines.append(f"| prefill 1 × 2048 ≥ 100k tok/s | {pre[0] or 0:,.0f} tok/s | {pre[1] or 0:,.0f} tok/s | "
                 f"{verdict(best_pre, 100e3, False)} |")
    return lines


def write_markdown(path, meta, results, jetmoe_note, skipped):
    f = meta["floors"]
    lines = [f"# GPU comparison ({meta['device']})", "",
             f"torch {meta.get('torch')}, transformers {meta.get('transformers')}, CUDA {meta.get('cuda')}; "
             f"{meta['date_utc']}. Floors held to (the better of each side's measurement): copy "
             f"{f['copy_bytes_per_s'] / 1e9:.0f} GB/s (read + write), bf16 GEMM {f['gemm_flops_per_s'] / 1e12:.0f} TFLOP/s.",
             "", f"Method: {meta['method']}", "",
             "Cells: median time per call (fraction of the floor reached). jetmoe = this library (bench_cuda), "
             "fp32 activations in and out; the peers use bf16 activations; the floor of a point is the same for all.",
             ""]
    if any(r["impl"].startswith("jetmoe") for r in results):
        lines += ["## Issue 5 targets", ""] + target_lines(results) + [""]
    blocks = sorted({(r["block"], r["shape"]) for r in results if r["block"] in ("mlp", "moa_map", "moa_reduce")},
                    key=lambda x: (list(SHAPE_TITLES).index(x[1]) if x[1] in SHAPE_TITLES else 99, x[0]))
    for block, shape in blocks:
        here = [r for r in results if r["block"] == block and r["shape"] == shape]
        impls = [i for i in IMPLS if any(r["impl"] == i for r in here)]
        lines += [f"## {block} — {SHAPE_TITLES.get(shape, shape)}", "",
                  "| T | distribution | " + " | ".join(impls) + " |", "|---:|---|" + "---:|" * len(impls)]
        keys = sorted({(r["T"], r["distribution"]) for r in here if r["distribution"]},
                      key=lambda x: (x[0], DISTRIBUTIONS.index(x[1]) if x[1] in DISTRIBUTIONS else 9))
        for tokens, distribution in keys:
            cells = []
            for impl in impls:
                match = [r for r in here if r["T"] == tokens and r["impl"] == impl
                         and (r["distribution"] == distribution or impl == "dense")]
                cells.append(f"{fmt_ms(match[0]['median'])} ({fmt_pct(match[0].get('floor_frac'))})" if match else "–")
            lines.append(f"| {tokens} | {distribution} | " + " | ".join(cells) + " |")
        lines.append("")
    model_rows = [r for r in results if r["block"] == "model"]
    if model_rows:
        lines += ["## Whole model: JetMoE-8B shape, random bf16 weights, greedy", "",
                  "| implementation | batch | prompt | decode steps | prefill tok/s (% floor) | decode tok/s (% floor) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in sorted(model_rows, key=lambda r: (r["batch"], r["prompt"], r["impl"])):
            pre = f"{r['prefill_tok_s']:,.0f} ({fmt_pct(r.get('prefill_floor_frac'))})" if "prefill_tok_s" in r else "–"
            dec = f"{r['decode_tok_s']:,.1f} ({fmt_pct(r.get('decode_floor_frac'))})" if "decode_tok_s" in r else "–"
            lines.append(f"| {r['impl']} | {r['batch']} | {r['prompt']} | {r.get('decode_steps', '–')} | {pre} | {dec} |")
        lines += ["", "transformers: eager attention and experts, CUDA events around the prefill and around the decode "
                  "steps; jetmoe: generation::generate's host-clock prefill and decode times (the first new token is "
                  "the prefill's).", ""]
    stage_rows = [r for r in results if r["impl"] == "jetmoe" and r["block"] in JETMOE_STAGES]
    if stage_rows:
        lines += ["## This library's dispatch stages (bench_cuda)", "",
                  "Median time (fraction of the stage's own floor: its bytes at the library's types, its FLOPs).", "",
                  "| shape | distribution | T | " + " | ".join(JETMOE_STAGES) + " | moe_layer | moe_layer_recorded |",
                  "|---|---|---:|" + "---:|" * (len(JETMOE_STAGES) + 2)]
        keys = sorted({(r["shape"], r["distribution"], r["T"]) for r in stage_rows},
                      key=lambda x: (list(SHAPE_TITLES).index(x[0]) if x[0] in SHAPE_TITLES else 99,
                                     DISTRIBUTIONS.index(x[1]) if x[1] in DISTRIBUTIONS else 9, x[2]))
        for shape, distribution, tokens in keys:
            cells = []
            for block, impl in [(s, "jetmoe") for s in JETMOE_STAGES] + [("mlp", "jetmoe"), ("mlp", "jetmoe+graph")]:
                r = find_row(results, impl=impl, block=block, shape=shape, distribution=distribution, T=tokens)
                cells.append(f"{fmt_ms(r['median'])} ({fmt_pct(r.get('floor_frac'))})" if r else "–")
            lines.append(f"| {shape} | {distribution} | {tokens} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Notes", "", f"- this library: {jetmoe_note}"]
    lines += [f"- skipped for time: {s}" for s in skipped]
    open(path, "w").write("\n".join(lines) + "\n")


def write_plots(out_dir, results, meta):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("peers_gpu: matplotlib is not installed; no plots (the JSON and markdown have everything)", file=sys.stderr)
        return []
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    def rows_of(block, shape, impl, distribution):
        return sorted((r for r in results if r["block"] == block and r["shape"] == shape and r["impl"] == impl
                       and (r["distribution"] == distribution or (impl == "dense" and r["distribution"] is None))
                       and "median" in r), key=lambda r: r["T"])

    panels = [("mlp", "jetmoe-8b-mlp"), ("mlp", "mixtral"), ("mlp", "fine-grained"), ("moa_map", "jetmoe-8b-moa")]
    for metric, file_name, ylabel in (("median", "gpu_latency.png", "time per call (ms)"),
                                      ("floor_frac", "gpu_floor_fraction.png", "fraction of the hardware floor")):
        fig, axes = plt.subplots(2, 2, figsize=(12, 9))
        for ax, (block, shape) in zip(axes.flat, panels):
            for impl, (color, marker) in STYLES.items():
                rows = rows_of(block, shape, impl, "uniform")
                if rows:
                    ax.plot([r["T"] for r in rows], [r[metric] * (1e3 if metric == "median" else 1.0) for r in rows],
                            marker=marker, color=color, label=impl)
            if metric == "median":
                floor_rows = rows_of(block, shape, "jetmoe", "uniform") or rows_of(block, shape, "grouped_mm", "uniform")
                if floor_rows:
                    ax.plot([r["T"] for r in floor_rows], [r["floor_s"] * 1e3 for r in floor_rows], ":", color="grey",
                            label="hardware floor")
                ax.set_yscale("log")
            else:
                ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("tokens T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{block} — {SHAPE_TITLES.get(shape, shape)}, uniform routing", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
        fig.suptitle(f"{meta['device']}, bf16 weights", fontsize=11)
        save(fig, file_name)

    # Routing distributions on the JetMoE shapes: jetmoe and grouped_mm, one line style per distribution.
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    dist_styles = {"uniform": "-", "zipf": "--", "one-expert": ":"}
    for ax, (block, shape) in zip(axes, [("mlp", "jetmoe-8b-mlp"), ("moa_map", "jetmoe-8b-moa")]):
        for impl in ("jetmoe", "jetmoe+graph", "grouped_mm", "transformers"):
            for d, style in dist_styles.items():
                rows = rows_of(block, shape, impl, d)
                if rows:
                    ax.plot([r["T"] for r in rows], [r["median"] * 1e3 for r in rows], style, marker=STYLES[impl][1],
                            color=STYLES[impl][0], label=f"{impl}, {d}", ms=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens T")
        ax.set_ylabel("time per call (ms)")
        ax.set_title(f"{block} — {SHAPE_TITLES.get(shape, shape)}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"Routing distributions, {meta['device']}", fontsize=11)
    save(fig, "gpu_distributions.png")

    # This library's stages (uniform routing).
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, shape in zip(axes, MLP_SHAPES):
        for i, (block, impl) in enumerate([(s, "jetmoe") for s in JETMOE_STAGES] + [("mlp", "jetmoe"), ("mlp", "jetmoe+graph")]):
            rows = rows_of(block, shape, impl, "uniform")
            if rows:
                label = {"mlp": "whole layer"}.get(block, block) + (" (graph)" if impl == "jetmoe+graph" else "")
                ax.plot([r["T"] for r in rows], [r["median"] * 1e3 for r in rows], marker="o", color=cmap(i), label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens T")
        ax.set_title(SHAPE_TITLES.get(shape, shape), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("time per call (ms)")
    fig.suptitle(f"This library's dispatch stages and layer (uniform routing), {meta['device']}", fontsize=11)
    save(fig, "gpu_stages.png")

    model_rows = sorted((r for r in results if r["block"] == "model"), key=lambda r: (r["batch"], r["prompt"], r["impl"]))
    if model_rows:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
        for ax, key, title in ((axes[0], "prefill_tok_s", "prefill tokens/s"), (axes[1], "decode_tok_s", "decode tokens/s")):
            rows = [r for r in model_rows if key in r]
            labels = [f"{r['impl']}\nB={r['batch']} P={r['prompt']}" for r in rows]
            values = [r[key] for r in rows]
            colors = [STYLES.get(r["impl"].split(" ")[0], ("grey", "o"))[0] for r in rows]
            ax.bar(range(len(rows)), values, color=colors)
            for i, v in enumerate(values):
                ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_yscale("log")
            ax.set_title(title, fontsize=10)
            ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.suptitle(f"JetMoE-8B shape, random bf16 weights, {meta['device']}", fontsize=11)
        save(fig, "gpu_e2e.png")
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/gpu")
    parser.add_argument("--img", help="folder for the PNG plots (default: --out), e.g. docs/img")
    parser.add_argument("--tokens", default=DEFAULT_TOKENS, help="comma-separated T values")
    parser.add_argument("--all-distributions", action="store_true", help="all three distributions on every shape")
    parser.add_argument("--skip-blocks", action="store_true", help="skip the MoE / MoA block comparison")
    parser.add_argument("--skip-model", action="store_true", help="skip the whole-model prefill / decode run")
    parser.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph variant of grouped_mm")
    parser.add_argument("--decode-steps", type=int, default=DECODE_STEPS)
    parser.add_argument("--budget-s", type=float, default=0,
                        help="wall-clock budget for the measurements (0 = none): block points stop with 60 s left for "
                             "the model, which stops with 10 s left; what was skipped is listed")
    parser.add_argument("--jetmoe-bench", help="path of this library's bench_cuda to run (default: look in build dirs)")
    parser.add_argument("--jetmoe-timeout", type=int, default=300)
    parser.add_argument("--jetmoe-json", help="reuse this bench_cuda JSON (scripts/gpu-run.sh perf writes it first) "
                                              "instead of running bench_cuda again")
    parser.add_argument("--jetmoe-only", action="store_true",
                        help="no peers, no torch needed: tables and plots of --jetmoe-json alone")
    args = parser.parse_args()
    start = time.monotonic()
    deadline = Deadline(args.budget_s)
    os.makedirs(args.out, exist_ok=True)

    measured, meta = None, dict(date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                python=platform.python_version())
    if not args.jetmoe_only:
        if torch is None or not torch.cuda.is_available():
            sys.exit("peers_gpu: torch with a CUDA device is needed (or --jetmoe-only with --jetmoe-json)")
        torch.backends.cuda.matmul.allow_tf32 = False
        import transformers
        measured = measure_floors()
        meta.update(device=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__,
                    cuda=torch.version.cuda)
        print(f"peers_gpu: {meta['device']}, copy {measured['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
              f"bf16 GEMM {measured['gemm_flops_per_s'] / 1e12:.0f} TFLOP/s", flush=True)

    jetmoe_rows, context, jetmoe_note = run_jetmoe_bench(args.jetmoe_bench, args.out, args.jetmoe_timeout,
                                                         args.jetmoe_json)
    print(f"peers_gpu: this library: {jetmoe_note} ({len(jetmoe_rows)} rows)", flush=True)
    meta.setdefault("device", context.get("gpu_name", "unknown GPU"))
    floors, floor_sources = common_floors(measured, context)
    if "copy_bytes_per_s" not in floors:
        sys.exit("peers_gpu: no floors: neither measured here nor found in bench_cuda's JSON context")
    meta.update(floors=floors, floor_sources=floor_sources, jetmoe_context=context,
                method="CUDA events per call; L2 flushed by a 256 MiB read before each timed call; 3 warm-up calls; "
                       "5 repetitions of up to 10 calls (≤ 20 ms) each, median/min/max over the repetitions; clocks "
                       "not locked")

    results, skipped = [], []
    if not args.jetmoe_only:
        tokens = [int(t) for t in args.tokens.split(",") if t]
        timer = GpuTimer()
        graphs = not args.no_graphs
        model_reserve = 0 if args.skip_model else 60
        # The priority order of bench_cuda: the JetMoE shapes, the model, then the others.
        tasks = []
        if not args.skip_blocks:
            tasks += [lambda: bench_mlp(results, floors, timer, "jetmoe-8b-mlp", tokens, graphs, args.all_distributions,
                                        deadline, model_reserve, skipped),
                      lambda: bench_moa(results, floors, timer, "jetmoe-8b-moa", tokens, graphs, args.all_distributions,
                                        deadline, model_reserve, skipped)]
        if not args.skip_model:
            tasks.append(lambda: bench_model(results, args.decode_steps, deadline, skipped))
        if not args.skip_blocks:
            tasks += [lambda shape=shape: bench_mlp(results, floors, timer, shape, tokens, graphs, args.all_distributions,
                                                    deadline, 10, skipped) for shape in ("mixtral", "fine-grained")]
        for task in tasks:
            try:
                task()
            except Exception as error:  # noqa: BLE001 - one failing peer must not lose the others' results
                print(f"peers_gpu: a section failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                skipped.append(f"a section failed: {type(error).__name__}: {error}")
                torch.cuda.empty_cache()

    results += jetmoe_rows
    apply_floors(results, floors)
    meta["seconds"] = time.monotonic() - start
    json.dump(dict(meta=meta, results=results, jetmoe_note=jetmoe_note, skipped=skipped),
              open(os.path.join(args.out, "gpu_peers.json"), "w"), indent=1, default=str)
    write_markdown(os.path.join(args.out, "gpu_peers.md"), meta, results, jetmoe_note, skipped)
    if args.img:
        os.makedirs(args.img, exist_ok=True)
    for path in write_plots(args.img or args.out, results, meta):
        print(f"peers_gpu: wrote {path}")
    print(f"peers_gpu: results in {args.out} after {meta['seconds']:.0f} s")


if __name__ == "__main__":
    main()

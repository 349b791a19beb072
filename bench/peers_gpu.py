#!/usr/bin/env python3
"""Peer comparison on one GPU: MoE / MoA blocks and whole-model generation.

Runs on the GPU machine, whose Python has torch and transformers and nothing else:

  python3 bench/peers_gpu.py                      # everything, results in bench/results/gpu/
  python3 bench/peers_gpu.py --tokens 1,256 --skip-model
  python3 bench/peers_gpu.py --jetmoe-bench build/cuda/bench/bench_cuda

Implementations, on the shapes of the CPU suite (bench/bench_moe.cpp) and the same three
routing distributions (uniform, Zipf s=1, one-expert), bf16 weights and activations:

  transformers   transformers' own JetMoeMoE / JetMoeMoA modules, eager (a Python loop over
                 experts, a host sync for the expert sizes)
  grouped_mm     a careful PyTorch MoE: top-k, stable sort by expert, per-expert counts kept on
                 the GPU, torch._grouped_mm for the expert GEMMs, index_add to combine; no host
                 sync, so it can also be captured as a CUDA graph (grouped_mm+graph)
  dense          the dense layer with the same FLOPs per token (the CPU suite's peer)
  jetmoe         this library's bench_cuda binary, run as-is when it exists

plus the whole JetMoE-8B-shape model (random weights) in transformers eager: prefill and
decode tokens/s at batch 1 and 8.

Method: CUDA events around each call; the L2 cache is flushed before every timed call by
writing a 256 MiB buffer (outside the events); warm-up calls first; repetitions until about
half a second of GPU time (at least 5, at most 50), reported as median, min and max. Routing
distributions are imposed by adding a large bias to the router logits of pre-drawn experts
(a forward hook on the transformers router's linear layer; the same bias in grouped_mm).
Floors are measured in the same run: a device-to-device copy (bytes read + written) and a
bf16 8192³ GEMM; floor = max(bytes / bandwidth, FLOPs / peak).

Outputs in --out: gpu_peers.json, gpu_peers.md, gpu_latency.png, gpu_floor_fraction.png
(and gpu_jetmoe.json from bench_cuda when it ran).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

MLP_SHAPES = {
    "jetmoe-8b-mlp": dict(E=8, k=2, H=2048, I=5632),
    "mixtral": dict(E=8, k=2, H=4096, I=14336),
    "fine-grained": dict(E=128, k=8, H=2048, I=768),
}
MOA_SHAPES = {"jetmoe-8b-moa": dict(E=8, k=2, H=2048, kv_heads=16, kv_channels=128)}
DISTRIBUTIONS = ["uniform", "zipf", "one-expert"]
STEERING_BIAS = 64.0  # far above the spread of the logits: the drawn experts always win
ELEMENT_BYTES = 2     # bf16
JETMOE_8B = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=24, num_local_experts=8,
                 num_experts_per_tok=2, num_key_value_heads=16, kv_channels=128, intermediate_size=5632,
                 max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True)


# ---- timing -------------------------------------------------------------------------------------

class GpuTimer:
    def __init__(self, flush_bytes=256 << 20, target_seconds=0.5, min_reps=5, max_reps=50):
        self.flush_buffer = torch.empty(flush_bytes // 4, dtype=torch.float32, device="cuda")
        self.target_seconds, self.min_reps, self.max_reps = target_seconds, min_reps, max_reps

    def _once(self, fn):
        self.flush_buffer.zero_()  # evicts the L2 (50 MB on H100) before the timed call
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3

    def time(self, fn, warmup=3):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        first = self._once(fn)
        reps = max(self.min_reps, min(self.max_reps, int(self.target_seconds / max(first, 1e-6))))
        times = [first] + [self._once(fn) for _ in range(reps - 1)]
        return {"median": statistics.median(times), "min": min(times), "max": max(times), "reps": len(times)}


def measure_floors():
    """Copy bandwidth (bytes read + written) and bf16 GEMM peak, best of 10 each."""
    n = 1 << 28  # 1 GiB of floats per buffer: far beyond any L2
    a = torch.empty(n, dtype=torch.float32, device="cuda").fill_(1.0)
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
    return {"copy_bytes_per_s": bandwidth, "gemm_flops_per_s": 2 * m ** 3 / best}


def floor_seconds(floors, bytes_, flops):
    return max(bytes_ / floors["copy_bytes_per_s"], flops / floors["gemm_flops_per_s"])


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


# ---- the grouped_mm MoE -------------------------------------------------------------------------

grouped_mm = getattr(F, "grouped_mm", None) or torch._grouped_mm


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


def transformers_block(class_name, config):
    import transformers.models.jetmoe.modeling_jetmoe as modeling
    block = getattr(modeling, class_name)(config)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.01)
            else:
                p.normal_(std=0.02)
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


# ---- work per call ------------------------------------------------------------------------------

def mlp_work(s, tokens, experts_used, dense=False):
    H, I, E, k = s["H"], s["I"], s["E"], s["k"]
    if dense:
        return ELEMENT_BYTES * (3 * k * I * H + 2 * tokens * H), 2 * tokens * 3 * k * I * H
    return (ELEMENT_BYTES * (experts_used * 3 * H * I + E * H + 2 * tokens * H),
            2 * tokens * k * 3 * H * I + 2 * tokens * H * E)


def moa_work(s, tokens, experts_used, half, dense=False):
    H, Dq, E, k = s["H"], s["kv_heads"] * s["kv_channels"], s["E"], s["k"]
    activations = ELEMENT_BYTES * tokens * (H + k * Dq)
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


@torch.no_grad()
def bench_mlp(results, floors, timer, tokens_list, graphs):
    generator = torch.Generator().manual_seed(0)
    for shape, s in MLP_SHAPES.items():
        config = jetmoe_config(hidden_size=s["H"], intermediate_size=s["I"], num_local_experts=s["E"],
                               num_experts_per_tok=s["k"], num_key_value_heads=16, kv_channels=s["H"] // 16,
                               num_hidden_layers=1)
        block = transformers_block("JetMoeMoE", config)
        w = expert_weights(block)  # grouped_mm runs on the very same tensors
        dense_in = torch.randn(2 * s["k"] * s["I"], s["H"], dtype=torch.bfloat16, device="cuda") * 0.02
        dense_out = torch.randn(s["H"], s["k"] * s["I"], dtype=torch.bfloat16, device="cuda") * 0.02
        router = router_linear(block, s["E"])
        for tokens in tokens_list:
            x = torch.randn(tokens, s["H"], dtype=torch.bfloat16, device="cuda")

            def dense():
                h = F.linear(x, dense_in)
                gate_half, up_half = h.chunk(2, dim=-1)
                return F.linear(F.silu(gate_half) * up_half, dense_out)

            record(results, floors, "dense", "mlp", shape, None, tokens, timer.time(dense),
                   mlp_work(s, tokens, s["E"], dense=True))
            for distribution in DISTRIBUTIONS:
                chosen = draw_experts(distribution, tokens, s["E"], s["k"], generator)
                used = int(chosen.unique().numel())
                bias = steering(chosen, s["E"])
                hook = router.register_forward_hook(lambda _m, _i, out, b=bias: out + b.to(out.dtype))
                try:
                    x3 = x.view(1, tokens, s["H"])
                    record(results, floors, "transformers", "mlp", shape, distribution, tokens,
                           timer.time(lambda: first_output(block(x3))), mlp_work(s, tokens, used))
                finally:
                    hook.remove()
                run = lambda: grouped_moe_mlp(x, w, s["k"], bias)  # noqa: E731
                record(results, floors, "grouped_mm", "mlp", shape, distribution, tokens, timer.time(run),
                       mlp_work(s, tokens, used))
                if graphs:
                    replay = as_cuda_graph(run)
                    if replay is not None:
                        record(results, floors, "grouped_mm+graph", "mlp", shape, distribution, tokens,
                               timer.time(replay), mlp_work(s, tokens, used))
        del block, w, dense_in, dense_out
        torch.cuda.empty_cache()


@torch.no_grad()
def bench_moa(results, floors, timer, tokens_list, graphs):
    generator = torch.Generator().manual_seed(1)
    for shape, s in MOA_SHAPES.items():
        Dq = s["kv_heads"] * s["kv_channels"]
        config = jetmoe_config(hidden_size=s["H"], num_local_experts=s["E"], num_experts_per_tok=s["k"],
                               num_key_value_heads=s["kv_heads"], kv_channels=s["kv_channels"], num_hidden_layers=1)
        block = transformers_block("JetMoeMoA", config)
        w = expert_weights(block)
        router = router_linear(block, s["E"])
        dense_map = torch.randn(s["k"] * Dq, s["H"], dtype=torch.bfloat16, device="cuda") * 0.02
        dense_reduce = torch.randn(s["H"], s["k"] * Dq, dtype=torch.bfloat16, device="cuda") * 0.02
        for tokens in tokens_list:
            x = torch.randn(tokens, s["H"], dtype=torch.bfloat16, device="cuda")
            o = torch.randn(tokens, s["k"], Dq, dtype=torch.bfloat16, device="cuda")
            record(results, floors, "dense", "moa_map", shape, None, tokens, timer.time(lambda: F.linear(x, dense_map)),
                   moa_work(s, tokens, s["E"], "map", dense=True))
            record(results, floors, "dense", "moa_reduce", shape, None, tokens,
                   timer.time(lambda: F.linear(o.view(tokens, -1), dense_reduce)),
                   moa_work(s, tokens, s["E"], "reduce", dense=True))
            for distribution in DISTRIBUTIONS:
                chosen = draw_experts(distribution, tokens, s["E"], s["k"], generator)
                used = int(chosen.unique().numel())
                bias = steering(chosen, s["E"])
                hook = router.register_forward_hook(lambda _m, _i, out, b=bias: out + b.to(out.dtype))
                try:
                    x3, o4 = x.view(1, tokens, s["H"]), o.view(1, tokens, s["k"], Dq)
                    topo = block.map(x3)[-1]  # (output, [router logits,] routing topology)
                    record(results, floors, "transformers", "moa_map", shape, distribution, tokens,
                           timer.time(lambda: block.map(x3)), moa_work(s, tokens, used, "map"))
                    record(results, floors, "transformers", "moa_reduce", shape, distribution, tokens,
                           timer.time(lambda: block.reduce(o4, topo)), moa_work(s, tokens, used, "reduce"))
                finally:
                    hook.remove()
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
        + ELEMENT_BYTES * L * b * cached * 2 * Dq,
        decode_flops=lambda b, cached: b * (2 * active + attention(cached + 1) + 2 * V * H),
    )


def build_model(config_fields):
    from transformers import AutoModelForCausalLM
    config = jetmoe_config(**config_fields)
    torch.set_default_dtype(torch.bfloat16)  # parameters are created in bf16 directly (17 GB, not 34)
    try:
        with torch.device("cuda"):
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
    finally:
        torch.set_default_dtype(torch.float32)
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


@torch.no_grad()
def bench_model(results, floors, batches, prompt, decode_steps, extra_prefill):
    model = build_model(JETMOE_8B)
    backends = describe_backends(model)
    print(f"peers_gpu: transformers model backends: {backends}", flush=True)
    cost = model_cost(JETMOE_8B)
    generator = torch.Generator().manual_seed(2)
    cases = [(b, prompt) for b in batches] + list(extra_prefill)
    for batch, length in cases:
        ids = torch.randint(3, JETMOE_8B["vocab_size"], (batch, length), generator=generator).cuda()
        forward(model, ids)  # warm-up
        torch.cuda.synchronize()
        prefill_times, decode_times = [], []
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = forward(model, ids)
            end.record()
            end.synchronize()
            prefill_times.append(start.elapsed_time(end) * 1e-3)
            if (batch, length) not in [(b, prompt) for b in batches] or decode_steps == 0:
                continue
            past, next_ids = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            start.record()
            for _ in range(decode_steps):
                out = forward(model, next_ids, past)
                past, next_ids = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            end.record()
            end.synchronize()
            decode_times.append(start.elapsed_time(end) * 1e-3)
        prefill = statistics.median(prefill_times)
        prefill_floor = floor_seconds(floors, ELEMENT_BYTES * cost["total_params"], cost["prefill_flops"](batch, length))
        entry = dict(impl="transformers", block="model", shape="jetmoe-8b-random", distribution=None, T=batch * length,
                     backends=str(backends),
                     batch=batch, prompt=length, prefill_s=prefill, prefill_tok_s=batch * length / prefill,
                     prefill_floor_frac=prefill_floor / prefill, prefill_reps=len(prefill_times))
        if decode_times:
            step = statistics.median(decode_times) / decode_steps
            mean_cached = length + decode_steps / 2
            decode_floor = floor_seconds(floors, cost["decode_bytes"](batch, mean_cached), cost["decode_flops"](batch, mean_cached))
            entry.update(decode_steps=decode_steps, decode_step_s=step, decode_tok_s=batch / step,
                         decode_floor_frac=decode_floor / step)
        results.append(entry)
        print(f"model B={batch} P={length}: prefill {entry['prefill_tok_s']:.0f} tok/s"
              + (f", decode {entry['decode_tok_s']:.1f} tok/s" if decode_times else ""), flush=True)
    del model
    torch.cuda.empty_cache()


# ---- this library ---------------------------------------------------------------------------------

def run_jetmoe_bench(path, out_dir, timeout, existing_json=None):
    """Runs bench_cuda with JSON output (or reads existing_json); returns (records, note)."""
    if existing_json:
        if not os.path.isfile(existing_json):
            return [], f"{existing_json} not found (run bench_cuda first, or drop --jetmoe-json)"
        return read_jetmoe_json(existing_json), f"read {existing_json}"
    candidates = [path] if path else ["build/cuda/bench/bench_cuda", "build-cuda/bench/bench_cuda", "build/bench/bench_cuda"]
    binary = next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)
    if binary is None:
        return [], f"bench_cuda not found (looked at {', '.join(c for c in candidates if c)}); build it with the cuda preset"
    json_path = os.path.join(out_dir, "gpu_jetmoe.json")
    try:
        subprocess.run([binary, f"--benchmark_out={json_path}", "--benchmark_out_format=json"], check=True, timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        return [], f"{binary} failed: {error}"
    return read_jetmoe_json(json_path), f"ran {binary}"


def read_jetmoe_json(json_path):
    """bench_cuda's Google Benchmark JSON → one record per benchmark (medians of repetitions)."""
    records = []
    for b in json.load(open(json_path)).get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        records.append(dict(name=b["run_name"], seconds=b["real_time"] * scale,
                            **{k: v for k, v in b.items() if k in ("floor_frac", "dense_ratio", "tokens")}))
    return records


# ---- report -------------------------------------------------------------------------------------

def write_markdown(path, meta, results, jetmoe_records, jetmoe_note):
    lines = [f"# GPU peer comparison ({meta['device']})", "",
             f"torch {meta['torch']}, transformers {meta['transformers']}, CUDA {meta['cuda']}; "
             f"floors: copy {meta['floors']['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
             f"bf16 GEMM {meta['floors']['gemm_flops_per_s'] / 1e12:.0f} TFLOP/s; {meta['date_utc']}", "",
             "Median time per call (% of the hardware floor reached).", ""]
    impls = ["dense", "transformers", "grouped_mm", "grouped_mm+graph"]
    blocks = sorted({(r["block"], r["shape"]) for r in results if r["block"] != "model"}, key=lambda x: (x[1], x[0]))
    for block, shape in blocks:
        lines += [f"## {block} — {shape}", "", "| T | distribution | " + " | ".join(impls) + " |",
                  "|---:|---|" + "---:|" * len(impls)]
        rows = sorted({(r["T"], r["distribution"]) for r in results if r["block"] == block and r["shape"] == shape
                       and r["distribution"]}, key=lambda x: (x[0], DISTRIBUTIONS.index(x[1])))
        for tokens, distribution in rows:
            cells = []
            for impl in impls:
                match = [r for r in results if r["block"] == block and r["shape"] == shape and r["T"] == tokens
                         and r["impl"] == impl and (r["distribution"] == distribution or impl == "dense")]
                cells.append(f"{match[0]['median'] * 1e3:.3f} ms ({match[0]['floor_frac'] * 100:.0f}%)" if match else "–")
            lines.append(f"| {tokens} | {distribution} | " + " | ".join(cells) + " |")
        lines.append("")
    model_rows = [r for r in results if r["block"] == "model"]
    if model_rows:
        lines += ["## JetMoE-8B shape, random weights, transformers eager", "",
                  "| batch | prompt | prefill tok/s (% floor) | decode tok/s (% floor) |", "|---:|---:|---:|---:|"]
        for r in model_rows:
            decode = f"{r['decode_tok_s']:.1f} ({r['decode_floor_frac'] * 100:.1f}%)" if "decode_tok_s" in r else "–"
            lines.append(f"| {r['batch']} | {r['prompt']} | {r['prefill_tok_s']:.0f} ({r['prefill_floor_frac'] * 100:.0f}%) | {decode} |")
        lines.append("")
    lines += ["## This library (bench_cuda)", "", jetmoe_note, ""]
    if jetmoe_records:
        lines += ["| benchmark | median time | floor_frac | dense_ratio |", "|---|---:|---:|---:|"]
        for r in jetmoe_records:
            lines.append(f"| {r['name']} | {r['seconds'] * 1e3:.3f} ms | {r.get('floor_frac', '–')} | {r.get('dense_ratio', '–')} |")
    open(path, "w").write("\n".join(lines) + "\n")


def write_plots(out_dir, results, meta):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("peers_gpu: matplotlib is not installed; no plots (the JSON and markdown have everything)", file=sys.stderr)
        return []
    panels = [("mlp", "jetmoe-8b-mlp"), ("mlp", "mixtral"), ("mlp", "fine-grained"), ("moa_map", "jetmoe-8b-moa")]
    styles = {"dense": ("k", "s"), "transformers": ("tab:red", "o"), "grouped_mm": ("tab:blue", "^"),
              "grouped_mm+graph": ("tab:cyan", "v")}
    written = []
    for metric, file_name, ylabel in (("median", "gpu_latency.png", "time per call (ms)"),
                                      ("floor_frac", "gpu_floor_fraction.png", "fraction of hardware floor")):
        fig, axes = plt.subplots(2, 2, figsize=(12, 9))
        for ax, (block, shape) in zip(axes.flat, panels):
            for impl, (color, marker) in styles.items():
                rows = sorted((r for r in results if r["block"] == block and r["shape"] == shape and r["impl"] == impl
                               and r["distribution"] in ("uniform", None)), key=lambda r: r["T"])
                if rows:
                    ys = [r[metric] * (1e3 if metric == "median" else 1.0) for r in rows]
                    ax.plot([r["T"] for r in rows], ys, marker=marker, color=color, label=impl)
            ax.set_xscale("log", base=2)
            if metric == "median":
                ax.set_yscale("log")
            ax.set_xlabel("tokens T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{block} — {shape} (uniform routing)", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{meta['device']}, bf16", fontsize=11)
        fig.tight_layout()
        path = os.path.join(out_dir, file_name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/gpu")
    parser.add_argument("--img", help="folder for the PNG plots (default: --out), e.g. docs/img")
    parser.add_argument("--tokens", default="1,16,256,2048,16384", help="comma-separated T values")
    parser.add_argument("--skip-blocks", action="store_true", help="skip the MoE / MoA block comparison")
    parser.add_argument("--skip-model", action="store_true", help="skip the whole-model prefill / decode run")
    parser.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph variant of grouped_mm")
    parser.add_argument("--prompt", type=int, default=512, help="prompt length for the batch 1 and 8 runs")
    parser.add_argument("--decode-steps", type=int, default=32)
    parser.add_argument("--jetmoe-bench", help="path of this library's bench_cuda (default: look in build dirs)")
    parser.add_argument("--jetmoe-timeout", type=int, default=480)
    parser.add_argument("--jetmoe-json", help="reuse this bench_cuda JSON (e.g. from scripts/gpu-run.sh's bench "
                                              "stage) instead of running bench_cuda again")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("peers_gpu: no CUDA device visible")

    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    import transformers
    floors = measure_floors()
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__,
                cuda=torch.version.cuda, python=platform.python_version(), floors=floors,
                date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                method="CUDA events per call, L2 flushed (256 MiB write) before each, 3 warm-up calls, "
                       "5–50 repetitions (~0.5 s), median/min/max")
    print(f"peers_gpu: {meta['device']}, copy {floors['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
          f"bf16 GEMM {floors['gemm_flops_per_s'] / 1e12:.0f} TFLOP/s", flush=True)

    tokens = [int(t) for t in args.tokens.split(",") if t]
    timer = GpuTimer()
    results = []
    if not args.skip_blocks:
        bench_mlp(results, floors, timer, tokens, graphs=not args.no_graphs)
        bench_moa(results, floors, timer, tokens, graphs=not args.no_graphs)
    if not args.skip_model:
        bench_model(results, floors, batches=(1, 8), prompt=args.prompt, decode_steps=args.decode_steps,
                    extra_prefill=[(1, 2048)])
    jetmoe_records, jetmoe_note = run_jetmoe_bench(args.jetmoe_bench, args.out, args.jetmoe_timeout, args.jetmoe_json)
    print(f"peers_gpu: this library: {jetmoe_note}", flush=True)

    json.dump(dict(meta=meta, results=results, jetmoe=jetmoe_records, jetmoe_note=jetmoe_note),
              open(os.path.join(args.out, "gpu_peers.json"), "w"), indent=1)
    write_markdown(os.path.join(args.out, "gpu_peers.md"), meta, results, jetmoe_records, jetmoe_note)
    if args.img:
        os.makedirs(args.img, exist_ok=True)
    for path in write_plots(args.img or args.out, results, meta):
        print(f"peers_gpu: wrote {path}")
    print(f"peers_gpu: results in {args.out}")


if __name__ == "__main__":
    main()

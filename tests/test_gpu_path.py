"""The CUDA branches that a CPU can check through fakes at their boundary (`torch.cuda`'s calls,
NVML): what `--max-memory` caps, and that probing the environment makes no CUDA context."""

from __future__ import annotations

import resource
import types

import torch

from lcbench.run import environment
from lcbench.run.executor import cap_memory


def test_max_memory_caps_the_gpu_allocator_not_the_address_space(monkeypatch):
    capped: dict[str, object] = {}
    monkeypatch.setattr(resource, "setrlimit", lambda *args: capped.setdefault("rlimit", args))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(total_memory=80 << 30))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda share, index: capped.update(share=(share, index)))
    said = cap_memory("cuda:1", 20 << 30)
    assert capped == {"share": (0.25, 1)} and "GPU memory of cuda:1 capped at 20.00 GiB of 80.00 GiB" in said
    capped.clear()
    said = cap_memory("cpu", 8 << 30)
    assert capped == {"rlimit": (resource.RLIMIT_AS, (8 << 30, 8 << 30))} and "address space" in said


def test_the_environment_names_the_gpu_without_making_a_cuda_context(monkeypatch):
    """A parent whose cells run in children must not hold memory on GPU 0: the name comes from
    NVML (the device CUDA_VISIBLE_DEVICES shows first), never from a CUDA call that initialises."""

    def initialises(*args):
        raise AssertionError("a CUDA context was made")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", initialises)
    names = {2: b"NVIDIA H200"}
    nvml = types.SimpleNamespace(
        nvmlSystemGetDriverVersion=lambda: "575.0",
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: names[handle],
    )
    monkeypatch.setattr("lcbench.run.measure.load_nvml", lambda: nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    info = environment._gpu()
    assert info["gpu"] == "NVIDIA H200" and info["gpu_count"] == 1 and info["nvml_available"] and info["driver"] == "575.0"


def test_a_ray_actor_on_a_gpu_node_gets_the_cpus_and_threads_its_share(monkeypatch):
    ray = __import__("pytest").importorskip("ray")
    from lcbench.run.chains import RunOptions
    from lcbench.run.ray_engine import actor_count

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    count, asks = actor_count(RunOptions(executor="ray"))
    assert count == 2 and asks["num_gpus"] == 1 and asks["num_cpus"] == 8
    assert asks["runtime_env"] == {"env_vars": {"OMP_NUM_THREADS": "8"}}


def test_a_suite_naming_a_gpu_of_the_node_runs_on_the_one_gpu_an_actor_sees(suite_file, monkeypatch):
    from lcbench.config.suite import load_suite
    from lcbench.run.ray_engine import on_the_gpu_ray_gave

    suite, _ = load_suite(suite_file())
    gpu3 = suite.model_copy(update={"device": "cuda:3"})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert on_the_gpu_ray_gave(gpu3).device == "cuda" and on_the_gpu_ray_gave(suite).device == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert on_the_gpu_ray_gave(gpu3).device == "cuda:3"


def test_h2o_scores_in_a_buffer_sized_from_the_gpus_free_memory(monkeypatch):
    from lcbench.kv.methods import GPU_SCORE_ELEMENTS, SCORE_ELEMENTS, h2o_rows, score_elements

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (64 << 30, 141 << 30))
    on_gpu = score_elements(torch.device("cuda", 0))
    assert score_elements(torch.device("cpu")) == SCORE_ELEMENTS and on_gpu == GPU_SCORE_ELEMENTS
    assert h2o_rows(32, 32768, SCORE_ELEMENTS) == 1 and h2o_rows(32, 32768, on_gpu) == 256
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 << 20, 141 << 30))  # a full GPU: never below the CPU's
    assert score_elements(torch.device("cuda", 0)) == SCORE_ELEMENTS


def test_flex_takes_its_kernel_blocks_from_a_tile_below_128_on_cuda():
    from lcbench.sparse.flex import kernel_options

    on = types.SimpleNamespace(device=torch.device("cuda", 0))
    assert kernel_options(64, on) == {"BLOCK_M": 64, "BLOCK_N": 64} and kernel_options(128, on) == {}
    assert kernel_options(64, torch.zeros(1)) == {}  # the CPU kernel has no such blocks


def test_full_runs_the_attention_it_names_and_records_it(llama):
    from lcbench.prompt import Prompter
    from lcbench.strategies.full import Full
    from lcbench.tasks.needle import Needle

    example = Needle().examples(Prompter(llama.tokenizer), 96, 1, seed=3)[0]
    sdpa, eager = Full().run(llama, example), Full(attention="eager").run(llama, example)
    assert sdpa.usage.attention == "sdpa" and eager.usage.attention == "eager" and eager.text == sdpa.text
    reason = Full(attention="flash_attention_2").unavailable_reason(llama)
    assert reason is not None and ("pip install flash-attn" in reason or "CUDA GPU" in reason)
    with __import__("pytest").raises(ValueError, match="attention must be one of sdpa, flash_attention_2, eager"):
        Full(attention="flash")


def test_a_device_map_on_a_cpu_is_refused_with_the_fix(tiny_dir):
    from lcbench.errors import UserError
    from lcbench.model import Model

    with __import__("pytest").raises(UserError, match="device_map: auto spreads a model over GPUs .* drop it on a CPU"):
        Model.load(tiny_dir, device="cpu", device_map="auto")

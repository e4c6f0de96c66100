"""All-reduce bus bandwidth through PyTorch's NCCL, one process per GPU, the same sizes and timing as
scripts/gpu/nccl-allreduce.ts (f32, 3 warm-up then 30 or 10 timed all-reduces, synchronised), for a
same-run comparison with flashserve's NcclProcessGroup. Run on the GPU machine:
    NCCL_NVLS_ENABLE=0 python3 packages/cuda/scripts/bench/nccl_torch_baseline.py [world_size]
"""
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank: int, world: int) -> None:
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    for mib in (1, 8, 64, 256, 1024):
        x = torch.ones((mib << 20) // 4, dtype=torch.float32, device="cuda")
        iters = 10 if mib >= 256 else 30
        for _ in range(3):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / iters * 1e3
        nbytes = x.numel() * 4
        bus = 2 * (world - 1) / world * nbytes / (ms * 1e-3) / 1e9
        if rank == 0:
            print(json.dumps({"torch_allReduce_mib": mib, "ms": round(ms, 3), "bus_gbs": round(bus)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    world = int(sys.argv[1]) if len(sys.argv) > 1 else torch.cuda.device_count()
    mp.spawn(run, args=(world,), nprocs=world)

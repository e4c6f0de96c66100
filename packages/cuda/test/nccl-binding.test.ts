// NCCL without NCCL: the loader's search order, the unavailable-with-reason path, and the binding's
// ABI against a fake libnccl.so.2 (csrc/tests/nccl_fake.cc) built here with g++. The real collectives
// run only on a machine of several GPUs (issue 11).

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlashserveError } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { cudaAvailability, NcclProcessGroup, ncclAvailability, ncclLibraryCandidates } from '../src/index.js';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('NCCL loading', () => {
  it('looks at FLASHSERVE_NCCL_LIBRARY first, then the loader path, then Python wheels', () => {
    const venv = mkdtempSync(join(tmpdir(), 'venv-'));
    const lib = join(venv, 'lib', 'python3.12', 'site-packages', 'nvidia', 'nccl', 'lib');
    mkdirSync(lib, { recursive: true });
    writeFileSync(join(lib, 'libnccl.so.2'), '');
    const c = ncclLibraryCandidates({ FLASHSERVE_NCCL_LIBRARY: '/opt/x/libnccl.so.2', VIRTUAL_ENV: venv });
    expect(c[0]).toBe('/opt/x/libnccl.so.2');
    expect(c[1]).toBe('libnccl.so.2');
    expect(c[2]).toBe(join(lib, 'libnccl.so.2'));
  });

  it.runIf(!cudaAvailability().available)('is unavailable with a reason where CUDA is', () => {
    const a = ncclAvailability();
    expect(a.available).toBe(false);
    if (!a.available) expect(a.reason).toMatch(/CUDA is unavailable/);
    let err: unknown;
    try {
      new NcclProcessGroup({ device: {} as never, rank: 0, worldSize: 2, uniqueId: new Uint8Array(128) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FlashserveError);
    expect((err as FlashserveError).code).toBe('FS_ERR_DISTRIBUTED_UNAVAILABLE');
  });
});

interface SmokeAddon {
  ncclLoad(paths: string[]): { ok: boolean; path?: string; version?: number; reason?: string };
  ncclGetUniqueId(): Uint8Array;
  ncclCommInitRank(id: Uint8Array, n: number, rank: number): bigint;
  ncclAllReduce(...a: unknown[]): void;
  ncclAllGather(...a: unknown[]): void;
  ncclBroadcast(...a: unknown[]): void;
}

/** Builds the fake NCCL and a minimal addon around csrc/binding/nccl.cc; undefined if g++ is missing. */
function buildSmoke(): { addon: SmokeAddon; fake: string } | string {
  if (spawnSync('g++', ['--version']).status !== 0) return 'g++ not found';
  const req = createRequire(join(pkg, 'package.json'));
  const napi = dirname(req.resolve('node-api-headers/include/node_api.h'));
  const addonApi = dirname(req.resolve('node-addon-api/napi.h'));
  const cudaInc = ['/usr/local/cuda/include', '/usr/local/cuda-13.0/include'].find(
    (p) => spawnSync('test', ['-f', join(p, 'cuda_runtime_api.h')]).status === 0,
  );
  if (cudaInc === undefined) return 'CUDA headers not found';
  const dir = mkdtempSync(join(tmpdir(), 'nccl-smoke-'));
  const fake = join(dir, 'libnccl.so.2');
  writeFileSync(
    join(dir, 'main.cc'),
    '#include <napi.h>\n#include "binding/nccl.h"\nNapi::Object init(Napi::Env env, Napi::Object e) { flashserve::register_nccl(env, e); return e; }\nNODE_API_MODULE(smoke, init)\n',
  );
  const cc = (args: string[]) =>
    spawnSync('g++', ['-std=c++17', '-O0', '-shared', '-fPIC', ...args], { encoding: 'utf8' });
  let r = cc(['-o', fake, join(pkg, 'csrc/tests/nccl_fake.cc')]);
  if (r.status !== 0) throw new Error(r.stderr);
  r = cc([
    `-I${napi}`,
    `-I${addonApi}`,
    `-I${cudaInc}`,
    `-I${join(pkg, 'csrc')}`,
    '-DNAPI_VERSION=8',
    '-DNAPI_CPP_EXCEPTIONS',
    '-DNODE_ADDON_API_DISABLE_DEPRECATED',
    '-o',
    join(dir, 'smoke.node'),
    join(dir, 'main.cc'),
    join(pkg, 'csrc/binding/nccl.cc'),
  ]);
  if (r.status !== 0) throw new Error(r.stderr);
  return { addon: createRequire(import.meta.url)(join(dir, 'smoke.node')) as SmokeAddon, fake };
}

describe('the NCCL binding against a fake libnccl.so.2', () => {
  const built = buildSmoke();
  const skip = typeof built === 'string' ? built : undefined;

  it.skipIf(skip !== undefined)(
    `passes every argument where NCCL's C ABI expects it${skip ? ` (skipped: ${skip})` : ''}`,
    () => {
      const { addon, fake } = built as { addon: SmokeAddon; fake: string };
      const miss = addon.ncclLoad(['/nonexistent/libnccl.so.2']);
      expect(miss.ok).toBe(false);
      expect(miss.reason).toMatch(/nonexistent/);
      expect(() => addon.ncclGetUniqueId()).toThrow(/not loaded/);
      expect(addon.ncclLoad(['/nonexistent/libnccl.so.2', fake])).toEqual({
        ok: true,
        path: fake,
        version: 22807,
      });
      const id = addon.ncclGetUniqueId();
      expect(id.length).toBe(128);
      const said = (f: () => void) => {
        try {
          f();
        } catch (e) {
          expect((e as { code?: string }).code).toBe('NCCL_ERROR');
          return (e as Error).message;
        }
        return '';
      };
      process.env.NCCL_NVLS_ENABLE = '1';
      expect(said(() => addon.ncclCommInitRank(id, 4, 3))).toMatch(/init n=4 rank=3 id_ok=1 nvls=0/);
      process.env.NCCL_NVLS_ENABLE = '0';
      expect(said(() => addon.ncclAllReduce(1n, 0x1000n, 0x2000n, 12345, 9, 0x77n))).toMatch(
        /s=0x1000 r=0x2000 count=12345 dt=9 op=0 .* stream=0x77/,
      );
      expect(said(() => addon.ncclAllGather(1n, 0x1000n, 0x2000n, 2 ** 40, 7, 0x77n))).toMatch(
        /count=1099511627776 dt=7 .* stream=0x77/,
      );
      expect(said(() => addon.ncclBroadcast(1n, 0x1000n, 0x2000n, 3, 2, 1, 0x77n))).toMatch(
        /count=3 dt=2 root=1 .* stream=0x77/,
      );
      expect(() => addon.ncclAllReduce(1n, 1n, 1n, -1, 7, 0n)).toThrow(/must not be negative/);
    },
  );
});

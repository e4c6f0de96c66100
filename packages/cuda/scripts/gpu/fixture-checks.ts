// The models package's transformers fixtures through DeepseekModel on a CUDA device: two prompts
// prefilled together, then greedy decoding one token per step through the paged cache. The issue's
// bar: first 8 greedy tokens equal the fp32 reference, last-position logits within 2e-2 relative L2.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AttentionBackend,
  type CommonAttentionMetadata,
  type Model,
  SafetensorsFile,
  type Tensor,
} from '@flashserve/core';
import { loadDeepseekModel } from '../../../models/src/index.js';
import { type CudaDevice, loadSafetensorsToDevice } from '../../src/index.js';
import { type CheckRow, relL2 } from '../../test/gpu/op-checks.js';

interface Expected {
  readonly prompt: number[];
  readonly logits: number[];
  readonly greedy: number[];
  readonly prompt2: number[];
  readonly logits2: number[];
  readonly greedy2: number[];
}

export const GREEDY_TOKENS = 8;
export const LOGITS_TOL = 2e-2;

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * Prefill every prompt (in one step, or one request per step with `prefillAlone`, for backends whose
 * kernels take a single query length per step), then `steps` greedy decode steps for all prompts
 * together.
 */
export function greedyBatch(
  model: Model,
  prompts: readonly (readonly number[])[],
  steps: number,
  blockSize = 64,
  prefillAlone = false,
): { promptLogits: Float32Array[]; generated: number[][] } {
  const numBlocks = 32;
  model.allocateKvCache(numBlocks, blockSize);
  const maxLen = Math.max(...prompts.map((p) => p.length)) + steps + 1;
  const perReq = Math.ceil(maxLen / blockSize);
  // Block ids scrambled (and block 0 unused) so block tables are not the identity.
  const blocks = prompts.map((_, r) =>
    Array.from({ length: perReq }, (_, i) => 1 + (((r * perReq + i) * 7) % (numBlocks - 1))),
  );
  const tokens = prompts.map((p) => [...p]);
  const computed = prompts.map(() => 0);
  const promptLogits: Float32Array[] = [];
  const generated: number[][] = prompts.map(() => []);
  // Step plan: the prefill step(s) (lists of requests), then decode steps over every request.
  const all = prompts.map((_, r) => r);
  const plan: number[][] = prefillAlone ? all.map((r) => [r]) : [all];
  for (let s = 0; s < steps; s++) plan.push(all);
  for (let step = 0; step < plan.length; step++) {
    const reqs = plan[step]!;
    const ids: number[] = [];
    const positions: number[] = [];
    const slots: number[] = [];
    const qsl = [0];
    const seqLens: number[] = [];
    const logitsIndices: number[] = [];
    for (const r of reqs) {
      const toks = tokens[r]!;
      for (let p = computed[r]!; p < toks.length; p++) {
        ids.push(toks[p]!);
        positions.push(p);
        slots.push(blocks[r]![Math.floor(p / blockSize)]! * blockSize + (p % blockSize));
      }
      seqLens.push(toks.length);
      qsl.push(ids.length);
      logitsIndices.push(ids.length - 1);
    }
    const table = new Int32Array(reqs.length * perReq);
    for (const [i, r] of reqs.entries()) table.set(blocks[r]!, i * perReq);
    const queryLens = reqs.map((_, i) => qsl[i + 1]! - qsl[i]!);
    const attention: CommonAttentionMetadata = {
      numReqs: reqs.length,
      numTokens: ids.length,
      queryStartLoc: Int32Array.from(qsl),
      seqLens: Int32Array.from(seqLens),
      numComputedTokens: Int32Array.from(reqs.map((r) => computed[r]!)),
      positions: Int32Array.from(positions),
      slotMapping: Int32Array.from(slots),
      blockTables: table,
      maxBlocksPerReq: perReq,
      blockSize,
      maxQueryLen: Math.max(...queryLens),
      maxSeqLen: Math.max(...seqLens),
    };
    const logits = model.device.toHost(
      model.forward({
        tokenIds: Int32Array.from(ids),
        attention,
        logitsIndices: Int32Array.from(logitsIndices),
      }),
    ) as Float32Array;
    const V = logits.length / reqs.length;
    for (const [i, r] of reqs.entries()) {
      const row = logits.slice(i * V, (i + 1) * V);
      if (promptLogits[r] === undefined) promptLogits[r] = row;
      computed[r] = tokens[r]!.length;
      // A prompt's prefill step gives its first token; every decode step one more.
      if (generated[r]!.length < steps) {
        const t = argmax(row);
        generated[r]!.push(t);
        tokens[r]!.push(t);
      }
    }
  }
  return { promptLogits, generated };
}

/**
 * The device with router logits in fp32 (as transformers computes the gate): `linear` whose weight
 * is the MoE gate [E, H] goes through linearF32. An experiment for the interface question of whether
 * the gate projection needs an fp32 output; the model itself only calls `linear`.
 */
export function withF32Router(device: CudaDevice, numExperts: number, hidden: number): CudaDevice {
  return new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'linear') {
        return (x: Tensor, w: Tensor, bias?: Tensor) =>
          w.shape[0] === numExperts && w.shape[1] === hidden && bias === undefined
            ? target.linearF32(x, w)
            : target.linear(x, w, bias);
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

export function fixtureNames(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

/** One row per fixture and prompt: logits error and how many leading greedy tokens match. */
export function runFixtureChecks(
  device: CudaDevice,
  backend: AttentionBackend,
  fixturesDir: string,
  only?: (name: string) => boolean,
  f32Router = false,
  prefillAlone = false,
): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const name of fixtureNames(fixturesDir)) {
    if (only && !only(name)) continue;
    const dir = join(fixturesDir, name);
    const tag = `${name} [${backend.name}${f32Router ? ', f32 router' : ''}]`;
    try {
      const exp = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as {
        n_routed_experts?: number;
        hidden_size: number;
      };
      const dev =
        f32Router && cfg.n_routed_experts
          ? withF32Router(device, cfg.n_routed_experts, cfg.hidden_size)
          : device;
      const model = loadDeepseekModel(dir, { device: dev, backend });
      const steps = Math.min(GREEDY_TOKENS, exp.greedy.length, exp.greedy2.length);
      const res = greedyBatch(model, [exp.prompt, exp.prompt2], steps, 64, prefillAlone);
      const refs = [
        { logits: exp.logits, greedy: exp.greedy },
        { logits: exp.logits2, greedy: exp.greedy2 },
      ];
      refs.forEach((ref, i) => {
        const err = relL2(res.promptLogits[i]!, ref.logits);
        rows.push({
          name: `${tag} prompt ${i + 1} logits`,
          value: err,
          limit: LOGITS_TOL,
          ok: err <= LOGITS_TOL,
        });
        const got = res.generated[i]!;
        let same = 0;
        while (same < steps && got[same] === ref.greedy[same]) same++;
        rows.push({
          name: `${tag} prompt ${i + 1} greedy tokens equal`,
          value: same,
          limit: steps,
          ok: same >= steps,
          note:
            same < steps ? `got ${got.join(',')} want ${ref.greedy.slice(0, steps).join(',')}` : undefined,
        });
      });
    } catch (err) {
      const msg = (err as Error).message;
      // A backend that refuses the model's shapes (the GPU kernels need kv_lora_rank 512) is a skip.
      const refused = /cannot run this model/.test(msg);
      rows.push({
        name: refused ? `${tag} (skipped: backend refuses these shapes)` : tag,
        value: Number.NaN,
        limit: 0,
        ok: refused,
        note: refused ? undefined : ((err as Error).stack ?? msg),
      });
    }
  }
  return rows;
}

/** Every tensor of a fixture's checkpoint loaded straight to the device equals the same tensor read
 * on the host by core's SafetensorsFile and uploaded. */
export function runLoaderCheck(device: CudaDevice, fixturesDir: string): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const name of fixtureNames(fixturesDir)) {
    const file = join(fixturesDir, name, 'model.safetensors');
    if (!existsSync(file)) continue;
    try {
      let progress = 0;
      const loaded = loadSafetensorsToDevice(device, [file], { onProgress: (d, t) => (progress = d / t) });
      const ref = new SafetensorsFile(file);
      let mismatched = 0;
      for (const [tname, t] of loaded) {
        const h = ref.read(tname);
        const viaHost = device.toHost(device.upload(h.data, h.shape, h.dtype));
        const direct = device.toHost(t);
        if (viaHost.length !== direct.length || viaHost.some((v, i) => !Object.is(v, direct[i])))
          mismatched++;
      }
      ref.close();
      rows.push({
        name: `uploadFromFile ${name}: ${loaded.size} tensors differing from host path`,
        value: mismatched,
        limit: 0,
        ok: mismatched === 0 && progress === 1,
      });
    } catch (err) {
      rows.push({
        name: `uploadFromFile ${name}`,
        value: Number.NaN,
        limit: 0,
        ok: false,
        note: (err as Error).stack,
      });
    }
  }
  return rows;
}

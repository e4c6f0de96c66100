// A worker rank for shm-group.test.ts: runs the script named in workerData against the group and
// posts what it saw back to the test.

import { parentPort, workerData } from 'node:worker_threads';
import { SharedMemoryGroup, type ShmGroupInit } from '../../src/distributed/shm-group.js';
import { FlashserveError } from '../../src/errors.js';
import { collectiveScript, type ScriptName } from './shm-group-script.js';

const { init, rank, script } = workerData as { init: ShmGroupInit; rank: number; script: ScriptName };
const group = new SharedMemoryGroup(init, rank);
try {
  parentPort?.postMessage({ ok: true, result: collectiveScript(script, group) });
} catch (e) {
  parentPort?.postMessage({
    ok: false,
    code: e instanceof FlashserveError ? e.code : undefined,
    message: e instanceof Error ? e.message : String(e),
  });
}

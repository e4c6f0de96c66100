#!/usr/bin/env node
// Builds the Node-API CUDA addon of the package in the current directory with CMake.
//
// NOTE: headers come from the node-api-headers and node-addon-api packages, so nothing is downloaded
// at build time. Three outcomes, each said in one line:
//   - no nvcc: the addon is skipped; the package still imports and reports itself unavailable;
//   - nvcc without cuBLAS (the CI machine): everything that does not need cuBLAS is compiled, so the
//     kernels are compiled on every CI run;
//   - nvcc with cuBLAS (the GPU machine): the full addon.
// A compile error fails the build: a broken kernel must never reach a user silently.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const pkgDir = process.cwd();
const pkgName = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).name;
const say = (msg) => console.log(`[${pkgName}] ${msg}`);

if (process.env.FLASHSERVE_SKIP_NATIVE === '1') {
  say('native addon skipped: FLASHSERVE_SKIP_NATIVE=1');
  process.exit(0);
}

function findNvcc() {
  const candidates = [process.env.CUDACXX, process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin/nvcc')];
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(join(dir, 'nvcc'));
  candidates.push('/usr/local/cuda/bin/nvcc');
  return candidates.find((c) => c && existsSync(c));
}

function findCmake() {
  const r = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

const nvcc = findNvcc();
if (!nvcc) {
  say(
    'native addon skipped: nvcc not found (set CUDACXX or put nvcc on PATH); the package reports itself unavailable',
  );
  process.exit(0);
}
if (!findCmake()) {
  say('native addon skipped: cmake not found on PATH; the package reports itself unavailable');
  process.exit(0);
}
const cudaRoot = dirname(dirname(nvcc));
const cublasHeader = [join(cudaRoot, 'include/cublasLt.h'), '/usr/include/cublasLt.h'].find((p) =>
  existsSync(p),
);
const withCublas = Boolean(cublasHeader) && process.env.FLASHSERVE_NO_CUBLAS !== '1';

const require = createRequire(join(pkgDir, 'package.json'));
const napiInclude = dirname(require.resolve('node-api-headers/include/node_api.h'));
const addonApiInclude = dirname(require.resolve('node-addon-api/napi.h'));

const buildDir = join(pkgDir, 'build');
const jobs = String(Math.max(1, Number(process.env.FLASHSERVE_BUILD_JOBS ?? 0) || 2));
const configure = [
  '-S',
  pkgDir,
  '-B',
  buildDir,
  '-DCMAKE_BUILD_TYPE=Release',
  `-DCMAKE_CUDA_COMPILER=${nvcc}`,
  `-DNODE_API_INCLUDE_DIRS=${napiInclude};${addonApiInclude}`,
  `-DFLASHSERVE_WITH_CUBLAS=${withCublas ? 'ON' : 'OFF'}`,
];
if (existsSync('/usr/bin/ninja') || spawnSync('ninja', ['--version']).status === 0)
  configure.push('-G', 'Ninja');
// Measurement builds: the kernels stamp the decode bench's --timeline (packages/cuda/csrc/kernels/timeline.h).
if (process.env.FLASHSERVE_KERNEL_TIMELINE === '1') configure.push('-DFLASHSERVE_KERNEL_TIMELINE=ON');

say(
  `building with ${nvcc}${withCublas ? ' and cuBLAS' : ' (cuBLAS not found: compiling what does not need it)'}`,
);
for (const args of [configure, ['--build', buildDir, '-j', jobs]]) {
  const r = spawnSync('cmake', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) {
    process.stdout.write(r.stdout ?? '');
    process.stderr.write(r.stderr ?? '');
    say(`native build failed: cmake ${args[0]} exited with ${r.status}`);
    process.exit(1);
  }
}
say(`native addon built: ${join('build', 'Release')}`);

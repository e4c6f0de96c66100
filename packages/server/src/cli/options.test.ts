import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ENFORCE_EAGER_DEFAULT, resolveServeConfig } from '../config.js';
import { envName, formatUsage, parseArgv, parseValue } from './options.js';

describe('parseValue', () => {
  const bytes = { key: 'k', flag: 'k', kind: { type: 'bytes' as const }, help: '' };
  test('sizes with units', () => {
    expect(parseValue(bytes, '512MiB', 'x')).toBe(512 * 1024 ** 2);
    expect(parseValue(bytes, '2GiB', 'x')).toBe(2 * 1024 ** 3);
    expect(parseValue(bytes, '1.5G', 'x')).toBe(1.5 * 1024 ** 3);
    expect(parseValue(bytes, '1000', 'x')).toBe(1000);
    expect(() => parseValue(bytes, '12 parsecs', 'x')).toThrow(/expected a size/);
  });
  test('integers are strict', () => {
    const int = { key: 'k', flag: 'k', kind: { type: 'int' as const, min: 1 }, help: '' };
    expect(parseValue(int, '8', '--k')).toBe(8);
    for (const bad of ['8.5', '0', 'eight', '', '1e400'])
      expect(() => parseValue(int, bad, '--k')).toThrow(/--k/);
  });
});

describe('serve configuration', () => {
  test('defaults serve the embedded model on port 8000', () => {
    const c = resolveServeConfig([]);
    expect(c.model).toBeUndefined();
    expect(c.port).toBe(8000);
    expect(c.host).toBe('0.0.0.0');
    expect(c.device).toBe('cpu');
    expect(c.maxRequestBodySize).toBe(8 * 1024 ** 2);
  });
  test('flags, env and precedence (flag > env > default)', () => {
    const c = resolveServeConfig(
      ['--port', '9000', '--max-num-seqs=8', '--skip-tokenizer-init', '--no-enable-prefix-caching'],
      {
        FLASHSERVE_PORT: '7000',
        FLASHSERVE_API_KEY: 'k',
        FLASHSERVE_KV_CACHE_MEMORY: '64MiB',
      },
    );
    expect(c.port).toBe(9000);
    expect(c.maxNumSeqs).toBe(8);
    expect(c.apiKey).toBe('k');
    expect(c.kvCacheMemory).toBe(64 * 1024 ** 2);
    expect(c.skipTokenizerInit).toBe(true);
    expect(c.enablePrefixCaching).toBe(false);
  });
  test('--enforce-eager / FLASHSERVE_ENFORCE_EAGER turn decode CUDA graphs off', () => {
    expect(resolveServeConfig([]).enforceEager).toBe(ENFORCE_EAGER_DEFAULT);
    expect(resolveServeConfig(['--enforce-eager']).enforceEager).toBe(true);
    expect(resolveServeConfig(['--no-enforce-eager']).enforceEager).toBe(false);
    expect(resolveServeConfig([], { FLASHSERVE_ENFORCE_EAGER: 'true' }).enforceEager).toBe(true);
    expect(resolveServeConfig(['--no-enforce-eager'], { FLASHSERVE_ENFORCE_EAGER: '1' }).enforceEager).toBe(
      false,
    );
  });

  test('unknown flags and bad values name themselves', () => {
    expect(() => resolveServeConfig(['--prot', '1'])).toThrow('unknown option --prot');
    expect(() => resolveServeConfig(['--port', 'x'])).toThrow(
      '--port: expected an integer >= 0 and <= 65535, got "x"',
    );
    expect(() => resolveServeConfig(['--device', 'tpu'])).toThrow('expected one of cpu, cuda');
    expect(() => resolveServeConfig(['--port'])).toThrow('--port: expected a value');
    expect(() => resolveServeConfig(['serve'])).toThrow('unknown option serve');
    expect(() => resolveServeConfig([], { FLASHSERVE_MAX_NUM_SEQS: '-1' })).toThrow(
      'FLASHSERVE_MAX_NUM_SEQS',
    );
  });
  test('a --config file sets values; the environment and flags override it', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'flashserve-config-')), 'serve.yaml');
    writeFileSync(
      file,
      'port: 9100\nmax_num_seqs: 4\nkv-cache-memory: 32MiB\napi-key: from-file\nskip-tokenizer-init: true\n',
    );
    const c = resolveServeConfig(['--config', file, '--max-num-seqs', '6'], {
      FLASHSERVE_API_KEY: 'from-env',
    });
    expect(c).toMatchObject({
      port: 9100,
      maxNumSeqs: 6,
      kvCacheMemory: 32 * 1024 ** 2,
      apiKey: 'from-env',
      skipTokenizerInit: true,
    });
    expect(c.configFile).toBe(file);
  });
  test('argv parsing keeps --flag=value with = inside the value', () => {
    expect(parseArgv([{ key: 'k', flag: 'key', kind: { type: 'string' }, help: '' }], ['--key=a=b'])).toEqual(
      { k: 'a=b' },
    );
  });
  test('usage lists every option with its environment variable', () => {
    const usage = formatUsage('flashserve serve', [
      { key: 'k', flag: 'max-num-seqs', kind: { type: 'int' }, help: 'h', default: 4 },
    ]);
    expect(usage).toContain('--max-num-seqs <int>');
    expect(usage).toContain('(default: 4)');
    expect(envName('max-num-seqs')).toBe('FLASHSERVE_MAX_NUM_SEQS');
  });
});

// The Node flags rank threads inherit: export conditions and flags Worker refuses are dropped.
import { describe, expect, it } from 'vitest';
import { threadExecArgv } from './rank-threads.js';

describe('threadExecArgv', () => {
  it('drops export conditions and process-only flags, keeps the rest', () => {
    expect(
      threadExecArgv([
        '--conditions',
        'flashserve-source',
        '--max-old-space-size=8192',
        '--enable-source-maps',
        '--conditions=x',
        '--stack-size=2000',
        '-C',
        'y',
        '--title=flashserve',
        '--no-warnings',
      ]),
    ).toEqual(['--enable-source-maps', '--no-warnings']);
  });
});

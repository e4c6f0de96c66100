// A one-line progress bar for a terminal (redrawn in place); off a terminal it stays silent, and the
// structured log records the start and end of the step instead.

import type { WriteStream } from 'node:tty';

export interface Progress {
  update(fraction: number): void;
  done(): void;
}

const WIDTH = 30;

export function progressBar(
  label: string,
  stream: NodeJS.WriteStream | WriteStream = process.stderr,
): Progress {
  if (!stream.isTTY) return { update() {}, done() {} };
  let lastDrawn = -1;
  const started = Date.now();
  const draw = (fraction: number) => {
    const f = Math.min(1, Math.max(0, fraction));
    const percent = Math.floor(f * 100);
    if (percent === lastDrawn) return;
    lastDrawn = percent;
    const filled = Math.round(f * WIDTH);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    stream.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${String(percent).padStart(3)}% ${seconds}s`,
    );
  };
  return {
    update: draw,
    done() {
      draw(1);
      stream.write('\n');
    },
  };
}

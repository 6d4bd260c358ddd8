/** How long-running work (image builds, boots, provisioning) reports what it is doing. */
export interface Progress {
  /** What is happening right now, shown on one rewritten line on a TTY; `fraction` (0–1) draws a bar. */
  update(detail: string, fraction?: number): void;
  /** A line worth keeping: printed as its own line and written to logs. */
  log(line: string): void;
}

export const silentProgress: Progress = {
  update() {},
  log() {},
};

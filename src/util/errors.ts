/**
 * Every expected failure is an EnvboxError: a stable code, a message that says what went wrong,
 * a hint that says what to do, and the exit status. The base command renders it once, as text or JSON.
 * Anything thrown that is not an EnvboxError is a bug and is shown as one.
 */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export interface ErrorOptions {
  hint?: string;
  exit?: number;
  /** Extra machine-readable data for --json. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class EnvboxError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exit: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EnvboxError';
    this.code = code;
    this.hint = options.hint;
    this.exit = options.exit ?? EXIT.failure;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, ...this.details };
  }
}

/** Bad command-line usage or a bad Envfile: exit status 2. */
export class UsageError extends EnvboxError {
  constructor(code: string, message: string, options: Omit<ErrorOptions, 'exit'> = {}) {
    super(code, message, { ...options, exit: EXIT.usage });
  }
}

export function isEnvboxError(err: unknown): err is EnvboxError {
  return err instanceof EnvboxError;
}

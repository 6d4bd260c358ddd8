import { Command, Errors, Flags } from '@oclif/core';
import { EnvboxError, EXIT, isEnvboxError } from '../util/errors.js';
import { Output } from './output.js';
import { reportError } from './report-error.js';
import { trace } from '../util/trace.js';

/**
 * The base of every command: global flags, one Output, and the one place errors are rendered —
 * expected ones (EnvboxError) as text or a JSON envelope with their exit status, anything else as a bug.
 */
export abstract class EnvCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'Print the result as JSON.', helpGroup: 'GLOBAL' }),
    envfile: Flags.string({
      description: 'Envfile to use (default: ./Envfile or the nearest parent folder with one).',
      env: 'ENVBOX_ENVFILE',
      helpGroup: 'GLOBAL',
    }),
    debug: Flags.boolean({ description: 'Show stack traces for unexpected errors.', helpGroup: 'GLOBAL' }),
  };

  private output: Output | undefined;

  override async init(): Promise<void> {
    trace(`command ${this.id} init`);
    await super.init();
  }

  /** Output is decided from argv so that errors raised while parsing flags still honour --json. */
  protected get out(): Output {
    this.output ??= new Output({ json: this.argv.includes('--json') });
    return this.output;
  }

  /** Prints a result: the JSON document (with ok: true) under --json, else the text. */
  protected result(data: Record<string, unknown>, text: () => string | undefined): void {
    if (this.out.json) this.out.printJson({ ok: true, ...data });
    else {
      const t = text();
      if (t) this.out.print(t);
    }
  }

  override async catch(err: Error & { oclif?: { exit?: number } }): Promise<void> {
    if (err instanceof Errors.ExitError) throw err;
    this.parsed = true; // a flag error is reported here; oclif need not warn that parsing never finished
    const debug = this.argv.includes('--debug') || Boolean(process.env.ENVBOX_DEBUG);
    let error: unknown = err;
    if (!isEnvboxError(err) && err instanceof Errors.CLIError && (err.oclif?.exit === 2 || /flag|argument|arg/i.test(err.message))) {
      error = new EnvboxError('USAGE', err.message.replace(/\nSee more help with --help$/, ''), {
        hint: `see env ${this.id?.replace(/:/g, ' ') ?? ''} --help`.replace(/\s+--help/, ' --help'),
        exit: EXIT.usage,
      });
    }
    reportError(error, this.out, { debug });
  }
}

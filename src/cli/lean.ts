/**
 * `env up` without oclif. Loading oclif and its command table costs a fifth of a second or more, a good
 * part of what `env up` of a halted env may take, so the common forms of `up` are parsed here and run
 * the same core code as src/commands/up.ts. Anything else (--help, a flag this does not know, a typo)
 * returns undefined and goes to oclif, which owns help and usage errors.
 */
export interface LeanUpArgs {
  json: boolean;
  debug: boolean;
  envfile: string | undefined;
  provision: boolean | undefined;
}

/** The flags of `env up` (after the verb), as oclif would read them; undefined for anything else. */
export function parseLeanUp(args: readonly string[], environment: NodeJS.ProcessEnv = process.env): LeanUpArgs | undefined {
  const parsed: LeanUpArgs = { json: false, debug: false, envfile: undefined, provision: undefined };
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.startsWith('--envfile=') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? '--envfile' : arg;
    // A flag given twice, or --provision with --no-provision: oclif's rules decide.
    const key = name === '--no-provision' ? '--provision' : name;
    if (seen.has(key)) return undefined;
    seen.add(key);
    if (name === '--json') parsed.json = true;
    else if (name === '--debug') parsed.debug = true;
    else if (name === '--provision') parsed.provision = true;
    else if (name === '--no-provision') parsed.provision = false;
    else if (name === '--envfile') {
      const value = eq > 0 ? arg.slice(eq + 1) : args[++i];
      if (value === undefined || value === '' || (eq < 0 && value.startsWith('-'))) return undefined;
      parsed.envfile = value;
    } else return undefined;
  }
  parsed.envfile ??= environment.ENVBOX_ENVFILE || undefined;
  return parsed;
}

/** Runs `env up` when the arguments are ones parseLeanUp knows; false when oclif must handle them. */
export async function runLeanUp(args: readonly string[]): Promise<boolean> {
  const flags = parseLeanUp(args);
  if (!flags) return false;
  const { Output } = await import('./output.js');
  const out = new Output({ json: flags.json });
  try {
    const { openEnv } = await import('../core/env.js');
    const { status } = await import('../core/lifecycle.js');
    const { up } = await import('../core/up.js');
    const env = await up(await openEnv(flags.envfile), out, { provision: flags.provision });
    // up resolves only with the guest running (a login just worked, or it was running under the lock).
    const report = await status(env, { state: 'running' });
    if (out.json) out.printJson({ ok: true, env: report });
    else out.print(`env "${report.name}" is ${report.state} at ${report.address} — env ssh to get in`);
  } catch (err) {
    const { reportError } = await import('./report-error.js');
    reportError(err, out, { debug: flags.debug || Boolean(process.env.ENVBOX_DEBUG) });
  }
  return true;
}


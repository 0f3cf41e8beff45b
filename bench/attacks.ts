/**
 * `npm run attacks`: the hostile-client attacks of issue 8 (and those of round one) against the CLI, one
 * row each: the CLI's peak RSS (VmHWM), what healthy clients saw (throughput, p50/p99 latency from send
 * times carried in the records, anything lost, reordered or cut) and the attack's own figures. Writes
 * bench/results/<ATTACKS_OUT>.md (a Markdown table) and .jsonl (one JSON object per row), and prints both.
 *
 * Environment:
 * - ATTACKS="name1 name2": run only these (default: all; see bench/attack-cases.ts for the names).
 * - EXTRA_FLAGS="--memory-budget 134217728": appended to every CLI start. The RSS target of the table is
 *   twice a `--memory-budget` given here, else 512 MiB.
 * - ATTACKS_OUT (default `attacks`): the base name of the result files.
 *
 * Each attack starts its own CLI (dist/lib/cli.js) on a free port of 127.0.0.1, is bounded in time, and
 * always ends with its sockets reset and its CLI stopped (SIGTERM, then SIGKILL after 5 s).
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ATTACKS, type Attack, type AttackContext, type Figure, type Healthy, type ProbeOptions } from './attack-cases';
import {
  type Cli,
  CliStartError,
  type CliOptions,
  MiB,
  Probe,
  raiseDescriptorLimit,
  SocketPool,
  startCli,
} from './attack-tools';
import { installCleanup } from './children';

/** One row of the table. */
export interface AttackRow {
  readonly attack: string;
  readonly item: string;
  readonly what: string;
  /** The flags of the attack's first CLI, EXTRA_FLAGS included. */
  readonly flags: string;
  readonly ok: boolean;
  readonly error: string | null;
  readonly seconds: number;
  /** Peak RSS (VmHWM) of the CLIs the attack started, MiB; null when none started. */
  readonly peak_rss_mib: number | null;
  readonly rss_target_mib: number;
  readonly within_target: boolean | null;
  readonly healthy: Healthy | null;
  /** How the attack's first CLI stopped at the end: exit code (or signal) and ms after SIGTERM. */
  readonly sigterm: { exit: number | string; ms: number; killed: boolean } | null;
  readonly figures: Record<string, Figure>;
  readonly notes: readonly string[];
  /** The machine's 1-minute load average when the attack ended (2 cores, shared). */
  readonly load1: number;
}

/** The repository root (dist/bench/ is two levels down). */
const ROOT = join(__dirname, '..', '..');

class Context implements AttackContext {
  readonly pool = new SocketPool();
  readonly figures: Record<string, Figure> = {};
  readonly notes: string[] = [];
  readonly clis: Cli[] = [];
  readonly probes: Probe[] = [];
  aborted = false;
  firstFlags: string | null = null;

  constructor(private readonly extraFlags: readonly string[]) {}

  async cli(flags: readonly string[], options?: CliOptions): Promise<Cli> {
    const all = [...flags, ...this.extraFlags];
    this.firstFlags ??= all.map((flag) => flag.replace(`${ROOT}/`, '')).join(' ');
    if (this.aborted) throw new Error('called off');
    const cli = await startCli(all, options);
    this.clis.push(cli);
    return cli;
  }

  probe(config: ProbeOptions): Probe {
    const probe = new Probe(config);
    this.probes.push(probe);
    return probe;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  running(until: number): boolean {
    return !this.aborted && Date.now() < until;
  }

  /** Probes closed, sockets reset, CLIs stopped; returns how the first CLI stopped. */
  async cleanup(): Promise<AttackRow['sigterm']> {
    this.aborted = true;
    await Promise.all(this.probes.map((probe) => probe.close().catch(() => undefined)));
    try {
      this.pool.resetAll();
    } catch (error) {
      this.note(`resetting the sockets failed: ${String(error)}`);
    }
    let first: AttackRow['sigterm'] = null;
    for (const [index, cli] of this.clis.entries()) {
      const wasAlive = cli.alive;
      try {
        const stop = await cli.stop(5000);
        if (index === 0 && wasAlive)
          first = { exit: stop.code ?? String(stop.signal), ms: stop.ms, killed: stop.killed };
      } catch (error) {
        cli.child.kill('SIGKILL');
        this.note(`stopping the CLI failed: ${String(error)}`);
      }
    }
    return first;
  }
}

function rssTarget(extraFlags: readonly string[]): number {
  const at = extraFlags.indexOf('--memory-budget');
  const budget = at >= 0 ? Number(extraFlags[at + 1]) : NaN;
  return Number.isFinite(budget) && budget > 0 ? (2 * budget) / MiB : 512;
}

async function runOne(attack: Attack, extraFlags: readonly string[]): Promise<AttackRow> {
  const ctx = new Context(extraFlags);
  const begun = Date.now();
  let healthy: Healthy | null = null;
  let error: string | null = null;
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`called off after ${attack.timeoutMs / 1000} s`)), attack.timeoutMs);
    });
    healthy = await Promise.race([attack.run(ctx), deadline]);
  } catch (thrown) {
    error = thrown instanceof CliStartError && thrown.flag !== null ? `flag unknown: ${thrown.flag}` : String(thrown);
    if (thrown instanceof Error && !(thrown instanceof CliStartError) && process.env.ATTACKS_DEBUG === '1')
      process.stderr.write(`${thrown.stack}\n`);
  } finally {
    clearTimeout(timer);
  }
  const sigterm = await ctx.cleanup();
  const peaks = ctx.clis.map((cli) => cli.peak);
  const peak = peaks.length === 0 ? null : Number((Math.max(...peaks) / MiB).toFixed(1));
  const target = rssTarget(extraFlags);
  const dead = ctx.clis.filter((cli) => cli.exit !== null && cli.exit.signal === null && cli.exit.code !== 0);
  if (dead.length > 0 && attack.name !== 'epipe')
    ctx.note(
      `CLI exit ${dead.map((cli) => cli.exit?.code).join(', ')}: ${dead[0].stderr.trim().split('\n').slice(-2).join(' | ')}`,
    );
  return {
    attack: attack.name,
    item: attack.item,
    what: attack.what,
    flags: ctx.firstFlags ?? '',
    ok: error === null,
    error,
    seconds: Number(((Date.now() - begun) / 1000).toFixed(1)),
    peak_rss_mib: peak,
    rss_target_mib: target,
    within_target: peak === null || error !== null ? null : peak <= target,
    healthy,
    sigterm,
    figures: ctx.figures,
    notes: ctx.notes,
    load1: Number(loadavg()[0].toFixed(2)),
  };
}

/** Ratios between rows of the same run: line vs raw framing (8.4), the newcomer attack vs its baseline (8.6). */
function addRatios(rows: AttackRow[]): void {
  const find = (name: string): AttackRow | undefined => rows.find((row) => row.attack === name && row.ok);
  const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
    a == null || b == null || b === 0 ? null : Number((a / b).toFixed(2));
  const raw = find('raw-stalled-2000');
  const line = find('line-stalled-2000');
  if (raw !== undefined && line !== undefined) {
    line.figures.rss_vs_raw = ratio(line.peak_rss_mib, raw.peak_rss_mib);
    line.figures.p99_vs_raw = ratio(line.healthy?.p99Ms, raw.healthy?.p99Ms);
  }
  const base = find('newcomer-baseline');
  const attacked = find('newcomer-stall');
  if (base !== undefined && attacked !== undefined) {
    attacked.figures.throughput_vs_baseline = ratio(attacked.healthy?.mbPerS, base.healthy?.mbPerS);
    attacked.figures.p99_vs_baseline = ratio(attacked.healthy?.p99Ms, base.healthy?.p99Ms);
  }
}

const cell = (value: Figure | undefined): string => (value === null || value === undefined ? '' : String(value));

function figuresText(row: AttackRow): string {
  const parts = Object.entries(row.figures).map(([key, value]) => `${key} ${cell(value)}`);
  if (row.error !== null) parts.unshift(`**${row.error}**`);
  return [...parts, ...row.notes].join('; ').replace(/\|/g, '\\|');
}

function healthyText(healthy: Healthy | null): [string, string, string, string] {
  if (healthy === null) return ['', '', '', ''];
  const cut = `${healthy.cut}/${healthy.receivers}`;
  const missing = healthy.missingBytes > 0 ? ` (${(healthy.missingBytes / MiB).toFixed(1)} MiB missing)` : '';
  return [
    healthy.mbPerS >= 0.1 ? String(healthy.mbPerS) : `${healthy.deliveriesPerS} rec/s`,
    String(healthy.p50Ms),
    String(healthy.p99Ms),
    `${healthy.lost} / ${healthy.reordered} / ${cut}${missing}${healthy.drained ? '' : ` (${healthy.behind} records behind at the end)`}`,
  ];
}

/** The Markdown report: a header saying what ran where, then one table row per attack. */
export function markdown(rows: readonly AttackRow[], meta: Record<string, string>): string {
  const target = rows[0]?.rss_target_mib ?? 512;
  const lines = [
    '# Attacks (issue 8, and round one again)',
    '',
    ...Object.entries(meta).map(([key, value]) => `- ${key}: ${value}`),
    '',
    `Peak RSS is the CLI's VmHWM; the target is ${target} MiB. Healthy columns: MB/s per receiver during the` +
      ' attack, latency from send times in the records, records lost / reordered at receivers still connected, and' +
      ' receivers cut. SIGTERM: how the CLI stopped at the end (exit code, ms).',
    '',
    '| attack | item | peak RSS MiB | ≤ target | healthy MB/s | p50 ms | p99 ms | lost / reordered / cut | SIGTERM | figures |',
    '| ------ | ---- | -----------: | :------: | -----------: | -----: | -----: | ---------------------- | ------- | ------- |',
  ];
  for (const row of rows) {
    const [mbps, p50, p99, loss] = healthyText(row.healthy);
    const within = row.within_target === null ? '' : row.within_target ? 'yes' : '**no**';
    const sigterm =
      row.sigterm === null ? '' : `${row.sigterm.exit} (${row.sigterm.ms} ms${row.sigterm.killed ? ', killed' : ''})`;
    lines.push(
      `| ${row.attack} | ${row.item} | ${cell(row.peak_rss_mib)} | ${within} | ${mbps} | ${p50} | ${p99} | ${loss} | ${sigterm} | ${figuresText(row)} |`,
    );
  }
  lines.push('', '## What each attack does', '');
  for (const row of rows)
    lines.push(
      `- **${row.attack}** (${row.item}): ${row.what}. Flags: ${row.flags === '' ? 'none' : `\`${row.flags}\``}.`,
    );
  return `${lines.join('\n')}\n`;
}

function selected(): Attack[] {
  const text = process.env.ATTACKS?.trim() ?? '';
  if (text === '') return [...ATTACKS];
  const names = new Set(text.split(/[\s,]+/));
  // The newcomer attack is reported against its baseline, run just before it.
  if (names.has('newcomer-stall')) names.add('newcomer-baseline');
  const unknown = [...names].filter((name) => !ATTACKS.some((attack) => attack.name === name));
  if (unknown.length > 0)
    throw new RangeError(
      `unknown attack(s) ${unknown.join(', ')}; known: ${ATTACKS.map((attack) => attack.name).join(' ')}`,
    );
  return ATTACKS.filter((attack) => names.has(attack.name));
}

function gitDescription(): string {
  const git = (...args: string[]): string => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const head = git('rev-parse', '--short', 'HEAD');
  const lib = git('log', '-1', '--format=%h %s', '--', 'lib').slice(0, 90);
  const dirty = git('status', '--porcelain', 'lib') !== '';
  return head === '' ? 'unknown' : `${head}; lib/ last changed in ${lib}${dirty ? ', with uncommitted changes' : ''}`;
}

async function main(): Promise<void> {
  installCleanup();
  raiseDescriptorLimit();
  const attacks = selected();
  const extraFlags = (process.env.EXTRA_FLAGS ?? '').split(/\s+/).filter((flag) => flag !== '');
  const out = join(ROOT, 'bench', 'results');
  const base = process.env.ATTACKS_OUT?.trim() || 'attacks';
  mkdirSync(out, { recursive: true });
  const jsonl = join(out, `${base}.jsonl`);
  writeFileSync(jsonl, '');
  const meta: Record<string, string> = {
    date: new Date().toISOString(),
    tree: gitDescription(),
    node: process.version,
    EXTRA_FLAGS: extraFlags.length === 0 ? '(none)' : `\`${extraFlags.join(' ')}\``,
    'load average at start': loadavg()
      .map((load) => load.toFixed(2))
      .join(' '),
    command: `ATTACKS="${attacks.map((attack) => attack.name).join(' ')}" EXTRA_FLAGS="${extraFlags.join(' ')}" npm run attacks`,
  };
  process.stdout.write(
    `attacks: ${attacks.length} against dist/lib/cli.js; EXTRA_FLAGS=${extraFlags.join(' ') || '(none)'}\n`,
  );
  const rows: AttackRow[] = [];
  const started = Date.now();
  for (const attack of attacks) {
    process.stdout.write(`- ${attack.name}: ${attack.what} ... `);
    const row = await runOne(attack, extraFlags);
    rows.push(row);
    appendFileSync(jsonl, `${JSON.stringify(row)}\n`);
    const [mbps, , p99, loss] = healthyText(row.healthy);
    process.stdout.write(
      `${row.seconds} s: peak RSS ${cell(row.peak_rss_mib)} MiB` +
        (row.healthy === null
          ? ''
          : `, healthy ${mbps}${mbps.endsWith('/s') ? '' : ' MB/s'} p99 ${p99} ms, lost/reordered/cut ${loss}`) +
        `; ${figuresText(row)}\n`,
    );
    await sleep(500); // let the kernel finish with the last attack's sockets
  }
  addRatios(rows);
  meta['total time'] = `${Math.round((Date.now() - started) / 1000)} s`;
  // Rewritten with the ratios, which need every row.
  writeFileSync(jsonl, rows.map((row) => JSON.stringify(row)).join('\n') + '\n');
  const report = markdown(rows, meta);
  writeFileSync(join(out, `${base}.md`), report);
  process.stdout.write(`\n${report}\nwrote bench/results/${base}.md and ${base}.jsonl\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`attacks: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);

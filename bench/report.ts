/** The bench's outputs: a Markdown report and a hand-written SVG bar chart. */
import { parseCase } from './cases';
import { type RunRecord, type Summary, casesOf, find } from './stats';
import type { TargetCheck } from './targets';

export interface ReportMeta {
  readonly date: string;
  readonly node: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly loadAverage: readonly number[];
  readonly reps: number;
  readonly durationS: number;
  readonly workers: number;
  readonly ran: readonly { readonly name: string; readonly description: string }[];
  readonly skipped: readonly { readonly name: string; readonly reason: string }[];
  /** Cases asked for that could not run here (a cluster case whose broker is not installed). */
  readonly skippedCases: readonly { readonly name: string; readonly reason: string }[];
  /** Peers whose cases with many connections were skipped. */
  readonly cut: readonly { readonly name: string; readonly reason: string; readonly skipped: readonly string[] }[];
  readonly wallS: number;
  readonly command: string;
}

const fmt = (x: number | null | undefined, digits = 0): string =>
  x == null || !Number.isFinite(x)
    ? '-'
    : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function rateText(x: number | null | undefined): string {
  if (x == null) return '-';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`;
  return x.toFixed(0);
}

/** The naive loop a case's rows are compared with: the `net` one for TCP clients, the `ws` one otherwise. */
function naiveOf(caseName: string): string {
  return parseCase(caseName).net === 'tcp' ? 'naive' : 'ws-naive';
}

/** Whether any summary is of a case with WebSocket clients. */
function hasWebSocket(summaries: readonly Summary[]): boolean {
  return summaries.some((s) => parseCase(s.case).net !== 'tcp');
}

function ordered(
  summaries: readonly Summary[],
  kinds: readonly Summary['kind'][],
  peers: readonly string[],
): Summary[] {
  const caseOrder = casesOf(summaries);
  return summaries
    .filter((s) => kinds.includes(s.kind))
    .sort(
      (a, b) => caseOrder.indexOf(a.case) - caseOrder.indexOf(b.case) || peers.indexOf(a.peer) - peers.indexOf(b.peer),
    );
}

export function markdown(
  meta: ReportMeta,
  summaries: readonly Summary[],
  targets: readonly TargetCheck[],
  records: readonly RunRecord[],
): string {
  const peers = meta.ran.map((p) => p.name);
  const lines: string[] = [];
  lines.push('# Fan-out benchmark', '');
  lines.push(
    `${meta.date} · node ${meta.node} · ${meta.cpus} × ${meta.cpuModel} · load average at start ${meta.loadAverage.map((x) => x.toFixed(2)).join(' ')}`,
    '',
    `\`${meta.command}\` · ${meta.reps} repetition(s) of ${meta.durationS} s per run, peers interleaved (order rotated each repetition) · generator: ${meta.workers} worker threads · ${Math.round(meta.wallS)} s in all`,
    '',
  );
  lines.push(`Peers run: ${meta.ran.map((p) => `**${p.name}** (${p.description})`).join('; ')}.`, '');
  if (meta.skipped.length > 0)
    lines.push(`Peers skipped: ${meta.skipped.map((p) => `**${p.name}**: ${p.reason}`).join('; ')}.`, '');
  else lines.push('Peers skipped: none.', '');
  if (meta.skippedCases.length > 0)
    lines.push(`Cases skipped: ${meta.skippedCases.map((c) => `**${c.name}**: ${c.reason}`).join('; ')}.`, '');
  for (const c of meta.cut) {
    lines.push(
      `Cases skipped for **${c.name}**, which ${c.reason}: ${c.skipped.join(', ')} (BENCH_SLOW_PEERS=1 runs them).`,
      '',
    );
  }

  const throughput = ordered(summaries, ['dedicated', 'all', 'rooms', 'fwd', 'paced'], peers);
  if (throughput.length > 0) {
    lines.push('## Throughput and latency', '');
    lines.push(
      'Medians over clean runs. `d:N:B`: one sender to N receivers, B-byte lines, window 32 KiB; `all:N:B`: N clients all sending (window 8, one message per turn) and all receiving; `paced:N:B`: one sender at 1,000 msgs/s. Cores: CPU seconds per second of run (server; generator = all its threads).',
      '',
    );
    if (throughput.some((s) => s.kind === 'rooms' || s.kind === 'fwd'))
      lines.push(
        '`rooms:N:B:R`: the `all:N:B` load over R rooms (client i in room i % R, named by a first line `/room <i % R>`), each message to the rest of its room only; the naive and corked loops know these rooms too. `fwd:N:B`: the `all:N:B` load on the library with a forward filter registered that keeps the shared bytes.',
        '',
      );
    if (hasWebSocket(throughput))
      lines.push(
        '`ws-` cases: every client speaks WebSocket (text frames of lines without their newline; socket.io: event `m`), compared with the naive `ws` loop; `mix-`: half the clients (the first half) over WebSocket, the rest over TCP, in one room.',
        '',
      );
    lines.push(
      '| case | peer | runs (bad) | deliveries/s | spread | vs naive | MB/s | p50 µs | p99 µs | server CPU s / M deliveries | server cores | gen cores |',
    );
    lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of throughput) {
      const naive = find(summaries, s.case, naiveOf(s.case))?.deliveriesPerS;
      const vsNaive = s.deliveriesPerS != null && naive != null && naive > 0 ? s.deliveriesPerS / naive : null;
      lines.push(
        `| ${s.case} | ${s.peer} | ${s.runs} (${s.bad}) | ${rateText(s.deliveriesPerS)} | ${fmt(s.spread, 2)} | ${fmt(vsNaive, 2)} | ${fmt(s.mbPerS, 1)} | ${fmt(s.p50Us)} | ${fmt(s.p99Us)} | ${fmt(s.cpuPerM, 3)} | ${fmt(s.serverCores, 2)} | ${fmt(s.genCores, 2)} |`,
      );
    }
    lines.push('');
    const saturated = throughput.filter(
      (s) => s.genCores !== null && s.serverCores !== null && s.genCores + s.serverCores >= meta.cpus * 0.85,
    );
    const genBound = throughput.filter((s) => s.genCores !== null && s.genCores >= 0.9);
    lines.push(
      `Machine saturated (server + generator ≥ 85% of ${meta.cpus} cores) in ${saturated.length} of ${throughput.length} rows` +
        (saturated.length > 0 ? `: ${saturated.map((s) => `${s.case} ${s.peer}`).join(', ')}` : '') +
        `. Generator at ≥ 0.9 core in ${genBound.length} rows` +
        (genBound.length > 0 ? `: ${genBound.map((s) => `${s.case} ${s.peer}`).join(', ')}` : '') +
        '. Where the machine or the generator is saturated, deliveries/s bound the pair and server CPU per delivery is the figure that tells servers apart.',
      '',
    );
  }

  const cluster = ordered(summaries, ['cluster'], peers);
  if (cluster.length > 0) {
    lines.push('## Clusters', '');
    lines.push(
      '`cluster-redis:K:N:B`, `cluster-nats:K:N:B`: K nodes joined by a private redis-server or nats-server started for the run, N clients on each (the first N on node 0), all sending B-byte lines (window 8, one per turn) and each receiving from all the others, as `all:K*N:B` does on one node; with a fourth number R (`:10`), each client sends R messages/s, for latency off saturation (the unpaced load saturates the machine: its latency is mostly queueing). Cross-node: deliveries from a sender on another node; same-node: from one on the receiver’s node. Server CPU: the nodes and the broker together. Lost: expected deliveries not received, over all runs.',
      '',
    );
    lines.push(
      '| case | peer | runs (bad) | deliveries/s | spread | p50 µs | p99 µs | cross-node p50 µs | cross-node p99 µs | same-node p50 µs | same-node p99 µs | lost | server CPU s / M deliveries | server cores | gen cores |',
    );
    lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of cluster) {
      lines.push(
        `| ${s.case} | ${s.peer} | ${s.runs} (${s.bad}) | ${rateText(s.deliveriesPerS)} | ${fmt(s.spread, 2)} | ${fmt(s.p50Us)} | ${fmt(s.p99Us)} | ${fmt(s.crossP50Us)} | ${fmt(s.crossP99Us)} | ${fmt(s.sameP50Us)} | ${fmt(s.sameP99Us)} | ${fmt(s.lost)} | ${fmt(s.cpuPerM, 3)} | ${fmt(s.serverCores, 2)} | ${fmt(s.genCores, 2)} |`,
      );
    }
    lines.push('');
  }

  const mem = ordered(summaries, ['mem'], peers);
  if (mem.length > 0) {
    lines.push('## Memory per idle connection', '');
    lines.push(
      'Server RSS with N idle connections (N-1 subscribed receivers and one sender; one warm-up message went through) minus RSS before they connected, divided by N. User space only: kernel socket buffers are not in RSS.',
      '',
    );
    if (hasWebSocket(mem))
      lines.push(
        '`ws-mem:N`: the same with N idle WebSocket connections (the sender one of them): what a server holds per WebSocket client, upgrade done.',
        '',
      );
    lines.push('| case | peer | runs (bad) | RSS before KiB | RSS with clients KiB | bytes / connection |');
    lines.push('|---|---|---|---:|---:|---:|');
    for (const s of mem)
      lines.push(
        `| ${s.case} | ${s.peer} | ${s.runs} (${s.bad}) | ${fmt(s.rss0Kb)} | ${fmt(s.rssKb)} | ${fmt(s.bytesPerConn)} |`,
      );
    lines.push('');
  }

  const hold = ordered(summaries, ['hold'], peers);
  if (hold.length > 0) {
    lines.push('## Many concurrent clients', '');
    lines.push(
      'N receivers connected at once, then one sender broadcasts for the run; clean = every receiver got every message in order.',
      '',
    );
    lines.push('| case | peer | runs (bad) | connect + warm-up s | deliveries/s | p99 µs | server RSS MiB |');
    lines.push('|---|---|---|---:|---:|---:|---:|');
    for (const s of hold) {
      lines.push(
        `| ${s.case} | ${s.peer} | ${s.runs} (${s.bad}) | ${fmt(s.setupS, 1)} | ${rateText(s.deliveriesPerS)} | ${fmt(s.p99Us)} | ${fmt(s.rssKb === null ? null : s.rssKb / 1024, 1)} |`,
      );
    }
    lines.push('');
  }

  const targetTable = (rows: readonly TargetCheck[]): void => {
    lines.push('| target | measured | goal | result |');
    lines.push('|---|---:|---|---|');
    for (const t of rows) {
      const verdict = t.pass === null ? 'n/a' : t.pass ? 'pass' : '**FAIL**';
      lines.push(`| ${t.target} | ${fmt(t.measured, t.digits ?? 2)} | ${t.goal} | ${verdict} |`);
    }
    lines.push('');
  };
  const performance = targets.filter((t) => t.issue === undefined);
  if (performance.length > 0) {
    lines.push('## Targets of the performance issue', '');
    targetTable(performance);
  }
  const layers = targets.filter((t) => t.issue === 9);
  if (layers.length > 0) {
    lines.push('## Targets of the layered design (issue 9)', '');
    lines.push(
      'In this run: rooms (`rooms:N:B:R` on mux-rooms) and a forward filter (`fwd:N:B` on mux-forward) against mux in the plain `all:N:B`; mux against the corked loop; server bytes per idle connection against the figure before the redesign; many clients held.',
      '',
    );
    targetTable(layers);
  }

  const bad = records.filter((r) => !r.ok);
  lines.push('## Runs that were not clean', '');
  if (bad.length === 0) lines.push('None: every delivery of every run arrived once and in order.', '');
  else {
    for (const r of bad) {
      const what = [
        `rc ${r.rc}`,
        r.lost ? `lost ${r.lost}` : '',
        r.gaps ? `gaps ${r.gaps}` : '',
        r.backsteps ? `backsteps ${r.backsteps}` : '',
        r.malformed ? `malformed ${r.malformed}` : '',
        r.server_closed ? `closed by server ${r.server_closed}` : '',
      ]
        .filter((x) => x !== '')
        .join(', ');
      lines.push(
        `- ${r.case} ${r.peer} rep ${r.rep}: ${what}${r.errors.length > 0 ? ` — ${r.errors.slice(0, 2).join(' | ').replace(/\|/g, '/')}` : ''}`,
      );
    }
    lines.push('');
  }
  return lines.join('\n');
}

// ------------------------------------------------------------------ SVG

const esc = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function colorOf(peer: string): string {
  if (peer === 'mux') return '#c0392b';
  if (peer.startsWith('mux')) return '#e67e73';
  if (peer === 'naive' || peer === 'corked' || peer === 'ws-naive' || peer === 'ws-corked') return '#5d6d7e';
  return '#95a5a6';
}

interface Panel {
  readonly title: string;
  /** A null value: the peer ran the case but had no clean run. */
  readonly bars: readonly { readonly peer: string; readonly value: number | null; readonly label: string }[];
}

export function svg(meta: ReportMeta, summaries: readonly Summary[]): string {
  const peers = meta.ran.map((p) => p.name);
  const panels: Panel[] = [];
  for (const c of casesOf(summaries)) {
    const rows = summaries.filter((s) => s.case === c).sort((a, b) => peers.indexOf(a.peer) - peers.indexOf(b.peer));
    const kind = rows[0].kind;
    if (kind === 'paced') {
      panels.push({
        title: `${c}: p99 latency, µs (lower is better)`,
        bars: rows.map((s) => ({ peer: s.peer, value: s.p99Us, label: fmt(s.p99Us) })),
      });
    } else if (kind === 'mem') {
      panels.push({
        title: `${c}: server bytes per idle connection (lower is better)`,
        bars: rows.map((s) => ({
          peer: s.peer,
          value: s.bytesPerConn === null ? null : Math.max(0, s.bytesPerConn),
          label: fmt(s.bytesPerConn),
        })),
      });
    } else {
      const title =
        kind === 'hold' ? `${c}: deliveries/s with every client connected` : `${c}: deliveries/s (higher is better)`;
      panels.push({
        title,
        bars: rows.map((s) => ({ peer: s.peer, value: s.deliveriesPerS, label: rateText(s.deliveriesPerS) })),
      });
    }
  }
  const width = 900;
  const labelW = 90;
  const barMax = 680;
  const barH = 14;
  const gap = 4;
  const titleH = 22;
  const panelGap = 14;
  let y = 34;
  const parts: string[] = [];
  parts.push(
    `<text x="10" y="20" font-size="14" font-weight="bold">Fan-out benchmark · ${esc(meta.date)} · ${meta.cpus} cores · medians of ${meta.reps} run(s) × ${meta.durationS} s</text>`,
  );
  for (const panel of panels) {
    parts.push(`<text x="10" y="${y + 14}" font-size="12" font-weight="bold">${esc(panel.title)}</text>`);
    y += titleH;
    const max = Math.max(1, ...panel.bars.map((b) => b.value ?? 0));
    for (const bar of panel.bars) {
      parts.push(`<text x="${labelW - 6}" y="${y + 11}" font-size="11" text-anchor="end">${esc(bar.peer)}</text>`);
      if (bar.value === null) {
        parts.push(`<text x="${labelW}" y="${y + 11}" font-size="11" fill="#999">no clean run</text>`);
        y += barH + gap;
        continue;
      }
      const w = Math.max(1, Math.round((bar.value / max) * barMax));
      parts.push(`<rect x="${labelW}" y="${y}" width="${w}" height="${barH}" fill="${colorOf(bar.peer)}"/>`);
      parts.push(`<text x="${labelW + w + 4}" y="${y + 11}" font-size="11">${esc(bar.label)}</text>`);
      y += barH + gap;
    }
    y += panelGap;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">`,
    `<rect width="${width}" height="${y}" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

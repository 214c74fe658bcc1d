// How the page writes states, sizes, durations and times.

export const STATES = ['queued', 'starting', 'running', 'paused', 'stopping',
  'stopped', 'finished', 'failed'];

export const EMOJI = {
  queued: '⏳', starting: '🔵', running: '🟢', paused: '⏸️', stopping: '🟠',
  stopped: '🔴', finished: '✅', failed: '❌',
};

export const ENDED = new Set(['stopped', 'finished', 'failed']);

/** Which actions the daemon accepts in which state (docs/api.md). */
export const LEGAL = {
  pause: (s) => s === 'running',
  resume: (s) => s === 'paused',
  stop: (s) => !ENDED.has(s),
  restart: (s) => ENDED.has(s),
};

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return '–';
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

export const pct = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)}%`);

/** Wall time since the run started, up to its end. */
export function uptime(run, now = Date.now()) {
  if (!run.started_at) return null;
  const end = run.ended_at ? Date.parse(run.ended_at) : now;
  return (end - Date.parse(run.started_at)) / 1000;
}

export function clock(t) {
  const d = new Date(t);
  return isNaN(d) ? '' : d.toLocaleTimeString([], { hour12: false });
}

export function number(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
}

/** "3 runs" / "1 run". */
export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

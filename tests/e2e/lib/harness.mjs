// The end-to-end harness: a real `corral serve` in a temp state dir, its API,
// what /proc and the cgroup v2 hierarchy say about a run's processes, and
// Debian's chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SOURCE_DIR = path.resolve(E2E_DIR, '..', '..');
export const TRAINER = path.join(E2E_DIR, 'fixtures', 'trainer.py');

// Waits are bounded and generous: ASan builds are several times slower.
export const SCALE = Number(process.env.CORRAL_E2E_TIMEOUT_SCALE || 1);
export const WAIT_MS = 20_000 * SCALE;

/** The corral binary: CORRAL_BINARY, else CORRAL_BUILD_DIR/corral, else
 *  <source>/build/corral. A build dir given as CORRAL_BINARY works too. */
export function corralBinary() {
  let p = process.env.CORRAL_BINARY
    || (process.env.CORRAL_BUILD_DIR && path.join(process.env.CORRAL_BUILD_DIR, 'corral'))
    || path.join(SOURCE_DIR, 'build', 'corral');
  p = path.resolve(p);
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) p = path.join(p, 'corral');
  try {
    fs.accessSync(p, fs.constants.X_OK);
  } catch {
    throw new Error(`no corral binary at ${p}: build it (cmake --build build) or set CORRAL_BINARY`);
  }
  return p;
}

/** Where screenshots go: CORRAL_E2E_SCREENSHOTS, else next to the binary. */
export function screenshotDir(binary) {
  const dir = path.resolve(process.env.CORRAL_E2E_SCREENSHOTS
    || path.join(path.dirname(binary), 'e2e-screenshots'));
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Polls `fn` (sync or async) until it returns something truthy, and returns
 * that. Exceptions count as "not yet", except one marked `fatal`, which ends
 * the wait at once. Throws after `timeout` ms, naming `what` and the last
 * value or error seen.
 */
export async function waitFor(fn, what, { timeout = WAIT_MS, interval = 100 } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      if (e && e.fatal) throw e;
      last = e;
    }
    if (Date.now() > end) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout / 1000}s waiting for ${what} (last: ${detail})`);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------- daemon

export class Daemon {
  constructor(binary, root) {
    this.binary = binary;
    this.root = root;
    this.stateDir = path.join(root, 'state');
    this.workDir = path.join(root, 'work');
    this.logPath = path.join(root, 'daemon.log');
    this.child = null;
    this.exit = null; // {code, signal} once it has exited
  }

  async start() {
    fs.mkdirSync(this.workDir, { recursive: true });
    const out = fs.openSync(this.logPath, 'a');
    this.child = spawn(this.binary,
      ['serve', '--listen', '127.0.0.1:0', '--state-dir', this.stateDir, '--stop-runs-on-exit',
        // e.g. '--cgroup off' to test the SIGSTOP fallback
        ...(process.env.CORRAL_E2E_DAEMON_ARGS || '').split(/\s+/).filter(Boolean)],
      { cwd: this.workDir, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    this.pid = this.child.pid;
    const endpoint = path.join(this.stateDir, 'endpoint');
    // The endpoint file holds the URL (http://host:port); take host:port
    // from whatever form it has.
    this.hostPort = await waitFor(() => {
      if (this.exit) {
        throw Object.assign(new Error(`corral serve exited (${JSON.stringify(this.exit)}) before`
          + ` writing its endpoint; its log:\n${this.logTail()}`), { fatal: true });
      }
      const m = fs.readFileSync(endpoint, 'utf8').trim().match(/^(?:https?:\/\/)?([^/\s]+:\d+)\/?$/);
      return m && m[1];
    }, `${endpoint} to name host:port`);
    this.url = `http://${this.hostPort}`;
    this.token = fs.readFileSync(path.join(this.stateDir, 'token'), 'utf8').trim();
    if (!this.token) throw new Error('the daemon wrote an empty token');
    return this;
  }

  logTail(lines = 40) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no daemon log)';
    }
  }

  /** A JSON API call: {status, body}. `token: null` sends none. */
  async api(method, p, body, { token = this.token } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${this.url}${p.startsWith('/') ? p : `/api/v1/${p}`}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000 * SCALE),
    });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch { /* not JSON: keep the text */ }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** Like api(), but throws unless the status is `expect`. */
  async call(method, p, body, expect = 200) {
    const r = await this.api(method, p, body);
    if (r.status !== expect) {
      throw new Error(`${method} ${p} answered ${r.status} (expected ${expect}): ${JSON.stringify(r.body)}`);
    }
    return r.body;
  }

  run(id) {
    return this.call('GET', `/api/v1/runs/${encodeURIComponent(id)}`);
  }

  /** Submits an experiments YAML text with the CLI's envelope. */
  submit(yaml, baseDir = this.workDir) {
    return this.call('POST', '/api/v1/experiments', { spec: yaml, base_dir: baseDir }, 201);
  }

  stdoutSize(id) {
    try {
      return fs.statSync(path.join(this.stateDir, 'runs', id, 'stdout.log')).size;
    } catch {
      return 0;
    }
  }

  /** Stops every run that has not ended, through the API (force: the
   *  test is over, no checkpoint handshake needed). */
  async stopAllRuns() {
    const r = await this.api('GET', '/api/v1/runs');
    if (r.status !== 200) return;
    const active = r.body.runs.filter((x) => !['stopped', 'finished', 'failed'].includes(x.state));
    await Promise.allSettled(active.map((x) => this.api('POST',
      `/api/v1/runs/${encodeURIComponent(x.id)}/stop`, { force: true, wait: true })));
  }

  /** SIGTERM (the daemon then stops its runs), SIGKILL after `graceMs`.
   *  Returns how it exited. Only ever signals its own pid. */
  async stop(graceMs = 30_000 * SCALE) {
    if (!this.child) return null;
    if (!this.exit) {
      this.child.kill('SIGTERM');
      const cancel = new AbortController();
      const timer = sleep(graceMs, 'timeout', { signal: cancel.signal }).catch(() => null);
      const first = await Promise.race([this.exited, timer]);
      cancel.abort();
      if (first === 'timeout' && !this.exit) {
        this.child.kill('SIGKILL');
        await this.exited;
        this.exit.killed = true;
      }
    }
    return this.exit;
  }
}

// ---------------------------------------------------- /proc and cgroups

/** /proc/<pid>/stat: {pid, state, ppid, starttime}, or null if gone. */
export function procStat(pid) {
  let s;
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // Fields after the command: 3 state, 4 ppid, ... 22 starttime.
  return { pid, state: f[0], ppid: Number(f[1]), starttime: f[19] };
}

/** True while the process that had `starttime` still exists (not reaped
 *  and not a zombie; a reused pid is someone else). */
export function alive(pid, starttime) {
  const s = procStat(pid);
  return !!s && s.starttime === starttime && s.state !== 'Z' && s.state !== 'X';
}

let cgroup2Mount;
/** Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup on pure v2
 *  machines, /sys/fs/cgroup/unified on hybrid ones), or null. */
export function cgroupRoot() {
  if (cgroup2Mount !== undefined) return cgroup2Mount;
  cgroup2Mount = null;
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post && post.split(' ')[0] === 'cgroup2') {
      cgroup2Mount = pre.split(' ')[4];
      break;
    }
  }
  return cgroup2Mount;
}

/** The directory of `pid`'s cgroup v2 group, or null. */
export function cgroupDir(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  const root = cgroupRoot();
  if (!line || !root) return null;
  return path.join(root, line.slice(3));
}

/** The run's own cgroup (`<daemon cgroup>/corral-<hash>/<run id>`) that
 *  `pid` is in, or null: never a parent group such as the root, whose
 *  cgroup.procs would list every process of the machine. */
export function runCgroupDir(pid, runId) {
  const dir = cgroupDir(pid);
  if (!dir || path.basename(dir) !== runId
      || !path.basename(path.dirname(dir)).startsWith('corral-')) return null;
  return dir;
}

/** True while `pid` is the process that had `starttime` and belongs to the
 *  run `runId` (the daemon puts CORRAL_RUN_ID in every run's environment):
 *  the only processes the tests may ever signal. */
export function isRunProcess(pid, starttime, runId) {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !alive(pid, starttime)) return false;
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0')
      .includes(`CORRAL_RUN_ID=${runId}`);
  } catch {
    return false;
  }
}

/** cgroup.events as an object ({populated: 1, frozen: 0}). */
export function cgroupEvents(dir) {
  const out = {};
  for (const l of fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8').split('\n')) {
    const [k, v] = l.split(' ');
    if (k) out[k] = Number(v);
  }
  return out;
}

export function cgroupProcs(dir) {
  return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')
    .filter(Boolean).map(Number);
}

// ---------------------------------------------------------------- browser

export const CHROMIUM = process.env.CORRAL_E2E_CHROMIUM || '/usr/bin/chromium';
// The machine's network is closed: without these chromium reaches out at
// start and its connections are refused.
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu',
  '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
export const VIEWPORT = { width: 1280, height: 800 };

/** A persistent context in a fresh user-data-dir under `root` (removed
 *  with it). Every context is a fresh profile: no token kept. */
export async function launchBrowser(userDataDir) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no chromium at ${CHROMIUM}: apt-get install chromium (deploy/install-deps.sh)`);
  }
  fs.mkdirSync(userDataDir, { recursive: true });
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: VIEWPORT,
    timeout: 60_000 * SCALE,
  });
}

/** A temp dir for one suite run: removed by `cleanup` unless
 *  CORRAL_E2E_KEEP is set. */
export function makeRoot() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'corral-e2e-'));
}

export function removeRoot(root) {
  if (process.env.CORRAL_E2E_KEEP) {
    process.stderr.write(`# CORRAL_E2E_KEEP: kept ${root}\n`);
    return;
  }
  fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
}

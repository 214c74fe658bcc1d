#!/usr/bin/python3
"""Runs every Corral benchmark and writes docs/benchmarks.md.

    bench/run.py [--build DIR] [--quick] [--out FILE] [--only NAME,...]

Each figure is measured next to a reference in the same invocation (a bare
mechanism, supervisord, nginx, psutil), since these machines are noisy, and
reported as a ratio. --quick runs every benchmark at a tiny size in seconds
(CI runs it so the suite keeps working; its figures mean nothing).
Benchmarks: tree (pause, resume, stop), start, logs, follow, scale, api.
Needs: supervisor, nginx-light, wrk, python3-psutil (bench/install-deps.sh).
"""
import argparse
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import xmlrpc.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------- helpers --


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, limit=60.0, every=0.005):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError("gave up waiting after %.0f s" % limit)


def cpu_seconds(pid):
    """user+system CPU of a process (its threads, not its children)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pss_bytes(pid):
    """Proportional set size: private pages plus a share of shared ones."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def group_members(pgid):
    """Live processes of a process group, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(name))
    return out


def end(proc, sig, limit):
    """Asks a process we started to exit; SIGKILL after `limit` seconds."""
    proc.send_signal(sig)
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentiles(values):
    v = sorted(values)
    if not v:
        return {"median": None, "p99": None, "max": None}
    return {"median": v[len(v) // 2],
            "p99": v[min(len(v) - 1, len(v) * 99 // 100)],
            "max": v[-1]}


def mib(b):
    return b / (1 << 20)


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return "{:,.0f}".format(x)
    return ("{:.%df}" % digits).format(x)


def verdict(ok):
    return "✅ met" if ok else "❌ missed"


class Http:
    """One keep-alive connection, as a latency-minded client keeps it."""

    def __init__(self, url, token=""):
        host, port = url.replace("http://", "").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": "Bearer " + token} if token else {}

    def call(self, method, path, body=None, ctype="application/json"):
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = ctype
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                # The daemon closes a connection idle for 30 s: reconnect.
                self.conn.close()
                if attempt == 2:
                    raise
        data = r.read()
        return r.status, (json.loads(data) if data else None)

    def timed(self, path, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = self.call("GET", path)
            out.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError("GET %s: %d" % (path, status))
        return out


class Daemon:
    """`corral serve` on 127.0.0.1 port 0 with its own state dir."""

    def __init__(self, build, work, name, config=""):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        args = [os.path.join(build, "corral"), "serve", "--listen",
                "127.0.0.1:0", "--state-dir", self.dir, "--no-auth",
                "--stop-runs-on-exit"]
        if config:
            path = os.path.join(self.dir, "config.yaml")
            with open(path, "w") as f:
                f.write(config)
            args += ["--config", path]
        self.err = open(os.path.join(self.dir, "daemon.err"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        endpoint = os.path.join(self.dir, "endpoint")
        wait_for(lambda: os.path.exists(endpoint), 30)
        self.url = open(endpoint).read().strip()
        self.http = Http(self.url)

    @property
    def pid(self):
        return self.proc.pid

    def submit(self, yaml_text):
        status, body = self.http.call("POST", "/api/v1/experiments",
                                      yaml_text.encode(), "application/yaml")
        if status != 201:
            raise RuntimeError("submit: %d %s" % (status, body))
        return [r["id"] for r in body["runs"]]

    def runs(self):
        return self.http.call("GET", "/api/v1/runs")[1]["runs"]

    def close(self):
        # SIGTERM: the daemon stops its runs (--stop-runs-on-exit).
        end(self.proc, signal.SIGTERM, 300)
        self.err.close()


def matrix_yaml(name, command, n, extra=""):
    points = ", ".join(str(i) for i in range(n))
    cmd = ", ".join(json.dumps(c) for c in command)
    return ("experiments:\n  - name: %s\n    command: [%s]\n%s"
            "    matrix:\n      i: [%s]\n" % (name, cmd, extra, points))


class Supervisord:
    """supervisord from Debian's package, config in a temp dir, loopback."""

    def __init__(self, work, name, programs):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.port = free_port()
        conf = os.path.join(self.dir, "supervisord.conf")
        with open(conf, "w") as f:
            f.write("[inet_http_server]\nport=127.0.0.1:%d\n\n"
                    "[supervisord]\nnodaemon=true\nloglevel=warn\n"
                    "logfile=%s/supervisord.log\npidfile=%s/supervisord.pid\n"
                    "childlogdir=%s\nminfds=4096\nminprocs=2048\n\n"
                    "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory"
                    " = supervisor.rpcinterface:make_main_rpcinterface\n\n"
                    % (self.port, self.dir, self.dir, self.dir))
            for pname, command, extra in programs:
                f.write("[program:%s]\ncommand=%s\nautostart=true\n"
                        "startsecs=0\nautorestart=false\nstopasgroup=true\n"
                        "killasgroup=true\nstdout_logfile=%s/%s.out\n"
                        "stderr_logfile=%s/%s.err\n%s\n"
                        % (pname, command, self.dir, pname, self.dir, pname,
                           extra))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(["supervisord", "-c", conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.rpc = xmlrpc.client.ServerProxy(
            "http://127.0.0.1:%d/RPC2" % self.port)

    def wait_running(self, n, limit, every):
        """Until n programs are RUNNING."""
        def running():
            info = self.info()
            return info is not None and len(info) == n and all(
                p["statename"] == "RUNNING" for p in info)
        wait_for(running, limit, every)

    def info(self):
        try:
            return self.rpc.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return None

    def close(self):
        end(self.proc, signal.SIGTERM, 120)


class Nginx:
    """nginx from Debian's package: one worker, loopback, static files."""

    def __init__(self, work, files):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(os.path.join(self.dir, "root"))
        os.chmod(work, 0o755)
        os.chmod(self.dir, 0o755)
        for name, data in files.items():
            with open(os.path.join(self.dir, "root", name), "wb") as f:
                f.write(data)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("worker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                    "error_log %s/error.log;\nevents { worker_connections 1024; }"
                    "\nhttp {\n access_log off;\n keepalive_requests 10000000;\n"
                    " client_body_temp_path %s/tmp;\n proxy_temp_path %s/tmp;\n"
                    " fastcgi_temp_path %s/tmp;\n uwsgi_temp_path %s/tmp;\n"
                    " scgi_temp_path %s/tmp;\n default_type application/json;\n"
                    " server { listen 127.0.0.1:%d; root %s/root; }\n}\n"
                    % ((self.dir,) * 7 + (self.port, self.dir)))
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: self._up(), 20)
        self.url = "http://127.0.0.1:%d" % self.port

    def _up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def close(self):
        end(self.proc, signal.SIGQUIT, 30)


def wrk(url, seconds, threads=2, connections=64, script=None):
    args = ["wrk", "-t%d" % threads, "-c%d" % connections,
            "-d%ds" % max(1, seconds), "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return {"rps": float(m.group(1)),
            "non2xx": int(errors.group(1)) if errors else 0,
            "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None}


# ------------------------------------------------------------ benchmarks --


def bench_tree(ctx):
    cycles = 10 if ctx.quick else 200
    stop_cycles = 2 if ctx.quick else 20
    out = subprocess.run(
        [os.path.join(ctx.build, "bench_tree"), "--cycles", str(cycles),
         "--stop-cycles", str(stop_cycles), "--psutil",
         os.path.join(ROOT, "bench", "psutil_pause.py")],
        capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError("bench_tree failed: " + out.stderr[-2000:])
    rows = [json.loads(line) for line in out.stdout.splitlines()
            if line.startswith("{")]

    def find(group, prefix):
        for r in rows:
            if r["group"] == group and r["measure"].startswith(prefix) \
                    and "real-time" not in r["measure"]:
                return r
        return None

    # supervisord stopping the same 100-process tree (XML-RPC, wait).
    sup_stop = []
    tree = "sh -c 'for i in $(seq 99); do sleep 3600 & done; wait'"
    for i in range(1 if ctx.quick else 5):
        sup = Supervisord(ctx.work, "sup-stop-%d" % i, [("tree", tree, "")])
        try:
            wait_for(lambda: (sup.info() or [{}])[0].get("statename")
                     == "RUNNING", 30)
            pid = sup.info()[0]["pid"]
            wait_for(lambda: len(group_members(pid)) >= 100, 30)
            t0 = time.perf_counter()
            sup.rpc.supervisor.stopProcess("tree", True)
            sup_stop.append((time.perf_counter() - t0) * 1000)
        finally:
            sup.close()
    sup_row = dict(percentiles(sup_stop), measure="supervisord stopProcess "
                   "(XML-RPC, wait) of the same tree, stopasgroup",
                   n=len(sup_stop), group="stop")
    rows.append({"measure": sup_row["measure"], "group": "stop",
                 "median_ms": sup_row["median"], "p99_ms": sup_row["p99"],
                 "max_ms": sup_row["max"], "n": len(sup_stop)})

    lines = ["## 1–2. Pause, resume and stop of a process tree", "",
             "`build/bench_tree` (bench/tree_control.cpp). Trees: `sh` and 63 "
             "children that sleep, or that spin (64 busy loops on %d cores: "
             "a saturated machine); 100 processes that exit on SIGTERM for "
             "the stop. The API is timed from the request's first byte to "
             "the answer's last on one keep-alive connection; a pause "
             "answers once the kernel confirmed the whole tree frozen "
             "(`cgroup.events`), a stop with `wait` once every process is "
             "reaped and the run is reported `stopped`. The bare references "
             "run on trees the benchmark owns: `killpg`, a `/proc` walk "
             "sending a signal to each process, the cgroup freezer (on the "
             "run's own cgroup: one write, then `cgroup.events` polled), "
             "psutil (`children(recursive=True)` then `suspend()` each, "
             "Debian's python3-psutil). %d cycles, %d stops."
             % (os.cpu_count(), cycles, stop_cycles), ""]
    for group in ["pause, idle tree", "pause, 64 busy loops", "stop"]:
        lines += ["**%s**" % group.capitalize(), "",
                  "| measure | median ms | p99 ms | max ms |",
                  "| --- | --- | --- | --- |"]
        for r in rows:
            if r["group"] != group:
                continue
            if "error" in r:
                lines.append("| %s | %s | | |" % (r["measure"], r["error"]))
                continue
            lines.append("| %s | %s | %s | %s |" % (
                r["measure"], fmt(r.get("median_ms"), 3),
                fmt(r.get("p99_ms"), 3), fmt(r.get("max_ms"), 3)))
        lines.append("")

    idle_pause = find("pause, idle tree", "API pause")
    idle_resume = find("pause, idle tree", "API resume")
    bare_freeze = find("pause, idle tree", "bare cgroup freeze")
    bare_thaw = find("pause, idle tree", "bare cgroup thaw")
    busy_pause = find("pause, 64 busy loops", "API pause")
    api_stop = find("stop", "API stop")
    bare_stop = find("stop", "bare")
    targets = []
    if idle_pause and bare_freeze:
        ratio = idle_pause["median_ms"] / bare_freeze["median_ms"]
        targets.append(("API pause median ≤ 2 ms",
                        "%.2f ms" % idle_pause["median_ms"],
                        idle_pause["median_ms"] <= 2))
        targets.append(("API pause ≤ 2× the bare freeze (median)",
                        "%.1f×" % ratio, ratio <= 2))
    if busy_pause:
        targets.append(("API pause p99 ≤ 5 ms, 64 busy loops",
                        "%.2f ms" % busy_pause["p99_ms"],
                        busy_pause["p99_ms"] <= 5))
    if idle_resume and bare_thaw:
        ratio = idle_resume["median_ms"] / bare_thaw["median_ms"]
        targets.append(("API resume ≤ 2× the bare thaw (median)",
                        "%.1f×" % ratio, ratio <= 2))
    if api_stop:
        targets.append(("100 processes SIGTERM → reaped, reported ≤ 20 ms",
                        "%.1f ms (bare %.1f ms, supervisord %.0f ms)"
                        % (api_stop["median_ms"],
                           bare_stop["median_ms"] if bare_stop else 0,
                           sup_row["median"] or 0),
                        api_stop["median_ms"] <= 20))
    ctx.targets += [("tree",) + t for t in targets]
    return lines


def bench_start(ctx):
    sizes = [20] if ctx.quick else [100, 1000]
    sup_n = 10 if ctx.quick else 100
    lines = ["## 3. Start throughput", "",
             "Runs of `sleep 600` submitted in one file (a matrix) to a "
             "running daemon, timed until every run is `running` (its shim "
             "started the main process and said so). References: a "
             "`posix_spawn` loop of the same command (Python's "
             "`os.posix_spawn`, one at a time, nothing else done), and "
             "supervisord starting %d programs (`startsecs=0`), timed from "
             "its start until `getAllProcessInfo` shows all RUNNING." % sup_n,
             "", "| measure | runs | seconds | runs/s |",
             "| --- | --- | --- | --- |"]
    results = {}
    for n in sizes:
        d = Daemon(ctx.build, ctx.work, "start-%d" % n)
        try:
            t0 = time.perf_counter()
            ids = d.submit(matrix_yaml("s", ["sleep", "600"], n))
            answered = time.perf_counter() - t0
            wait_for(lambda: sum(r["state"] == "running" for r in d.runs())
                     == len(ids), 300, 0.01)
            took = time.perf_counter() - t0
        finally:
            d.close()
        results[n] = took
        lines.append("| Corral: submit → all running | %d | %.3f (answer "
                     "after %.3f) | %s |" % (n, took, answered, fmt(n / took)))
    # posix_spawn reference.
    n = max(sizes)
    pids = []
    t0 = time.perf_counter()
    for _ in range(n):
        pids.append(os.posix_spawn("/bin/sleep", ["sleep", "600"],
                                   os.environ))
    spawn_took = time.perf_counter() - t0
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    lines.append("| posix_spawn loop | %d | %.3f | %s |"
                 % (n, spawn_took, fmt(n / spawn_took)))
    sup = Supervisord(ctx.work, "sup-start",
                      [("p%d" % i, "sleep 600", "") for i in range(sup_n)])
    try:
        sup.wait_running(sup_n, 120, 0.01)
        sup_took = time.perf_counter() - sup.started
    finally:
        sup.close()
    lines.append("| supervisord: start → all RUNNING | %d | %.3f | %s |"
                 % (sup_n, sup_took, fmt(sup_n / sup_took)))
    lines.append("")
    small = min(sizes)
    corral_rate = small / results[small]
    sup_rate = sup_n / sup_took
    if not ctx.quick:
        ctx.targets.append(("start", "100 runs running in ≤ 0.2 s",
                            "%.3f s" % results[100], results[100] <= 0.2))
        ctx.targets.append(("start", "1,000 runs running in ≤ 2 s",
                            "%.3f s" % results[1000], results[1000] <= 2))
    ctx.targets.append(("start", "≥ 3× supervisord's start rate",
                        "%.1f×" % (corral_rate / sup_rate),
                        corral_rate / sup_rate >= 3))
    return lines


def bench_logs(ctx):
    secs = 1 if ctx.quick else 10
    writer = os.path.join(ctx.build, "bench_writer")
    lines = ["## 4. Log ingestion", "",
             "One run of `bench_writer lines %d`: 100-byte `step=<n> "
             "loss=<x> …` lines, one `write(2)` each, flat out for %d s, "
             "then `done=<n>`. Corral parses every line (`progress.format: "
             "kv`, counter `step`) and keeps every byte (`log_rotate: "
             "{size: 8G}`). *Reached the API*: the run's `progress.metrics` "
             "shows `done` (the parser saw the last line) and the stdout "
             "cursor of `logs?tail=1` equals every byte written. CPU per "
             "million lines counts the daemon and the run's shim. "
             "References in the same invocation: a bare inotify tail "
             "(`build/bench_tail`: 64 KiB reads, line cutting, no parsing) "
             "of the same writer writing to a file, and supervisord "
             "capturing the same writer (`stdout_logfile`, no rotation)."
             % (secs, secs), "",
             "| measure | lines | writer lines/s | reached the reader at "
             "lines/s | lag after the last write | lost | CPU s per M lines |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def writer_stats(text):
        m = re.search(r"start_ns=(\d+) end_ns=(\d+) lines=(\d+)", text)
        return int(m.group(1)) / 1e9, int(m.group(2)) / 1e9, int(m.group(3))

    # Corral.
    d = Daemon(ctx.build, ctx.work, "logs",
               "log_rotate: {size: 8G, count: 1}\n")
    try:
        cpu0 = cpu_seconds(d.pid)
        rid = d.submit("experiments:\n  - name: ingest\n    command: [%s, "
                       "lines, \"%d\", \"100\", \"2\"]\n    progress: {format: "
                       "kv, counter: step}\n" % (json.dumps(writer), secs))[0]
        shim = None
        seen = None
        while True:
            status, run = d.http.call("GET", "/api/v1/runs/" + rid)
            if shim is None and run.get("pid"):
                with open("/proc/%d/stat" % run["pid"]) as f:
                    shim = int(f.read().rsplit(")", 1)[1].split()[1])
            if "done" in run["progress"]["metrics"]:
                seen = time.time()
                break
            time.sleep(0.01)
        shim_cpu = cpu_seconds(shim) if shim else 0.0
        daemon_cpu = cpu_seconds(d.pid) - cpu0
        _, err = d.http.call("GET", "/api/v1/runs/%s/logs?tail=1&stream=stderr"
                             % rid)
        start, end, n = writer_stats(err["lines"][-1]["text"])
        _, out = d.http.call("GET", "/api/v1/runs/%s/logs?tail=1&stream=stdout"
                             % rid)
        api_bytes = int(out["cursor"].split("-")[0])
        expected = n * 100 + len("done=%d\n" % n)
        lost = (expected - api_bytes) // 100
        done = run["progress"]["metrics"]["done"]
    finally:
        d.close()
    corral = {"rate": n / (seen - start), "lag": seen - end,
              "cpu_per_m": (daemon_cpu + shim_cpu) / n * 1e6,
              "daemon_per_m": daemon_cpu / n * 1e6, "lost": lost}
    lines.append("| Corral (daemon + shim), parsing every line | %s | %s | %s "
                 "| %.3f s | %d | %.3f (daemon %.3f, shim %.3f) |"
                 % (fmt(n), fmt(n / (end - start)), fmt(corral["rate"]),
                    corral["lag"], lost, corral["cpu_per_m"],
                    corral["daemon_per_m"], shim_cpu / n * 1e6))
    if done != n:
        raise RuntimeError("the parser saw done=%s, expected %d" % (done, n))

    # Bare inotify tail of a file.
    path = os.path.join(ctx.work, "bare-tail.log")
    open(path, "w").close()
    tail = subprocess.Popen([os.path.join(ctx.build, "bench_tail"), path],
                            stdout=subprocess.PIPE, text=True)
    try:
        with open(path, "w") as f:
            w = subprocess.run([writer, "lines", str(secs)], stdout=f,
                               stderr=subprocess.PIPE, text=True, check=True)
        t_out = tail.communicate(timeout=300)[0]
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    start, end, n = writer_stats(w.stderr)
    m = dict(kv.split("=") for kv in t_out.split())
    tail_end = int(m["end_ns"]) / 1e9
    lines.append("| bare inotify tail of a file (no parsing) | %s | %s | %s | "
                 "%.3f s | %d | %.3f |"
                 % (fmt(n), fmt(n / (end - start)), fmt(n / (tail_end - start)),
                    tail_end - end, n + 1 - int(m["lines"]),
                    float(m["cpu_s"]) / n * 1e6))
    os.unlink(path)

    # supervisord capturing the writer.
    sup = Supervisord(ctx.work, "sup-logs",
                      [("w", "%s lines %d 100 2" % (writer, secs),
                        "stdout_logfile_maxbytes=0\nstderr_logfile_maxbytes=0"
                        "\nstdout_logfile_backups=0")])
    try:
        wait_for(lambda: sup.info() is not None, 30)
        cpu0 = cpu_seconds(sup.proc.pid)
        err_path = os.path.join(sup.dir, "w.err")
        out_path = os.path.join(sup.dir, "w.out")
        wait_for(lambda: "lines=" in open(err_path).read(), 300, 0.01)
        start, end, n = writer_stats(open(err_path).read())

        def has_done():
            with open(out_path, "rb") as f:
                f.seek(max(0, os.path.getsize(out_path) - 64))
                return b"done=" in f.read()
        wait_for(has_done, 300, 0.005)
        sup_seen = time.time()
        sup_cpu = cpu_seconds(sup.proc.pid) - cpu0
        with open(out_path, "rb") as f:
            sup_lines = sum(chunk.count(b"\n")
                            for chunk in iter(lambda: f.read(1 << 20), b""))
    finally:
        sup.close()
    sup_per_m = sup_cpu / n * 1e6
    lines.append("| supervisord (copies bytes, no line splitting) | %s | %s | "
                 "%s | %.3f s | %d | %.3f |"
                 % (fmt(n), fmt(n / (end - start)), fmt(n / (sup_seen - start)),
                    sup_seen - end, n + 1 - sup_lines, sup_per_m))
    lines.append("")
    ctx.targets.append(("logs", "0 lines lost", "%d" % corral["lost"],
                        corral["lost"] == 0))
    ctx.targets.append(("logs", "keeps up: last line in the API ≤ 0.1 s after "
                        "it was written", "%.3f s" % corral["lag"],
                        corral["lag"] <= 0.1))
    ctx.targets.append(("logs", "≤ ½ supervisord's CPU per line",
                        "%.2f×" % (corral["cpu_per_m"] / sup_per_m),
                        corral["cpu_per_m"] <= sup_per_m / 2))
    ctx.targets.append(("logs", "≥ 2.3 M lines/s from one writer",
                        "%s lines/s" % fmt(corral["rate"]),
                        corral["rate"] >= 2.3e6))
    return lines


def bench_follow(ctx):
    args = ["50", "2000"] if ctx.quick else ["500", "200000"]
    out = subprocess.run([os.path.join(ctx.build, "bench_logs")] + args,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("bench_logs failed: " + out.stderr[-2000:])
    return ["## 5. Log follow latency", "",
            "`build/bench_logs %s` (bench/log_latency.cpp): a trainer prints "
            "its own clock every 20 ms, a client follows `logs?follow=1` "
            "(SSE) and times each line; then a burst the follower must keep "
            "up with." % " ".join(args), "", "```", out.stdout.strip(), "```",
            ""]


def shim_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def bench_scale(ctx):
    n_big = 20 if ctx.quick else 1000
    n_mid = 10 if ctx.quick else 500
    window = 2 if ctx.quick else 10
    writer = os.path.join(ctx.build, "bench_writer")
    lines = ["## 6. Scale", "",
             "Runs held by one daemon; after they settled, the daemon's RSS "
             "(median of one sample a second) and CPU over %d s. *Quiet*: the runs are `sleep 3600`. "
             "*Tables*: each run is `bench_writer tables`, an SB3-style "
             "table of 6 metrics once a second (parsed, `progress.format: "
             "sb3`). Latency: %d sequential requests on one keep-alive "
             "connection. Shims: the sum of their proportional set sizes "
             "(PSS: private pages plus a share of the shared ones). "
             "Reference: supervisord holding the same number of `sleep` "
             "programs." % (window, 50 if ctx.quick else 300), "",
             "| measure | runs | RSS MiB | CPU % of a core | GET /runs p50 / "
             "p99 ms | GET /runs/{id} p50 / p99 ms | shims' PSS MiB (per shim "
             "KiB) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    n_req = 50 if ctx.quick else 300
    res = {}
    for n, kind in [(n_mid, "quiet"), (n_big, "quiet"), (n_big, "tables")]:
        d = Daemon(ctx.build, ctx.work, "scale-%s-%d" % (kind, n))
        try:
            if kind == "quiet":
                ids = d.submit(matrix_yaml("q", ["sleep", "3600"], n))
            else:
                ids = d.submit(matrix_yaml(
                    "t", [writer, "tables"], n,
                    "    progress: {format: sb3, counter: "
                    "time/total_timesteps}\n"))
            wait_for(lambda: sum(r["state"] == "running" for r in d.runs())
                     == len(ids), 600, 0.05)
            time.sleep(3 if ctx.quick else 12)  # settle; a trim cycle passes
            cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
            samples = []
            for _ in range(window):  # RSS moves with bursts: its median
                time.sleep(1)
                samples.append(rss_bytes(d.pid))
            cpu = (cpu_seconds(d.pid) - cpu0) / (time.monotonic() - t0) * 100
            rss = sorted(samples)[len(samples) // 2]
            lst = percentiles(d.http.timed("/api/v1/runs", n_req // 3))
            one = percentiles(d.http.timed("/api/v1/runs/" + ids[len(ids) // 2],
                                           n_req))
            shims = [shim_of(r["pid"]) for r in d.runs() if r.get("pid")]
            pss = sum(pss_bytes(s) for s in shims if s)
        finally:
            d.close()
        res[(n, kind)] = {"rss": rss, "cpu": cpu, "list": lst, "one": one}
        lines.append("| Corral, %s | %d | %.1f | %.2f | %.2f / %.2f | %.2f / "
                     "%.2f | %.1f (%.0f) |"
                     % (kind, n, mib(rss), cpu, lst["median"], lst["p99"],
                        one["median"], one["p99"], mib(pss),
                        pss / max(1, len(shims)) / 1024))
    sup = Supervisord(ctx.work, "sup-scale",
                      [("p%d" % i, "sleep 3600", "") for i in range(n_mid)])
    try:
        sup.wait_running(n_mid, 300, 0.05)
        time.sleep(3 if ctx.quick else 5)
        cpu0, t0 = cpu_seconds(sup.proc.pid), time.monotonic()
        samples = []
        for _ in range(window):
            time.sleep(1)
            samples.append(rss_bytes(sup.proc.pid))
        sup_cpu = (cpu_seconds(sup.proc.pid) - cpu0) / (time.monotonic() - t0) \
            * 100
        sup_rss = sorted(samples)[len(samples) // 2]
    finally:
        sup.close()
    lines.append("| supervisord, quiet | %d | %.1f | %.2f | | | |"
                 % (n_mid, mib(sup_rss), sup_cpu))
    lines.append("")
    mid = res[(n_mid, "quiet")]
    big = res[(n_big, "quiet")]
    tables = res[(n_big, "tables")]
    ctx.targets += [
        ("scale", "RSS at %d runs ≤ supervisord's (%.1f MiB)"
         % (n_mid, mib(sup_rss)), "%.1f MiB" % mib(mid["rss"]),
         mid["rss"] <= sup_rss),
        ("scale", "RSS at %d runs ≤ 100 MiB" % n_big,
         "%.1f MiB quiet, %.1f MiB with tables" % (mib(big["rss"]),
                                                   mib(tables["rss"])),
         max(big["rss"], tables["rss"]) <= 100 << 20),
        ("scale", "idle CPU ≤ 1%% of a core at %d quiet runs" % n_big,
         "%.2f%%" % big["cpu"], big["cpu"] <= 1),
        ("scale", "CPU ≤ 25%% with %d runs' tables flowing" % n_big,
         "%.2f%%" % tables["cpu"], tables["cpu"] <= 25),
        ("scale", "p99 ≤ 50 ms (listing and one run, tables flowing)",
         "%.1f / %.1f ms" % (tables["list"]["p99"], tables["one"]["p99"]),
         max(tables["list"]["p99"], tables["one"]["p99"]) <= 50),
    ]
    return lines


def bench_api(ctx):
    secs = 1 if ctx.quick else 10
    n_runs = 10 if ctx.quick else 100
    lines = ["## 7. API throughput", "",
             "wrk, 2 threads, 64 connections, %d s, against a daemon holding "
             "%d `sleep` runs. Reference: nginx (one worker, loopback) "
             "serving static JSON files of the same sizes; supervisord's "
             "`getAllProcessInfo` (XML-RPC over HTTP) with %d programs. "
             "Sequential: one client, one keep-alive connection, 1,000 "
             "requests (a Nagle or delayed-ACK stall would show as ~40 ms)."
             % (secs, n_runs, n_runs), "",
             "| request | Corral req/s | reference | reference req/s | ratio |",
             "| --- | --- | --- | --- | --- |"]
    d = Daemon(ctx.build, ctx.work, "api")
    try:
        ids = d.submit(matrix_yaml("a", ["sleep", "3600"], n_runs))
        wait_for(lambda: sum(r["state"] == "running" for r in d.runs())
                 == len(ids), 120, 0.05)
        one = "/api/v1/runs/" + ids[0]
        health_body = urllib.request.urlopen(d.url + "/healthz").read()
        run_body = urllib.request.urlopen(d.url + one).read()
        list_body = urllib.request.urlopen(d.url + "/api/v1/runs").read()
        c_health = wrk(d.url + "/healthz", secs)
        c_one = wrk(d.url + one, secs)
        c_list = wrk(d.url + "/api/v1/runs", secs)
        seq = percentiles(d.http.timed(one, 100 if ctx.quick else 1000))
    finally:
        d.close()
    ng = Nginx(ctx.work, {"healthz": health_body, "run.json": run_body})
    try:
        n_health = wrk(ng.url + "/healthz", secs, threads=2)
        n_one = wrk(ng.url + "/run.json", secs, threads=2)
    finally:
        ng.close()
    sup = Supervisord(ctx.work, "sup-api",
                      [("p%d" % i, "sleep 3600", "") for i in range(n_runs)])
    script = os.path.join(ctx.work, "xmlrpc.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = '
                '"text/xml"\nwrk.body = "<?xml version=\\"1.0\\"?>'
                '<methodCall><methodName>supervisor.getAllProcessInfo'
                '</methodName><params></params></methodCall>"\n')
    try:
        sup.wait_running(n_runs, 120, 0.05)
        s_list = wrk("http://127.0.0.1:%d/RPC2" % sup.port, secs,
                     script=script)
    finally:
        sup.close()
    for label, c, ref_label, r in [
            ("`GET /healthz` (%d B)" % len(health_body), c_health,
             "nginx, same bytes", n_health),
            ("`GET /api/v1/runs/{id}` (%d B)" % len(run_body), c_one,
             "nginx, same bytes", n_one),
            ("`GET /api/v1/runs`, %d runs (%d B)" % (n_runs, len(list_body)),
             c_list, "supervisord getAllProcessInfo, %d programs" % n_runs,
             s_list)]:
        lines.append("| %s | %s | %s | %s | %.2f |"
                     % (label, fmt(c["rps"]), ref_label, fmt(r["rps"]),
                        c["rps"] / r["rps"]))
    lines += ["", "Sequential `GET /api/v1/runs/{id}`: median %.3f ms, p99 "
              "%.3f ms, max %.3f ms." % (seq["median"], seq["p99"],
                                         seq["max"]), ""]
    bad = c_health["non2xx"] + c_one["non2xx"] + c_list["non2xx"]
    ctx.targets += [
        ("api", "`/healthz` ≥ 50% of nginx", "%.0f%%"
         % (100 * c_health["rps"] / n_health["rps"]),
         c_health["rps"] >= 0.5 * n_health["rps"]),
        ("api", "100-run listing ≥ 10,000 req/s and ≥ 30× supervisord",
         "%s req/s, %.0f×" % (fmt(c_list["rps"]),
                              c_list["rps"] / s_list["rps"]),
         c_list["rps"] >= 10000 and c_list["rps"] >= 30 * s_list["rps"]),
        ("api", "no stall for a sequential client (max < 40 ms)",
         "max %.2f ms" % seq["max"], seq["max"] < 40),
        ("api", "every answer 2xx under load", "%d non-2xx" % bad, bad == 0),
    ]
    return lines


BENCHES = {"tree": bench_tree, "start": bench_start, "logs": bench_logs,
           "follow": bench_follow, "scale": bench_scale, "api": bench_api}


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / (1 << 20)
    hybrid = os.path.exists("/sys/fs/cgroup/unified/cgroup.procs")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                             "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True,
                           text=True).stdout
    return ("%d × %s, %.0f GiB, Linux %s, cgroup %s, commit %s%s"
            % (os.cpu_count(), model, mem, platform.release(),
               "hybrid (v2 at /sys/fs/cgroup/unified)" if hybrid else "v2",
               commit.strip() or "?", " (with local changes)" if dirty else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, seconds in all (CI's smoke mode)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs",
                                                  "benchmarks.md"))
    ap.add_argument("--only", default="",
                    help="comma-separated: " + ", ".join(BENCHES))
    args = ap.parse_args()
    for tool in ["supervisord", "nginx", "wrk"]:
        if not shutil.which(tool):
            sys.exit("bench/run.py: '%s' is missing; run bench/install-deps.sh"
                     % tool)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit("bench/run.py: unknown benchmark %s; known: %s"
                 % (", ".join(unknown), ", ".join(BENCHES)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    class Ctx:
        pass
    ctx = Ctx()
    ctx.build = os.path.abspath(args.build)
    ctx.quick = args.quick
    ctx.targets = []
    sections = []
    failed = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as work:
        ctx.work = work
        for name in names:
            print("bench/run.py: %s…" % name, file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                sections += BENCHES[name](ctx)
            except Exception:  # the others still run and are written
                failed.append(name)
                sections += ["## %s: failed" % name, "", "```",
                             traceback.format_exc().strip(), "```", ""]
                traceback.print_exc()
            print("bench/run.py: %s done in %.0f s"
                  % (name, time.monotonic() - t0), file=sys.stderr)
    head = ["# Benchmarks", "",
            "Written by `bench/run.py%s` on %s, in %.0f s. Machine: %s; "
            "build: `%s`. Every figure was measured next to its reference in "
            "this one invocation." % (" --quick" if ctx.quick else "",
                                      time.strftime("%Y-%m-%d %H:%M UTC",
                                                    time.gmtime()),
                                      time.time() - started, machine(),
                                      os.path.relpath(ctx.build, ROOT)), ""]
    if ctx.quick:
        head += ["**Smoke run (`--quick`): sizes are tiny, the figures mean "
                 "nothing.**", ""]
    head += ["## Targets", "", "| benchmark | target | measured | |",
             "| --- | --- | --- | --- |"]
    head += ["| %s | %s | %s | %s |" % (b, t, m, verdict(ok))
             for b, t, m, ok in ctx.targets]
    head.append("")
    analysis = os.path.join(ROOT, "bench", "analysis.md")
    tail = []
    if os.path.exists(analysis) and not ctx.quick:
        tail = ["", open(analysis).read().strip(), ""]
    reproduce = ["## Reproduce", "", "```sh",
                 "bench/install-deps.sh            # supervisor, nginx-light, "
                 "wrk, python3-psutil",
                 "cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && "
                 "cmake --build build",
                 "bench/run.py                     # all, ~6 min; writes "
                 "docs/benchmarks.md",
                 "bench/run.py --only tree,logs --out /tmp/b.md",
                 "bench/run.py --quick --out /tmp/smoke.md   # seconds", "```",
                 ""]
    with open(args.out, "w") as f:
        f.write("\n".join(head + sections + tail + reproduce))
    missed = sum(1 for t in ctx.targets if not t[3])
    print("bench/run.py: wrote %s (%d targets, %d missed)"
          % (args.out, len(ctx.targets), missed), file=sys.stderr)
    if failed:
        sys.exit("bench/run.py: failed: " + ", ".join(failed))


if __name__ == "__main__":
    main()

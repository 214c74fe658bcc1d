#!/usr/bin/env python3
"""A small stand-in for a Stable-Baselines3 PPO run, for trying Corral.

It behaves like the real thing where Corral cares: the main process forks
worker processes (like SubprocVecEnv), prints SB3's progress tables, saves a
checkpoint on SIGUSR1 and on SIGTERM (stopping its workers first), and keeps
its step counter across pause and resume. Standard library only.

Usage: toy_trainer.py [--workers N] [--total-timesteps N] [--lr LR]
                      [--seed S] [--ckpt-dir DIR] [--resume CHECKPOINT]

Signal handlers only set flags; the loop saves. Python runs handlers between
bytecodes, and a handler that prints while the loop prints dies of a
reentrant write.
"""
import argparse
import math
import os
import random
import signal
import sys
import time


def table(rows):
    """SB3's ASCII table: sections with indented keys."""
    lines = []
    for section, items in rows:
        lines.append((section + "/", ""))
        for key, value in items:
            lines.append(("   " + key, value))
    kw = max(len(k) for k, _ in lines)
    vw = max(len(v) for _, v in lines)
    bar = "-" * (kw + vw + 7)
    out = [bar]
    for k, v in lines:
        out.append("| %s | %s |" % (k.ljust(kw), v.ljust(vw)))
    out.append(bar)
    return "\n".join(out)


def worker(index):
    # An environment worker: busy a little, then idle, until told to stop.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        x = 0.0
        for i in range(20000):
            x += math.sin(i)
        time.sleep(0.05)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--total-timesteps", type=int, default=200000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-dir", default="checkpoints")
    p.add_argument("--resume", default="",
                   help="checkpoint to continue from ('' starts afresh)")
    args = p.parse_args()
    random.seed(args.seed)
    os.makedirs(args.ckpt_dir, exist_ok=True)

    workers = []
    for i in range(args.workers):
        pid = os.fork()
        if pid == 0:
            worker(i)
            os._exit(0)
        workers.append(pid)

    state = {"timesteps": 0, "iteration": 0}
    if args.resume:
        with open(args.resume) as f:
            state["timesteps"] = int(f.read().split("=")[1])
        state["iteration"] = state["timesteps"] // 2048
        print("Resuming from %s at %d steps" % (args.resume, state["timesteps"]),
              flush=True)
    started = time.time()
    start_steps = state["timesteps"]
    flags = {"save": False, "stop": False}

    def save(tag):
        path = os.path.join(args.ckpt_dir, "ppo_%d_steps.zip" % state["timesteps"])
        with open(path + ".tmp", "w") as f:
            f.write("timesteps=%d\n" % state["timesteps"])
        os.replace(path + ".tmp", path)
        print("Saving model checkpoint to %s (%s)" % (path, tag), flush=True)

    def finish():
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        save("stop")
        sys.exit(0)

    signal.signal(signal.SIGTERM, lambda *_: flags.update(stop=True))
    signal.signal(signal.SIGUSR1, lambda *_: flags.update(save=True))
    print("Using cpu device", flush=True)
    n_steps = 2048
    reward = 20.0
    while state["timesteps"] < args.total_timesteps:
        for _ in range(10):  # one rollout a second, signals seen at once
            time.sleep(0.1)
            if flags["save"]:
                flags["save"] = False
                save("SIGUSR1")
            if flags["stop"]:
                finish()
        state["iteration"] += 1
        state["timesteps"] += n_steps
        reward = min(500.0, reward * (1.0 + 2000 * args.lr) + random.uniform(-2, 4))
        elapsed = max(1, int(time.time() - started))
        print(table([
            ("rollout", [("ep_len_mean", "%.1f" % reward),
                         ("ep_rew_mean", "%.1f" % reward)]),
            ("time", [("fps", str(int((state["timesteps"] - start_steps)
                                      / elapsed))),
                      ("iterations", str(state["iteration"])),
                      ("time_elapsed", str(elapsed)),
                      ("total_timesteps", str(state["timesteps"]))]),
            ("train", [("learning_rate", "%g" % args.lr),
                       ("loss", "%.3g" % (50.0 / (1 + state["iteration"])))]),
        ]), flush=True)
        if state["iteration"] % 20 == 0:
            save("periodic")
    finish()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The psutil reference for pause latency: what a monitoring script does.

    psutil_pause.py ROOT_PID CYCLES

Each cycle finds the tree with children(recursive=True), suspends every
process, and waits until psutil reports each one stopped; then resumes
them the same way. Prints {"pause": [ms...], "resume": [ms...]} as JSON.
"""
import json
import sys
import time

import psutil


def tree(root):
    return [root] + root.children(recursive=True)


def settle(procs, want_stopped):
    while True:
        done = True
        for p in procs:
            try:
                stopped = p.status() == psutil.STATUS_STOPPED
            except psutil.NoSuchProcess:
                continue
            if stopped != want_stopped:
                done = False
                break
        if done:
            return


def timed(root, stop):
    """ms to find the tree, signal each process and see it settle."""
    t0 = time.perf_counter()
    procs = tree(root)
    for p in procs:
        p.suspend() if stop else p.resume()
    settle(procs, stop)
    return (time.perf_counter() - t0) * 1000


def main():
    root = psutil.Process(int(sys.argv[1]))
    cycles = int(sys.argv[2])
    pause, resume = [], []
    for _ in range(cycles):
        pause.append(timed(root, True))
        resume.append(timed(root, False))
    print(json.dumps({"pause": pause, "resume": resume}))


if __name__ == "__main__":
    main()

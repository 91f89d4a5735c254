#!/usr/bin/env python3
"""Replays one captured APPLY call against two versions of apply.lua.

APPLY's cost per completion is a few microseconds of Redis time, far below
what `ward-bench`'s throughput figures can resolve on a shared machine. This
runs the very same call (the same arguments, the same stream state) with
each version of the script, alternating, many times, and prints Redis's own
time per completion (`INFO commandstats`, reset before each call).

Capture each version's script and a call with `redis-cli MONITOR` on a Redis
of your own while a daemon of that version drains a few thousand no-op jobs:

    redis-server --port 46380 --save '' --daemonize yes --dir /tmp/r
    redis-cli -p 46380 monitor > /tmp/mon-old.txt &   # then the same for new
    ward-bench --redis redis://127.0.0.1:46380 --ward <old ward> \
        --scenarios throughput --jobs 2000
    kill %1

then (needs redis-py: python3 -m venv v && v/bin/pip install redis):

    v/bin/python bench/tools/apply_replay.py 46380 /tmp/mon-old.txt /tmp/mon-new.txt 300

The call replayed is the old capture's largest; both scripts must read the
same argument layout (see store/apply/layout.rs). FLUSHALLs the Redis.
"""
import hashlib
import re
import statistics
import sys

import redis

TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"')
ESCAPES = {'n': b'\n', 'r': b'\r', 't': b'\t', 'a': b'\a', 'b': b'\b', '"': b'"', '\\': b'\\'}


def unescape(s):
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] == '\\':
            n = s[i + 1]
            if n == 'x':
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += ESCAPES.get(n, n.encode())
            i += 2
            continue
        out += s[i].encode()
        i += 1
    return bytes(out)


def capture(path):
    """APPLY's source and its calls' arguments, from a MONITOR log."""
    source, calls = None, []
    for line in open(path, encoding='latin-1'):
        args = [unescape(m) for m in TOKEN.findall(line)]
        if not args:
            continue
        cmd = args[0].upper()
        if cmd == b'SCRIPT' and len(args) > 2 and b'FRESH_entry' in args[2]:
            source = args[2]
        if cmd == b'EVALSHA':
            calls.append((args[1], args[2:]))
    if source is None:
        sys.exit(f'{path}: no SCRIPT LOAD of apply.lua (start MONITOR before the daemon)')
    sha = hashlib.sha1(source).hexdigest().encode()
    mine = [a for s, a in calls if s == sha]
    return source, max(mine, key=len)


def main():
    port, old_path, new_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    old_src, call = capture(old_path)
    new_src, _ = capture(new_path)
    r = redis.Redis(port=port)
    numkeys = int(call[0])
    keys, argv = call[1:1 + numkeys], call[1 + numkeys:]
    stream, group = keys[0], argv[0]
    # A fresh success is 'f' followed by its entry id.
    ids = [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == b'f']
    ids.sort(key=lambda x: tuple(int(v) for v in x.split(b'-')))
    shas = {'old': r.script_load(old_src), 'new': r.script_load(new_src)}
    took = {'old': [], 'new': []}
    for rep in range(reps):
        for name in ('old', 'new') if rep % 2 == 0 else ('new', 'old'):
            r.flushall()
            p = r.pipeline(transaction=False)
            for i in ids:
                p.xadd(stream, {'job': 'noop', 'payload': 'x'}, id=i)
            p.execute()
            r.xgroup_create(stream, group, id='0')
            r.xreadgroup(group, 'replay', {stream: '>'}, count=len(ids))
            r.config_resetstat()
            out = r.evalsha(shas[name], numkeys, *keys, *argv)
            assert out[0] == b'1' * len(ids), f'{name}: not every completion took: {out[0][:40]!r}'
            took[name].append(r.info('commandstats')['cmdstat_evalsha']['usec'] / len(ids))
    print(f'one APPLY call of {len(ids)} fresh successes ({numkeys} keys, {len(argv)} arguments), '
          f'{reps} times each, alternating; Redis time per completion (INFO commandstats):')
    for name, v in took.items():
        v.sort()
        print(f'  {name}: median {statistics.median(v):.3f} us, '
              f'p25 {v[len(v) // 4]:.3f}, p75 {v[3 * len(v) // 4]:.3f}')


if __name__ == '__main__':
    main()

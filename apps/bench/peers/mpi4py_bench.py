"""The mpi4py side of `npm run bench -- --peers` (apps/bench/peers-run.ts): the patterns of
apps/bench/natural.ts written the way mpi4py users write them. Run with mpirun and Debian's
/usr/bin/python3 (python3-mpi4py, python3-numpy):

    mpirun -n 2 /usr/bin/python3 mpi4py_bench.py [--warmup-ms MS] [--point-warmup-ms MS]
        [--point-warmup-iters N] [--budget-ms MS] [--iters N] PATTERN[:SIZE] ...

Patterns (all but allreduce between ranks 0 and 1):
  latency    comm.Send / comm.Recv of numpy uint8 buffers (allocated once); one-way µs
  dict       comm.send / comm.recv (pickle) of {'op': 'x', 'seq': i, 'tag': 7, 'data': [1.5, 2.5]},
             rank 1 echoes the dict it received; one-way µs
  bw-serial  windows of 16 comm.Isend + Request.Waitall; the receiver takes ONE comm.Recv at a
             time (one buffer per window slot, allocated once), then a 1-byte ack; MB/s
  bw-osu     the same, the receiver posts the window's 16 comm.Irecv first (osu_bw); MB/s
  allreduce  comm.Allreduce of SIZE/8 float64, MPI.SUM, into a FRESH result (np.empty each
             call, timed); the input is a fresh array each call, made outside the timer; each
             call timed alone and followed by an untimed barrier (osu_allreduce); µs per call,
             averaged over the ranks

Measurement as in osu.c and natural.ts: batches doubling until one takes a quarter of the
budget, then batches of that size until --point-warmup-iters calls or --point-warmup-ms have
run (untimed; counts agreed through allreduce(MAX)), then one timed loop sized to --budget-ms.
Prints one JSON line on rank 0.
"""

import json
import sys
import time

import numpy as np
from mpi4py import MPI

WINDOW = 16
TAG_DATA = 1
TAG_ACK = 2
MAX_ITERS = 1 << 26

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
size = comm.Get_size()

opts = {'warmup-ms': 1500.0, 'point-warmup-ms': 1500.0, 'point-warmup-iters': 5000.0, 'budget-ms': 500.0, 'iters': 0.0}
points = []
argv = sys.argv[1:]
i = 0
while i < len(argv):
    a = argv[i]
    if a.startswith('--') and a[2:] in opts and i + 1 < len(argv):
        opts[a[2:]] = float(argv[i + 1])
        i += 2
    else:
        points.append(a)
        i += 1

now = time.perf_counter


def latency(p, n):
    sbuf, rbuf = p['sbuf'], p['rbuf']
    if rank == 0:
        for _ in range(n):
            comm.Send(sbuf, dest=1, tag=TAG_DATA)
            comm.Recv(rbuf, source=1, tag=TAG_DATA)
    elif rank == 1:
        for _ in range(n):
            comm.Recv(rbuf, source=0, tag=TAG_DATA)
            comm.Send(sbuf, dest=0, tag=TAG_DATA)


def dict_pingpong(p, n):
    if rank == 0:
        for i in range(n):
            comm.send({'op': 'x', 'seq': i, 'tag': 7, 'data': [1.5, 2.5]}, dest=1, tag=TAG_DATA)
            comm.recv(source=1, tag=TAG_DATA)
    elif rank == 1:
        for _ in range(n):
            m = comm.recv(source=0, tag=TAG_DATA)
            comm.send(m, dest=0, tag=TAG_DATA)


def bandwidth(p, n, posted):
    sbuf, slots, ack = p['sbuf'], p['slots'], p['ack']
    if rank == 0:
        for _ in range(n):
            reqs = [comm.Isend(sbuf, dest=1, tag=TAG_DATA) for _ in range(WINDOW)]
            MPI.Request.Waitall(reqs)
            comm.Recv(ack, source=1, tag=TAG_ACK)
    elif rank == 1:
        for _ in range(n):
            if posted:
                reqs = [comm.Irecv(slots[i], source=0, tag=TAG_DATA) for i in range(WINDOW)]
                MPI.Request.Waitall(reqs)
            else:
                for i in range(WINDOW):
                    comm.Recv(slots[i], source=0, tag=TAG_DATA)
            comm.Send(ack, dest=0, tag=TAG_ACK)


def allreduce(p, n):
    count = p['bytes'] // 8
    timed = 0.0
    for _ in range(n):
        x = np.full(count, rank + 1.0)
        t = now()
        r = np.empty_like(x)
        comm.Allreduce(x, r, op=MPI.SUM)
        timed += now() - t
        comm.Barrier()
    p['timed_us'] = timed * 1e6
    p['last'] = r


RUNNERS = {
    'latency': latency,
    'dict': dict_pingpong,
    'bw-serial': lambda p, n: bandwidth(p, n, False),
    'bw-osu': lambda p, n: bandwidth(p, n, True),
    'allreduce': allreduce,
}
PATTERN = {'latency': 'latency', 'dict': 'dict', 'bw-serial': 'bw-serial', 'bw-osu': 'bw-posted', 'allreduce': 'allreduce'}
UNIT = {'latency': 'us', 'dict': 'us', 'bw-serial': 'MB/s', 'bw-osu': 'MB/s', 'allreduce': 'us'}


def run(fn, p, n):
    comm.Barrier()
    t0 = now()
    fn(p, n)
    return (now() - t0) * 1e6


def agree_max(x):
    return comm.allreduce(x, op=MPI.MAX)


def global_warmup():
    b = np.zeros(8, dtype=np.uint8)
    x = np.ones(1)
    y = np.empty(1)
    t0 = now()
    while True:
        for _ in range(100):
            if size >= 2 and rank == 0:
                comm.Send(b, dest=1, tag=9)
                comm.Recv(b, source=1, tag=9)
            elif rank == 1:
                comm.Recv(b, source=0, tag=9)
                comm.Send(b, dest=0, tag=9)
            comm.Allreduce(x, y, op=MPI.SUM)
        if agree_max((now() - t0) * 1e3) >= opts['warmup-ms']:
            break


global_warmup()
results = []
for spec in points:
    name, _, b = spec.partition(':')
    nbytes = int(b) if b else 0
    if name not in RUNNERS:
        if rank == 0:
            sys.stderr.write(f"mpi4py_bench: unknown pattern '{name}' ({', '.join(RUNNERS)})\n")
        comm.Abort(2)
    if name != 'allreduce' and size < 2:
        if rank == 0:
            sys.stderr.write(f'mpi4py_bench: {name} needs 2 ranks\n')
        comm.Abort(2)
    fn = RUNNERS[name]
    p = {
        'bytes': nbytes,
        'sbuf': np.zeros(nbytes, dtype=np.uint8),
        'rbuf': np.zeros(nbytes, dtype=np.uint8),
        'slots': [np.zeros(nbytes, dtype=np.uint8) for _ in range(WINDOW)],
        'ack': np.zeros(1, dtype=np.uint8),
    }
    fixed = int(opts['iters'])
    if fixed > 0:
        run(fn, p, min(fixed, 10))
        iters = fixed
    else:
        n, ran, spent, calibrated = 1, 0, 0.0, False
        budget_us = opts['budget-ms'] * 1000
        while True:
            wall = agree_max(run(fn, p, n))
            ran += n
            spent += wall
            if wall >= budget_us / 4:
                calibrated = True
            if calibrated and (ran >= opts['point-warmup-iters'] or spent >= opts['point-warmup-ms'] * 1000):
                break
            if n >= MAX_ITERS:
                break
            if not calibrated:
                n *= 2
        per = wall / n
        iters = max(5, min(MAX_ITERS, round(budget_us / max(per, 0.001))))
    wall = run(fn, p, iters)
    if name == 'allreduce':
        value = comm.allreduce(p['timed_us'] / iters, op=MPI.SUM) / size
        if nbytes >= 8 and p['last'][0] != size * (size + 1) / 2:
            sys.stderr.write(f"mpi4py_bench: rank {rank}: allreduce gave {p['last'][0]}\n")
            comm.Abort(3)
    else:
        w0 = comm.bcast(wall, root=0)
        value = w0 / iters / 2 if UNIT[name] == 'us' else nbytes * WINDOW * iters / w0
    results.append({'pattern': PATTERN[name], 'bytes': nbytes, 'iters': iters, 'value': value, 'unit': UNIT[name]})

if rank == 0:
    print(json.dumps({'impl': 'mpi4py', 'ranks': size, 'mpi4py': __import__('mpi4py').__version__, 'results': results}), flush=True)
MPI.Finalize()

/*
 * The Open MPI side of `npm run bench -- --peers` (apps/bench/peers-run.ts): the same patterns
 * as apps/bench/natural.ts, in C, OSU style. Compiled at bench time into a temporary directory
 * (mpicc -O2), never in npm test or npm install; run with mpirun.
 *
 *   mpirun -n 2 osu [--warmup-ms MS] [--point-warmup-ms MS] [--point-warmup-iters N]
 *                   [--budget-ms MS] [--iters N] MODE:SIZE ...
 *
 * Modes (all but allreduce between ranks 0 and 1):
 *   latency    MPI_Send / MPI_Recv ping-pong (osu_latency); one-way µs = half a round trip
 *   bw-serial  windows of 16 MPI_Isend + MPI_Waitall; the receiver takes ONE MPI_Recv at a
 *              time, then a 1-byte ack; MB/s
 *   bw-osu     the same windows, the receiver posts the window's 16 MPI_Irecv first (osu_bw); MB/s
 *   allreduce  MPI_Allreduce of SIZE/8 doubles, MPI_SUM, into a reused result buffer; each call
 *              timed alone and followed by an untimed barrier (osu_allreduce); µs per call,
 *              averaged over the ranks
 * Every window slot has its own receive buffer, allocated once (as natural.ts and mpi4py_bench.py).
 *
 * Each point: batches doubling from 1 until a batch takes a quarter of the budget, then
 * batches of that size until --point-warmup-iters calls or --point-warmup-ms have run (all
 * untimed; the ranks agree on every count through an MPI_Allreduce(MAX) outside the loops),
 * then one timed loop sized to --budget-ms (or exactly --iters). Prints one JSON line on rank 0:
 *   {"impl":"openmpi-c","ranks":N,"results":[{"pattern":..,"bytes":..,"iters":..,"value":..,"unit":..}]}
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 16
#define TAG_DATA 1
#define TAG_ACK 2
#define MAX_ITERS (1L << 26)

static int rank, size;
static double warmup_ms = 1500, point_warmup_ms = 1500, budget_ms = 500;
static long point_warmup_iters = 5000, fixed_iters = 0;

typedef struct {
  char *sbuf, *rbuf, *slots[WINDOW];
  double *dsend, *dres;
  char ack;
  long bytes;
  /* allreduce: µs spent inside the timed operations of the last loop */
  double timed_us;
} point_t;

static double now_us(void) { return MPI_Wtime() * 1e6; }

static void latency(point_t *p, long n) {
  int peer = rank == 0 ? 1 : 0;
  if (rank > 1) return;
  for (long i = 0; i < n; i++) {
    if (rank == 0) {
      MPI_Send(p->sbuf, (int)p->bytes, MPI_CHAR, peer, TAG_DATA, MPI_COMM_WORLD);
      MPI_Recv(p->rbuf, (int)p->bytes, MPI_CHAR, peer, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(p->rbuf, (int)p->bytes, MPI_CHAR, peer, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(p->sbuf, (int)p->bytes, MPI_CHAR, peer, TAG_DATA, MPI_COMM_WORLD);
    }
  }
}

static void bandwidth(point_t *p, long n, int posted) {
  MPI_Request reqs[WINDOW];
  if (rank > 1) return;
  for (long w = 0; w < n; w++) {
    if (rank == 0) {
      for (int i = 0; i < WINDOW; i++) MPI_Isend(p->sbuf, (int)p->bytes, MPI_CHAR, 1, TAG_DATA, MPI_COMM_WORLD, &reqs[i]);
      MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
      MPI_Recv(&p->ack, 1, MPI_CHAR, 1, TAG_ACK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      if (posted) {
        for (int i = 0; i < WINDOW; i++) MPI_Irecv(p->slots[i], (int)p->bytes, MPI_CHAR, 0, TAG_DATA, MPI_COMM_WORLD, &reqs[i]);
        MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
      } else {
        for (int i = 0; i < WINDOW; i++) MPI_Recv(p->slots[i], (int)p->bytes, MPI_CHAR, 0, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      }
      MPI_Send(&p->ack, 1, MPI_CHAR, 0, TAG_ACK, MPI_COMM_WORLD);
    }
  }
}

static void allreduce(point_t *p, long n) {
  int count = (int)(p->bytes / 8);
  double timed = 0;
  for (long i = 0; i < n; i++) {
    double t = now_us();
    MPI_Allreduce(p->dsend, p->dres, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    timed += now_us() - t;
    MPI_Barrier(MPI_COMM_WORLD);
  }
  p->timed_us = timed;
}

typedef enum { M_LATENCY, M_BW_SERIAL, M_BW_OSU, M_ALLREDUCE } mode_t_;

static double run(mode_t_ m, point_t *p, long n) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = now_us();
  switch (m) {
    case M_LATENCY: latency(p, n); break;
    case M_BW_SERIAL: bandwidth(p, n, 0); break;
    case M_BW_OSU: bandwidth(p, n, 1); break;
    case M_ALLREDUCE: allreduce(p, n); break;
  }
  return now_us() - t0;
}

static double agree_max(double x) {
  double y;
  MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return y;
}

/* A short mix of ping-pong and allreduce before anything (parity with natural.ts's warm-up). */
static void global_warmup(void) {
  char b[8] = {0};
  double x = 1, y;
  double t0 = now_us();
  for (;;) {
    for (int i = 0; i < 100; i++) {
      if (size >= 2 && rank == 0) {
        MPI_Send(b, 8, MPI_CHAR, 1, 9, MPI_COMM_WORLD);
        MPI_Recv(b, 8, MPI_CHAR, 1, 9, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(b, 8, MPI_CHAR, 0, 9, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(b, 8, MPI_CHAR, 0, 9, MPI_COMM_WORLD);
      }
      MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    if (agree_max(now_us() - t0) >= warmup_ms * 1000) break;
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  char *points[64];
  int npoints = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--warmup-ms") && i + 1 < argc) warmup_ms = atof(argv[++i]);
    else if (!strcmp(argv[i], "--point-warmup-ms") && i + 1 < argc) point_warmup_ms = atof(argv[++i]);
    else if (!strcmp(argv[i], "--point-warmup-iters") && i + 1 < argc) point_warmup_iters = atol(argv[++i]);
    else if (!strcmp(argv[i], "--budget-ms") && i + 1 < argc) budget_ms = atof(argv[++i]);
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc) fixed_iters = atol(argv[++i]);
    else if (npoints < 64) points[npoints++] = argv[i];
  }

  global_warmup();

  char out[16384];
  int len = snprintf(out, sizeof out, "{\"impl\":\"openmpi-c\",\"ranks\":%d,\"results\":[", size);
  for (int k = 0; k < npoints; k++) {
    char name[32];
    long bytes = 0;
    const char *colon = strchr(points[k], ':');
    size_t nl = colon ? (size_t)(colon - points[k]) : strlen(points[k]);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, points[k], nl);
    name[nl] = 0;
    if (colon) bytes = atol(colon + 1);
    mode_t_ m;
    const char *pattern, *unit;
    if (!strcmp(name, "latency")) m = M_LATENCY, pattern = "latency", unit = "us";
    else if (!strcmp(name, "bw-serial")) m = M_BW_SERIAL, pattern = "bw-serial", unit = "MB/s";
    else if (!strcmp(name, "bw-osu")) m = M_BW_OSU, pattern = "bw-posted", unit = "MB/s";
    else if (!strcmp(name, "allreduce")) m = M_ALLREDUCE, pattern = "allreduce", unit = "us";
    else {
      if (rank == 0) fprintf(stderr, "osu: unknown mode '%s' (latency, bw-serial, bw-osu, allreduce)\n", name);
      MPI_Abort(MPI_COMM_WORLD, 2);
      return 2;
    }
    if (m != M_ALLREDUCE && size < 2) {
      if (rank == 0) fprintf(stderr, "osu: %s needs 2 ranks\n", name);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    point_t p;
    memset(&p, 0, sizeof p);
    p.bytes = bytes;
    p.sbuf = calloc(1, bytes + 1);
    p.rbuf = calloc(1, bytes + 1);
    for (int i = 0; i < WINDOW; i++) p.slots[i] = calloc(1, bytes + 1);
    p.dsend = calloc(bytes / 8 + 1, sizeof(double));
    p.dres = calloc(bytes / 8 + 1, sizeof(double));
    for (long i = 0; i < bytes / 8; i++) p.dsend[i] = rank + 1;

    long iters;
    if (fixed_iters > 0) {
      run(m, &p, fixed_iters < 10 ? fixed_iters : 10);
      iters = fixed_iters;
    } else {
      long n = 1, ran = 0;
      double spent = 0, wall;
      int calibrated = 0;
      for (;;) {
        wall = agree_max(run(m, &p, n));
        ran += n;
        spent += wall;
        if (wall >= budget_ms * 1000 / 4) calibrated = 1;
        if (calibrated && (ran >= point_warmup_iters || spent >= point_warmup_ms * 1000)) break;
        if (n >= MAX_ITERS) break;
        if (!calibrated) n *= 2;
      }
      double per = wall / n;
      iters = (long)(budget_ms * 1000 / (per > 0.001 ? per : 0.001) + 0.5);
      if (iters < 5) iters = 5;
      if (iters > MAX_ITERS) iters = MAX_ITERS;
    }
    double wall = run(m, &p, iters);
    double value;
    if (m == M_ALLREDUCE) {
      double mine = p.timed_us / iters, sum;
      MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      value = sum / size;
    } else {
      double w0 = wall;
      MPI_Bcast(&w0, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
      if (m == M_LATENCY) value = w0 / iters / 2;
      else value = (double)bytes * WINDOW * iters / w0; /* bytes per µs = MB/s */
    }
    /* The data arrived: check one value so the compiler keeps the reduction honest. */
    if (m == M_ALLREDUCE && bytes >= 8 && p.dres[0] != size * (size + 1) / 2.0) {
      fprintf(stderr, "osu: rank %d: allreduce gave %g, expected %g\n", rank, p.dres[0], size * (size + 1) / 2.0);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    len += snprintf(out + len, sizeof out - len, "%s{\"pattern\":\"%s\",\"bytes\":%ld,\"iters\":%ld,\"value\":%.6g,\"unit\":\"%s\"}",
                    k ? "," : "", pattern, bytes, iters, value, unit);
    free(p.sbuf);
    free(p.rbuf);
    for (int i = 0; i < WINDOW; i++) free(p.slots[i]);
    free(p.dsend);
    free(p.dres);
  }
  snprintf(out + len, sizeof out - len, "]}");
  if (rank == 0) {
    puts(out);
    fflush(stdout);
  }
  MPI_Finalize();
  return 0;
}

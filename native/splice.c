// Joins pairs of TCP sockets inside the kernel with splice(2), the way HAProxy does:
// socket → pipe → socket, page references instead of two copies through user space.
// One epoll thread serves every pair; JS hands a pair over (add), may take it back
// (stop, before it closes a socket), and hears once when a pair is done (both
// directions ended, or one side failed).
//
// Why not an eBPF sockmap: on this kernel (6.18) a sockmap redirect to egress queues
// skbs on the target's psock without any limit; measured: a receiver that paused 4 s
// left 2 GiB of kernel memory queued behind it. splice through a pipe is bounded by the
// pipe (64 KiB) and the sockets' own buffers, so TCP flow control reaches the sender.
//
// Semantics match the JS splice (src/core/stream.ts): a FIN goes on as a FIN (shutdown
// of the write side) once everything before it is out; a reset or any error on one side
// ends the pair, and the other socket is set to reset when JS closes it (SO_LINGER 0).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

#define PIPE_BYTES (64 * 1024)
#define POOL_MAX 256       // idle pipes kept for reuse (2 fds each)
#define PASSES_MAX 16      // splices per direction per wake-up: fairness between pairs

typedef struct {
  int src, dst;            // fds, not owned (JS owns the sockets)
  int pr, pw;              // pipe, -1 while idle
  size_t inpipe;
  uint64_t moved;
  bool eof, done, wantw;
} dir_t;

typedef struct {
  uint32_t gen;            // bumped on free: epoll data carries (slot, gen)
  bool used;
  int fd[2];
  dir_t d[2];              // d[0]: fd[0] → fd[1]; d[1]: fd[1] → fd[0]
  uint32_t ev[2];          // current epoll interest per fd
  bool gone[2];            // fd taken out of epoll (hung up, nothing more to write to it)
  int err;                 // errno of the failure, 0 when ended cleanly
  int errside;             // which fd failed (0/1), -1 when none
  uint32_t jsid;           // the caller's name for the pair, given back when it is done
  struct done *done;       // allocated by add: finishing never fails for want of memory
} pair_t;

typedef struct done { uint32_t jsid; uint64_t a2b, b2a; int err, errside; } done_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pair_t *pairs;
static uint32_t npairs, live;
static int epfd = -1;
static bool thread_started;
static int pool[POOL_MAX][2];
static int npool;
static napi_threadsafe_function tsfn;

static int pipe_get (int *pr, int *pw) {
  if (npool > 0) { npool--; *pr = pool[npool][0]; *pw = pool[npool][1]; return 0; }
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
  // The default size is 64 KiB already on Linux; ask anyway so a changed default cannot shrink it.
  fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES);
  *pr = p[0]; *pw = p[1];
  return 0;
}

// Only empty pipes go back to the pool; one holding bytes of a dead pair is closed.
static void pipe_put (dir_t *d) {
  if (d->pr < 0) return;
  if (d->inpipe == 0 && npool < POOL_MAX) { pool[npool][0] = d->pr; pool[npool][1] = d->pw; npool++; }
  else { close(d->pr); close(d->pw); }
  d->pr = d->pw = -1;
  d->inpipe = 0;
}

// After a FIN the socket is in CLOSE_WAIT and keeps its peer; after a reset it has none.
static bool was_reset (int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  return getpeername(fd, (struct sockaddr *)&ss, &len) != 0;
}

// Moves what it can; returns 0, or an errno that ends the pair (*side: the fd at fault).
// `fin_out`: our own FIN already went to the source, so an end of stream there can no
// longer be told from a reset (both leave the socket without a peer): it counts as clean.
static int pump (dir_t *d, int srcside, bool fin_out, int *side) {
  for (int pass = 0; pass < PASSES_MAX; pass++) {
    if (d->inpipe > 0) {
      ssize_t m = splice(d->pr, NULL, d->dst, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) { d->inpipe -= (size_t)m; d->moved += (uint64_t)m; if (d->inpipe > 0) continue; }
      else if (m < 0 && errno == EAGAIN) { d->wantw = true; return 0; }
      else { *side = 1 - srcside; return m < 0 ? errno : EPIPE; }
    }
    d->wantw = false;
    if (d->pr < 0 && pipe_get(&d->pr, &d->pw) != 0) { *side = srcside; return errno; }
    ssize_t n = splice(d->src, NULL, d->pw, NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) { d->inpipe += (size_t)n; continue; }
    if (n == 0) {
      if (!fin_out && was_reset(d->src)) { *side = srcside; return ECONNRESET; }
      // The pipe is empty here (reads happen only then): the FIN goes on at once.
      d->eof = d->done = true;
      pipe_put(d);
      shutdown(d->dst, SHUT_WR);
      return 0;
    }
    if (errno == EAGAIN) {
      // splice stops at TCP's urgent mark and keeps failing there while the socket stays
      // readable: step over the urgent byte as a plain read does (Node's path drops it too).
      int atmark = 0;
      char c;
      if (ioctl(d->src, SIOCATMARK, &atmark) == 0 && atmark && recv(d->src, &c, 1, MSG_DONTWAIT) == 1 && write(d->pw, &c, 1) == 1) {
        d->inpipe += 1;
        continue;
      }
      if (d->inpipe == 0) pipe_put(d);
      return 0;
    }
    *side = srcside;
    return errno;
  }
  // More to do: ask to be woken when the destination is writable (at once, usually), so
  // the rest moves on the next turn whatever the source's own events are.
  d->wantw = true;
  return 0;
}

static uint64_t tag (uint32_t slot, uint32_t gen, int side) {
  return ((uint64_t)gen << 32) | ((uint64_t)slot << 1) | (uint64_t)side;
}

static void set_interest (pair_t *p, uint32_t slot) {
  for (int i = 0; i < 2; i++) {
    if (p->gone[i]) continue;
    const dir_t *rd = &p->d[i], *wd = &p->d[1 - i];
    uint32_t ev = 0;
    if (!rd->eof && !rd->wantw) ev |= EPOLLIN;
    if (wd->wantw) ev |= EPOLLOUT;
    if (ev == p->ev[i]) continue;
    struct epoll_event e = { .events = ev, .data.u64 = tag(slot, p->gen, i) };
    epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd[i], &e);
    p->ev[i] = ev;
  }
}

static void release (pair_t *p) {
  if (!p->gone[0]) epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd[0], NULL);
  if (!p->gone[1]) epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd[1], NULL);
  pipe_put(&p->d[0]);
  pipe_put(&p->d[1]);
  free(p->done);
  p->done = NULL;
  p->used = false;
  p->gen++;
  live--;
}

static void set_linger0 (int fd) {
  struct linger l = { .l_onoff = 1, .l_linger = 0 };
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

static void *loop (void *arg) {
  (void)arg;
  // Signals (SIGPIPE from a splice into a reset socket among them) belong to Node's thread.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(epfd, evs, 64, -1);
    if (n < 0) { if (errno == EINTR) continue; return NULL; }
    pthread_mutex_lock(&lock);
    for (int k = 0; k < n; k++) {
      uint64_t t = evs[k].data.u64;
      uint32_t slot = (uint32_t)(t & 0xffffffffu) >> 1, gen = (uint32_t)(t >> 32);
      if (slot >= npairs) continue;
      pair_t *p = &pairs[slot];
      if (!p->used || p->gen != gen) continue;  // stopped or reused since epoll_wait returned
      int side = -1, err = 0, at = (int)(t & 1);
      uint32_t ev = evs[k].events;
      // Only the directions this event can move: readable fd → the one reading it,
      // writable fd → the one writing it (an idle reverse direction costs no syscall).
      bool any = (ev & (EPOLLERR | EPOLLHUP)) != 0;
      bool run[2] = { false, false };
      run[at] = any || (ev & EPOLLIN) != 0;
      run[1 - at] = any || (ev & EPOLLOUT) != 0;
      for (int i = 0; i < 2 && err == 0; i++) if (run[i] && !p->d[i].done) err = pump(&p->d[i], i, p->d[1 - i].done, &side);
      // An error or hang-up is reported whatever the interest, and again at every wait:
      // settle it now. A hang-up while we still owe that side bytes or a FIN is a reset
      // (an orderly close needs our FIN first).
      if (err == 0 && any) {
        int se = 0;
        socklen_t sl = sizeof se;
        getsockopt(p->fd[at], SOL_SOCKET, SO_ERROR, &se, &sl);
        if (se != 0) { err = se; side = at; }
        else if ((ev & EPOLLHUP) != 0 && !p->d[1 - at].done) { err = ECONNRESET; side = at; }
        else if ((ev & EPOLLHUP) != 0 && !p->d[at].done) {
          // Orderly hang-up (both FINs crossed) while bytes from it still wait for the other
          // side: a level-triggered HUP would wake us at every wait until then. Stop polling
          // it; the rest moves whenever the other side is writable.
          epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd[at], NULL);
          p->gone[at] = true;
          p->d[at].wantw = true;
        }
      }
      if (err == 0 && !(p->d[0].done && p->d[1].done)) { set_interest(p, slot); continue; }
      // The pair is over: a failed side makes the other reset when JS closes it.
      if (err != 0) { set_linger0(p->fd[0]); set_linger0(p->fd[1]); }
      done_t *r = p->done;
      *r = (done_t){ p->jsid, p->d[0].moved, p->d[1].moved, err, err != 0 ? side : -1 };
      p->done = NULL;
      release(p);
      if (napi_call_threadsafe_function(tsfn, r, napi_tsfn_nonblocking) != napi_ok) free(r);
    }
    pthread_mutex_unlock(&lock);
  }
}

// ---- JS side ---------------------------------------------------------------------------
// Errors carry BECKON_ERR_INTERNAL (src/core/errors.ts): the caller falls back to the JS loop.

static napi_value throw_errno (napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, "BECKON_ERR_INTERNAL", msg);
  return NULL;
}

// Runs on the JS thread for each finished pair: cb(id, aToB, bToA, errno, errside).
static void call_js (napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  done_t *r = data;
  if (env != NULL) {
    napi_value argv[5], undef;
    napi_create_uint32(env, r->jsid, &argv[0]);
    napi_create_double(env, (double)r->a2b, &argv[1]);
    napi_create_double(env, (double)r->b2a, &argv[2]);
    napi_create_int32(env, r->err, &argv[3]);
    napi_create_int32(env, r->errside, &argv[4]);
    napi_get_undefined(env, &undef);
    pthread_mutex_lock(&lock);
    bool idle = live == 0;
    pthread_mutex_unlock(&lock);
    if (idle) napi_unref_threadsafe_function(env, tsfn);
    napi_call_function(env, undef, cb, 5, argv, NULL);
  }
  free(r);
}

static bool get_fd (napi_env env, napi_value v, int *fd) {
  int32_t x;
  if (napi_get_value_int32(env, v, &x) != napi_ok || x < 0) return false;
  *fd = x;
  return true;
}

// init(onDone): once, before add.
static napi_value js_init (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (epfd >= 0) { napi_throw_error(env, "BECKON_ERR_INTERNAL", "kernel splice: init called twice"); return NULL; }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return throw_errno(env, "epoll_create1", errno);
  napi_create_string_utf8(env, "beckon-splice", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &tsfn) != napi_ok) {
    napi_throw_error(env, "BECKON_ERR_INTERNAL", "kernel splice: cannot create the completion queue");
    return NULL;
  }
  napi_unref_threadsafe_function(env, tsfn);
  return NULL;
}

// Handles name (slot, generation): a stale handle never reaches a reused slot.
// 21 bits of generation: gen * 2^32 + slot stays an exact integer in a JS number.
#define HANDLE_GEN_MASK 0x1fffffu
static double handle_of (uint32_t slot, uint32_t gen) { return (double)(gen & HANDLE_GEN_MASK) * 4294967296.0 + (double)slot; }

// add(fdA, fdB, jsid) → handle. The sockets must be non-blocking, with nothing left in user-space
// buffers: from here on, the kernel moves every byte.
static napi_value js_add (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  int fa, fb;
  uint32_t jsid;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (epfd < 0) { napi_throw_error(env, "BECKON_ERR_INTERNAL", "kernel splice: not initialised"); return NULL; }
  if (argc < 3 || !get_fd(env, argv[0], &fa) || !get_fd(env, argv[1], &fb) || fa == fb ||
      napi_get_value_uint32(env, argv[2], &jsid) != napi_ok) {
    napi_throw_type_error(env, "BECKON_ERR_INTERNAL", "kernel splice: add(fdA, fdB, id) takes two distinct fds and an id");
    return NULL;
  }
  pthread_mutex_lock(&lock);
  uint32_t slot = 0;
  while (slot < npairs && pairs[slot].used) slot++;
  if (slot == npairs) {
    uint32_t grow = npairs == 0 ? 64 : npairs * 2;
    pair_t *np = realloc(pairs, grow * sizeof *np);
    if (np == NULL) { pthread_mutex_unlock(&lock); return throw_errno(env, "kernel splice", ENOMEM); }
    memset(np + npairs, 0, (grow - npairs) * sizeof *np);
    pairs = np;
    npairs = grow;
  }
  pair_t *p = &pairs[slot];
  uint32_t gen = p->gen;
  done_t *done = malloc(sizeof *done);
  if (done == NULL) { pthread_mutex_unlock(&lock); return throw_errno(env, "kernel splice", ENOMEM); }
  *p = (pair_t){ .gen = gen, .used = true, .fd = { fa, fb }, .errside = -1, .jsid = jsid, .done = done };
  p->d[0] = (dir_t){ .src = fa, .dst = fb, .pr = -1, .pw = -1 };
  p->d[1] = (dir_t){ .src = fb, .dst = fa, .pr = -1, .pw = -1 };
  for (int i = 0; i < 2; i++) {
    struct epoll_event e = { .events = EPOLLIN, .data.u64 = tag(slot, gen, i) };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fd[i], &e) != 0) {
      int err = errno;
      if (i == 1) epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd[0], NULL);
      free(p->done);
      p->done = NULL;
      p->used = false;
      p->gen++;  // an event fd[0] already raised must not reach the slot's next pair
      pthread_mutex_unlock(&lock);
      return throw_errno(env, "kernel splice: epoll_ctl", err);
    }
    p->ev[i] = EPOLLIN;
  }
  if (live++ == 0) napi_ref_threadsafe_function(env, tsfn);
  if (!thread_started) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, loop, NULL) != 0) {
      release(p);
      if (live == 0) napi_unref_threadsafe_function(env, tsfn);
      pthread_mutex_unlock(&lock);
      return throw_errno(env, "kernel splice: thread", EAGAIN);
    }
    thread_started = true;
  }
  pthread_mutex_unlock(&lock);
  napi_create_double(env, handle_of(slot, gen), &out);
  return out;
}

// stop(handle) → [aToB, bToA] or null when the pair is already over. Afterwards the
// thread never touches the fds again, so JS may close them.
static napi_value js_stop (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  double h;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_null(env, &out);
  if (argc < 1 || napi_get_value_double(env, argv[0], &h) != napi_ok || !(h >= 0)) return out;
  uint32_t slot = (uint32_t)((uint64_t)h & 0xffffffffu), gen = (uint32_t)((uint64_t)h >> 32);
  pthread_mutex_lock(&lock);
  if (slot < npairs && pairs[slot].used && (pairs[slot].gen & HANDLE_GEN_MASK) == gen) {
    pair_t *p = &pairs[slot];
    napi_create_array_with_length(env, 2, &out);
    napi_create_double(env, (double)p->d[0].moved, &v); napi_set_element(env, out, 0, v);
    napi_create_double(env, (double)p->d[1].moved, &v); napi_set_element(env, out, 1, v);
    release(p);
    if (live == 0) napi_unref_threadsafe_function(env, tsfn);
  }
  pthread_mutex_unlock(&lock);
  return out;
}

// stats() → { live, pooledPipes }: for tests and metrics.
static napi_value js_stats (napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out, v;
  napi_create_object(env, &out);
  pthread_mutex_lock(&lock);
  napi_create_uint32(env, live, &v); napi_set_named_property(env, out, "live", v);
  napi_create_uint32(env, (uint32_t)npool, &v); napi_set_named_property(env, out, "pooledPipes", v);
  pthread_mutex_unlock(&lock);
  return out;
}

static napi_value init (napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL },
    { "add", NULL, js_add, NULL, NULL, NULL, napi_default, NULL },
    { "stop", NULL, js_stop, NULL, NULL, NULL, napi_default, NULL },
    { "stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

// bench/sockmap-probe: does an eBPF sockmap redirect (the other in-kernel way to join two
// TCP sockets) hold a fast sender back when the receiver stops reading?
//
//   sender ──► [A | hop | U] ──► receiver (never reads)
//
// A and U are joined by a SOCKHASH with an SK_SKB verdict program (bpf_sk_redirect_hash
// keyed by the socket cookie: A's data goes out of U and back). The sender writes for at
// most 3 s or 1 GiB; with flow control it stalls after a few MiB (socket buffers), without
// it the kernel queues everything it is given. Prints what the sender got out and how much
// MemAvailable fell. Needs root (CAP_BPF, CAP_NET_ADMIN); loopback only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long bpf (int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

static long mem_available_kib (void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  long v = -1;
  while (f != NULL && fgets(line, sizeof line, f) != NULL) if (sscanf(line, "MemAvailable: %ld kB", &v) == 1) break;
  if (f != NULL) fclose(f);
  return v;
}

static double now (void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int listener (struct sockaddr_in *sa) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  socklen_t l = sizeof *sa;
  sa->sin_family = AF_INET; sa->sin_port = 0; sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)sa, sizeof *sa) || listen(s, 4) || getsockname(s, (struct sockaddr *)sa, &l)) { perror("listen"); exit(2); }
  return s;
}

static int dial (const struct sockaddr_in *sa) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, (const struct sockaddr *)sa, sizeof *sa)) { perror("connect"); exit(2); }
  return s;
}

static void put (int map, uint64_t key, int fd) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = map; a.key = (uint64_t)(uintptr_t)&key; a.value = (uint64_t)(uintptr_t)&fd; a.flags = BPF_ANY;
  if (bpf(BPF_MAP_UPDATE_ELEM, &a)) { perror("map update"); exit(2); }
}

int main (void) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_SOCKHASH; a.key_size = 8; a.value_size = 4; a.max_entries = 16;
  int map = bpf(BPF_MAP_CREATE, &a);
  if (map < 0) { printf("sockmap-probe: cannot create a SOCKHASH: %s (no BPF here: nothing to measure)\n", strerror(errno)); return 0; }
  // r0 = redirect(skb, map, &cookie(skb), 0): every byte A (or U) receives leaves by its partner.
  struct bpf_insn prog[] = {
    { .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 6, .src_reg = 1 },
    { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_get_socket_cookie },
    { .code = BPF_STX | BPF_MEM | BPF_DW, .dst_reg = 10, .src_reg = 0, .off = -8 },
    { .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 1, .src_reg = 6 },
    { .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = 2, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map },
    { 0 },
    { .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 3, .src_reg = 10 },
    { .code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = 3, .imm = -8 },
    { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 4, .imm = 0 },
    { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_sk_redirect_hash },
    { .code = BPF_JMP | BPF_EXIT },
  };
  static char log[65536];
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SK_SKB; a.insns = (uint64_t)(uintptr_t)prog; a.insn_cnt = sizeof prog / sizeof prog[0];
  a.license = (uint64_t)(uintptr_t)"GPL"; a.log_buf = (uint64_t)(uintptr_t)log; a.log_size = sizeof log; a.log_level = 1;
  int pfd = bpf(BPF_PROG_LOAD, &a);
  if (pfd < 0) { printf("sockmap-probe: program refused: %s\n%s", strerror(errno), log); return 1; }
  memset(&a, 0, sizeof a);
  a.target_fd = map; a.attach_bpf_fd = pfd; a.attach_type = BPF_SK_SKB_VERDICT;
  if (bpf(BPF_PROG_ATTACH, &a)) { perror("attach"); return 1; }

  struct sockaddr_in front, back;
  int lf = listener(&front), lb = listener(&back);
  int sender = dial(&front), A = accept(lf, NULL, NULL);
  int U = dial(&back), receiver = accept(lb, NULL, NULL);
  uint64_t ca, cu;
  socklen_t l = sizeof ca;
  getsockopt(A, SOL_SOCKET, SO_COOKIE, &ca, &l);
  getsockopt(U, SOL_SOCKET, SO_COOKIE, &cu, &l);
  put(map, ca, U);
  put(map, cu, A);

  fcntl(sender, F_SETFL, O_NONBLOCK);
  static char buf[1 << 16];
  long m0 = mem_available_kib();
  uint64_t sent = 0;
  double t0 = now(), stalled_since = 0;
  while (now() - t0 < 3.0 && sent < (1ull << 30)) {
    ssize_t n = write(sender, buf, sizeof buf);
    if (n > 0) { sent += (uint64_t)n; stalled_since = 0; continue; }
    if (stalled_since == 0) stalled_since = now();
    if (now() - stalled_since > 0.5) break;   // held back for 0.5 s: flow control works
    usleep(1000);
  }
  long m1 = mem_available_kib();
  printf("sockmap-probe: kernel redirect A→U with a receiver that never reads\n");
  printf("  sender wrote %.1f MiB in %.2f s before it was held back or the probe stopped\n", sent / 1048576.0, now() - t0);
  printf("  MemAvailable fell by %.1f MiB\n", (m0 - m1) / 1024.0);
  printf("  %s\n", sent > (64ull << 20) ? "UNBOUNDED: the kernel queued what the receiver never read (no flow control)" : "bounded: the sender was held back");
  close(sender); close(A); close(U); close(receiver); close(lf); close(lb); close(map); close(pfd);
  return 0;
}

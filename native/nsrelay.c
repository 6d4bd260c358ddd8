/*
 * nsrelay: envbox's fast path into a local guest's network namespace.
 *
 * Node can neither enter a network namespace nor receive file descriptors, so the agent runs
 * this relay instead of going through SSH (encryption caps that at ~350 MiB/s and Nagle adds
 * 44 ms per connection). It binds a unix socket in the host's mount namespace, then enters the
 * guest's network namespace (only that one: the socket path stays reachable from the host),
 * and opens TCP connections and connected UDP sockets there on request.
 *
 *   nsrelay (--pid PID | --netns PATH) --socket PATH [--userns PATH]
 *           [--connect-timeout-ms N] [--header-timeout-ms N]
 *
 * --pid follows the guest: the relay exits (status 3) when that process exits. --userns is
 * entered first only when joining the network namespace alone is not permitted (a non-root
 * user owning the guest's user namespace). Prints "READY 1" on stdout once it serves; exits
 * when stdin reaches EOF, on SIGTERM/SIGINT/SIGHUP, or when its parent dies (status 0), and
 * removes its socket. Setup failures print "nsrelay: ..." on stderr and exit 1 (usage: 2).
 *
 * Wire protocol, per connection on the unix socket (protocol 1):
 *   client -> "TCP <host> <port>[ <timeout-ms>]\n"  or  "UDP <host> <port>\n"  (<= 255 bytes)
 *       host: an IPv4 or IPv6 literal (optionally [bracketed], IPv6 may carry %scope), or
 *       "localhost" (127.0.0.1, then ::1). Names are never resolved here: the host's resolver
 *       is the wrong one, the caller resolves inside the guest.
 *   relay  -> "OK\n"  or  "ERR <CODE> <text>\n" and close. CODE is an errno name
 *       (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT, ...) or BADREQ (malformed
 *       request) or NOTLITERAL (host is not an IP literal).
 *   TCP: then raw bytes both ways; EOF on one side becomes shutdown(SHUT_WR) on the other.
 *   UDP: then datagrams both ways, each framed as a 2-byte big-endian length + payload.
 *
 * Started by Node with an IPC channel (NODE_CHANNEL_FD), it serves the agent's host ports
 * entirely, SOCKS5 handshake included: the agent hands over each listening socket once and the
 * relay's threads accept on it (see "listeners handed over"), so a connect costs no hop through the
 * agent's event loop, no IPC message and no thread start. Single accepted connections can be handed
 * over too (see "connections handed over"), for the moments the agent accepts itself.
 *
 * Threads wait in accept() (or epoll, for a handed-over listener) and serve what they take (a few
 * stay parked between connections), both directions of a TCP connection on the one thread. Bytes
 * move with splice(2) through 1 MiB pipes (small buffers cap a relay at ~480 MiB/s, 1 MiB reaches
 * ~3 GiB/s); where splicing can't be done, a parked pump thread per direction copies instead.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEADER_MAX 255
#define PIPE_BYTES (1 << 20)
#define COPY_BYTES (256 << 10)
#define DGRAM_MAX 65535
#define THREAD_STACK (256 << 10)
#define IDLE_MAX 4

static const char *socket_path;
static int connect_timeout_ms = 10000;
static int header_timeout_ms = 10000;
static int check_peers = 1;
static int listen_fd = -1;
static atomic_int idle_acceptors;

/* ---- small helpers ---- */

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_recv_timeout(int fd, int ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* Closing a unix socket with unread input resets it, and the client would never read the
 * error line: so send it, half-close, and swallow input until the client closes (bounded). */
static void reply_error(int fd, const char *code, const char *text) {
    char line[HEADER_MAX + 1];
    int n = snprintf(line, sizeof line, "ERR %s %s\n", code, text);
    if (n <= 0 || n >= (int)sizeof line || write_all(fd, line, (size_t)n) < 0) return;
    shutdown(fd, SHUT_WR);
    set_recv_timeout(fd, 1000);
    char sink[4096];
    for (size_t total = 0; total < (1u << 20);) {
        ssize_t got = recv(fd, sink, sizeof sink, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        total += (size_t)got;
    }
}

static void reply_errno(int fd, int err) {
    const char *name = strerrorname_np(err);
    char code[32];
    if (!name) {
        snprintf(code, sizeof code, "E%d", err);
        name = code;
    }
    const char *text = strerrordesc_np(err); /* strerror() is not thread-safe */
    reply_error(fd, name, text ? text : "unknown error");
}

/* ---- the request line ---- */

enum proto { PROTO_TCP, PROTO_UDP };

struct request {
    enum proto proto;
    const char *host;
    int port;
    int timeout_ms;
};

/* Reads one "\n"-terminated line without consuming anything behind it (early payload). */
static int read_header(int fd, char *buf, size_t cap) {
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len, MSG_PEEK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        char *nl = memchr(buf + len, '\n', (size_t)n);
        size_t take = nl ? (size_t)(nl - (buf + len)) + 1 : (size_t)n;
        for (size_t got = 0; got < take;) {
            ssize_t m = recv(fd, buf + len + got, take - got, 0);
            if (m < 0 && errno == EINTR) continue;
            if (m <= 0) return -1;
            got += (size_t)m;
        }
        len += take;
        if (nl) {
            buf[len - 1] = '\0';
            return 0;
        }
        if (len == cap) {
            errno = EMSGSIZE;
            return -1;
        }
    }
}

static int parse_number(const char *s, int min, int max) {
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0') || strlen(s) > 10) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= min && v <= max ? (int)v : -1;
}

/* "TCP <host> <port>[ <timeout-ms>]" | "UDP <host> <port>", single spaces, printable ASCII. */
static int parse_request(char *line, struct request *req) {
    char *fields[5];
    int count = 0;
    for (char *p = line;; p++) {
        if (*p != '\0' && (*p < 0x21 || *p > 0x7e) && *p != ' ') return -1;
        if (p == line || p[-1] == '\0') {
            if (count == 5 || *p == ' ' || *p == '\0') return -1;
            fields[count++] = p;
        }
        if (*p == '\0') break;
        if (*p == ' ') *p = '\0';
    }
    if (count < 3) return -1;
    if (strcmp(fields[0], "TCP") == 0 && count <= 4) req->proto = PROTO_TCP;
    else if (strcmp(fields[0], "UDP") == 0 && count == 3) req->proto = PROTO_UDP;
    else return -1;
    req->host = fields[1];
    req->port = parse_number(fields[2], 1, 65535);
    req->timeout_ms = count == 4 ? parse_number(fields[3], 1, 600000) : connect_timeout_ms;
    return req->port < 0 || req->timeout_ms < 0 ? -1 : 0;
}

#define TARGET_MAX 8

struct target {
    struct sockaddr_storage addr[TARGET_MAX];
    socklen_t len[TARGET_MAX];
    int count;
};

static void add_v4(struct target *t, const struct in_addr *a, int port) {
    if (t->count == TARGET_MAX) return;
    struct sockaddr_in *sin = (struct sockaddr_in *)&t->addr[t->count];
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr = *a;
    t->len[t->count++] = sizeof *sin;
}

static void add_v6(struct target *t, const struct in6_addr *a, uint32_t scope, int port) {
    if (t->count == TARGET_MAX) return;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->addr[t->count];
    memset(sin6, 0, sizeof *sin6);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    sin6->sin6_addr = *a;
    sin6->sin6_scope_id = scope;
    t->len[t->count++] = sizeof *sin6;
}

static int add_target(const char *host, int port, struct target *t);

/* Runs in the guest's namespace, so a %scope names one of the guest's interfaces. */
static int parse_target(const char *host, int port, struct target *t) {
    t->count = 0;
    return add_target(host, port, t);
}

/* Appends host's address(es) to t. */
static int add_target(const char *host, int port, struct target *t) {
    char buf[HEADER_MAX + 1];
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0) {
        inet_pton(AF_INET, "127.0.0.1", &a4);
        add_v4(t, &a4, port);
        add_v6(t, &in6addr_loopback, 0, port);
        return 0;
    }
    size_t len = strlen(host);
    if (len >= sizeof buf) return -1;
    if (host[0] == '[' && len > 2 && host[len - 1] == ']') {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, host, len + 1);
        if (inet_pton(AF_INET, buf, &a4) == 1) {
            add_v4(t, &a4, port);
            return 0;
        }
    }
    uint32_t scope = 0;
    char *pct = strchr(buf, '%');
    if (pct) {
        *pct++ = '\0';
        int n = parse_number(pct, 0, INT_MAX);
        scope = n >= 0 ? (uint32_t)n : if_nametoindex(pct);
        if (scope == 0 && n != 0) return -1;
    }
    if (inet_pton(AF_INET6, buf, &a6) != 1) return -1;
    add_v6(t, &a6, scope, port);
    return 0;
}

/* ---- connecting inside the guest ---- */

/* Returns a connected blocking socket, or -errno. -ECANCELED: the client left while waiting. */
static int dial_one(int client, const struct sockaddr *addr, socklen_t len, int type, long long deadline) {
    int fd = socket(addr->sa_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    if (type == SOCK_STREAM) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    int err = 0;
    if (connect(fd, addr, len) < 0) err = errno;
    while (err == EINPROGRESS || err == EINTR) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            err = ETIMEDOUT;
            break;
        }
        /* POLLHUP on a unix socket means the client closed; a mere half-close (FIN after the
         * request) is a client still waiting for its answer. */
        struct pollfd pfd[2] = {{.fd = fd, .events = POLLOUT}, {.fd = client, .events = 0}};
        int n = poll(pfd, 2, (int)left);
        if (n < 0 && errno != EINTR) {
            err = errno;
            break;
        }
        if (n <= 0) continue;
        if (pfd[1].revents & (POLLHUP | POLLERR)) {
            err = ECANCELED;
            break;
        }
        if (pfd[0].revents) {
            socklen_t elen = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) err = errno;
        }
    }
    if (err) {
        close(fd);
        return -err;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

static int dial(int client, const struct target *t, int type, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    int first = 0;
    for (int i = 0; i < t->count; i++) {
        int fd = dial_one(client, (const struct sockaddr *)&t->addr[i], t->len[i], type, deadline);
        if (fd >= 0 || fd == -ECANCELED || fd == -ETIMEDOUT) return fd;
        if (!first) first = fd;
        if (fd != -ECONNREFUSED && fd != -EHOSTUNREACH && fd != -ENETUNREACH && fd != -EADDRNOTAVAIL && fd != -EAFNOSUPPORT) return first;
    }
    return first;
}

/* ---- moving bytes ---- */

struct pump {
    int in, out;
    unsigned long long moved;
};

static void abort_both(const struct pump *p) {
    shutdown(p->in, SHUT_RDWR);
    shutdown(p->out, SHUT_RDWR);
}

static void copy_fallback(struct pump *p) {
    char *buf = malloc(COPY_BYTES);
    if (!buf) return abort_both(p);
    for (;;) {
        ssize_t n = recv(p->in, buf, COPY_BYTES, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (n > 0 && write_all(p->out, buf, (size_t)n) < 0)) {
            abort_both(p);
            break;
        }
        p->moved += (unsigned long long)n;
        if (n == 0) {
            shutdown(p->out, SHUT_WR);
            break;
        }
    }
    free(buf);
}

/* One direction: in -> pipe -> out until EOF (then half-close out) or an error (then both go). */
static void *pump_run(void *arg) {
    struct pump *p = arg;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        copy_fallback(p);
        return NULL;
    }
    /* A user over its pipe quota (fs.pipe-user-pages-soft) gets tiny pipes: copy instead. */
    int size = fcntl(pipefd[1], F_SETPIPE_SZ, PIPE_BYTES);
    if (size < 0) size = fcntl(pipefd[1], F_GETPIPE_SZ);
    if (size < COPY_BYTES) {
        close(pipefd[0]);
        close(pipefd[1]);
        copy_fallback(p);
        return NULL;
    }
    int moved = 0;
    for (;;) {
        ssize_t n = splice(p->in, NULL, pipefd[1], NULL, (size_t)size, SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EINVAL && !moved) {
            copy_fallback(p);
            break;
        }
        if (n < 0) {
            abort_both(p);
            break;
        }
        if (n == 0) {
            shutdown(p->out, SHUT_WR);
            break;
        }
        moved = 1;
        while (n > 0) {
            ssize_t m = splice(pipefd[0], NULL, p->out, NULL, (size_t)n, SPLICE_F_MOVE);
            if (m < 0 && errno == EINTR) continue;
            if (m <= 0) break;
            n -= m;
            p->moved += (unsigned long long)m;
        }
        if (n > 0) {
            abort_both(p);
            break;
        }
    }
    close(pipefd[0]);
    close(pipefd[1]);
    return NULL;
}

/* Where a connection's bytes are copied (no splice), each direction runs on a pump thread. Starting
 * a thread costs more than the rest of a short connection, so up to PUMP_IDLE_MAX of them wait. The
 * connection's own thread hands the job over, waits for it to finish and parks the worker again;
 * a worker never touches the pool itself, so nothing frees it while the other side still looks. */
#define PUMP_IDLE_MAX 4

struct pump_worker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pump *job; /* NULL: waiting; &pump_exit: leave */
    int done;
    struct pump_worker *next;
};

static struct pump pump_exit;
static struct pump_worker *idle_pumps;
static int idle_pump_count;
static pthread_mutex_t pumps_lock = PTHREAD_MUTEX_INITIALIZER;

static void *pump_worker_run(void *arg) {
    struct pump_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->job) pthread_cond_wait(&w->cond, &w->lock);
        if (w->job == &pump_exit) break;
        struct pump *p = w->job;
        pthread_mutex_unlock(&w->lock);
        pump_run(p);
        pthread_mutex_lock(&w->lock);
        w->job = NULL;
        w->done = 1;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return NULL;
}

static struct pump_worker *take_pump(void) {
    pthread_mutex_lock(&pumps_lock);
    struct pump_worker *w = idle_pumps;
    if (w) {
        idle_pumps = w->next;
        idle_pump_count--;
    }
    pthread_mutex_unlock(&pumps_lock);
    if (w) return w;
    w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attr, pump_worker_run, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    return w;
}

static void give_pump(struct pump_worker *w, struct pump *job) {
    pthread_mutex_lock(&w->lock);
    w->job = job;
    w->done = 0;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void park_pump(struct pump_worker *w) {
    pthread_mutex_lock(&pumps_lock);
    int keep = idle_pump_count < PUMP_IDLE_MAX;
    if (keep) {
        w->next = idle_pumps;
        idle_pumps = w;
        idle_pump_count++;
    }
    pthread_mutex_unlock(&pumps_lock);
    if (!keep) give_pump(w, &pump_exit);
}

/* Both directions of a connection on one thread: non-blocking splices, poll() when neither can
 * move. Most connections are short, and this way a connection costs its thread no wake-up of a
 * second one (or its start), which on a busy machine is what a connect waits behind. One direction
 * at full speed runs the same splices as a thread of its own would. */
struct way {
    int in, out, pipe[2];
    size_t held, cap; /* bytes in the pipe, and its size */
    int eof, done;
    unsigned long long moved;
};

static void close_pipe(struct way *w) {
    if (w->pipe[0] >= 0) close(w->pipe[0]);
    if (w->pipe[1] >= 0) close(w->pipe[1]);
}

static int open_pipe(struct way *w) {
    w->pipe[0] = w->pipe[1] = -1;
    if (pipe2(w->pipe, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    int size = fcntl(w->pipe[1], F_SETPIPE_SZ, PIPE_BYTES);
    if (size < 0) size = fcntl(w->pipe[1], F_GETPIPE_SZ);
    if (size < COPY_BYTES) return close_pipe(w), -1; /* over the pipe quota: the copying pumps do */
    w->cap = (size_t)size;
    return 0;
}

/* Moves what it can without blocking: 1 moved something, 0 nothing to do now, -1 the connection is
 * broken, -2 this socket can't splice (nothing moved yet: the pumps copy instead). */
static int way_step(struct way *w, int any_moved) {
    int progress = 0;
    while (w->held > 0) {
        ssize_t m = splice(w->pipe[0], NULL, w->out, NULL, w->held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m < 0 && errno == EINTR) continue;
        if (m < 0 && errno == EAGAIN) break;
        if (m <= 0) return -1;
        w->held -= (size_t)m;
        w->moved += (unsigned long long)m;
        progress = 1;
    }
    if (w->held == 0 && w->eof && !w->done) {
        shutdown(w->out, SHUT_WR);
        w->done = 1;
        progress = 1;
    }
    /* Read only into an empty pipe, as a blocking pump would: a pipe can run out of slots before
     * bytes, and a socket with data waiting would then wake poll() with nothing to do. */
    while (!w->eof && w->held == 0) {
        ssize_t n = splice(w->in, NULL, w->pipe[1], NULL, w->cap, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0 && errno == EINVAL && !any_moved && !progress) return -2;
        if (n < 0) return -1;
        if (n == 0) w->eof = 1;
        w->held += (size_t)n;
        progress = 1;
        break; /* send it on before reading more */
    }
    return progress;
}

static void relay_tcp_pumps(int client, int guest, unsigned long long *sent, unsigned long long *received);

/* Relays until both directions end; *sent counts client->guest bytes, *received guest->client. */
static void relay_tcp(int client, int guest, unsigned long long *sent, unsigned long long *received) {
    struct way up = {.in = client, .out = guest}, down = {.in = guest, .out = client};
    if (open_pipe(&up) < 0) return relay_tcp_pumps(client, guest, sent, received);
    if (open_pipe(&down) < 0) {
        close_pipe(&up);
        return relay_tcp_pumps(client, guest, sent, received);
    }
    int flags[2] = {fcntl(client, F_GETFL), fcntl(guest, F_GETFL)};
    fcntl(client, F_SETFL, flags[0] | O_NONBLOCK);
    fcntl(guest, F_SETFL, flags[1] | O_NONBLOCK);
    int broken = 0, unspliceable = 0;
    while (!(up.done && down.done)) {
        int a = way_step(&up, up.moved || down.moved), b = a < 0 ? 0 : way_step(&down, up.moved || down.moved);
        if (a == -2 || b == -2) {
            unspliceable = 1;
            break;
        }
        if (a < 0 || b < 0) {
            broken = 1;
            break;
        }
        if (a || b) continue;
        /* Nothing moved: wait for room or data. A socket nothing is wanted from is left out, or
         * a hang-up on it would wake this loop for ever. */
        short want[2] = {0, 0}; /* client, guest */
        if (!up.eof && up.held == 0) want[0] |= POLLIN;
        if (up.held > 0) want[1] |= POLLOUT;
        if (!down.eof && down.held == 0) want[1] |= POLLIN;
        if (down.held > 0) want[0] |= POLLOUT;
        struct pollfd pfd[2] = {{.fd = want[0] ? client : -1, .events = want[0]}, {.fd = want[1] ? guest : -1, .events = want[1]}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
            broken = 1;
            break;
        }
    }
    if (broken) {
        shutdown(client, SHUT_RDWR);
        shutdown(guest, SHUT_RDWR);
    }
    close_pipe(&up);
    close_pipe(&down);
    fcntl(client, F_SETFL, flags[0]);
    fcntl(guest, F_SETFL, flags[1]);
    if (unspliceable) return relay_tcp_pumps(client, guest, sent, received);
    if (sent) *sent = up.moved;
    if (received) *received = down.moved;
}

/* The same with a pump thread per direction, each blocking (and copying where splice can't). */
static void relay_tcp_pumps(int client, int guest, unsigned long long *sent, unsigned long long *received) {
    struct pump up = {.in = client, .out = guest}, down = {.in = guest, .out = client};
    struct pump_worker *w = take_pump();
    if (!w) return;
    give_pump(w, &down);
    pump_run(&up);
    pthread_mutex_lock(&w->lock);
    while (!w->done) pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    park_pump(w);
    if (sent) *sent = up.moved;
    if (received) *received = down.moved;
}

/* Datagrams from the client arrive framed on the stream; replies go back framed the same way. */
static void relay_udp(int client, int guest) {
    size_t cap = 2 * (DGRAM_MAX + 2);
    unsigned char *in = malloc(cap), *out = malloc(DGRAM_MAX + 2);
    size_t have = 0;
    while (in && out) {
        struct pollfd pfd[2] = {{.fd = client, .events = POLLIN}, {.fd = guest, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pfd[0].revents) {
            ssize_t n = recv(client, in + have, cap - have, MSG_DONTWAIT);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) break;
            have += (size_t)n;
            size_t at = 0;
            while (have - at >= 2) {
                size_t len = (size_t)in[at] << 8 | in[at + 1];
                if (have - at < 2 + len) break;
                /* A refused or unroutable datagram is lost, as UDP is; the channel stays. */
                send(guest, in + at + 2, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                at += 2 + len;
            }
            memmove(in, in + at, have - at);
            have -= at;
        }
        if (pfd[1].revents) {
            ssize_t n = recv(guest, out + 2, DGRAM_MAX, MSG_DONTWAIT);
            if (n < 0 && errno != EINTR && errno != EAGAIN && errno != ECONNREFUSED) break;
            if (n < 0) continue;
            out[0] = (unsigned char)(n >> 8);
            out[1] = (unsigned char)n;
            if (write_all(client, out, (size_t)n + 2) < 0) break;
        }
    }
    free(in);
    free(out);
}

static void serve(int client) {
    char line[HEADER_MAX + 1];
    struct request req;
    struct target target;
    set_recv_timeout(client, header_timeout_ms);
    if (read_header(client, line, sizeof line) < 0) {
        if (errno == EMSGSIZE) reply_error(client, "BADREQ", "request line longer than 255 bytes");
        else if (errno == EAGAIN || errno == EWOULDBLOCK) reply_error(client, "BADREQ", "no request line in time");
        goto done;
    }
    if (parse_request(line, &req) < 0) {
        reply_error(client, "BADREQ", "expected \"TCP|UDP <ip> <port>[ <timeout-ms>]\"");
        goto done;
    }
    set_recv_timeout(client, 0);
    if (parse_target(req.host, req.port, &target) < 0) {
        reply_error(client, "NOTLITERAL", "host must be an IP address or localhost");
        goto done;
    }
    int type = req.proto == PROTO_TCP ? SOCK_STREAM : SOCK_DGRAM;
    int guest = dial(client, &target, type, req.timeout_ms);
    if (guest < 0) {
        if (guest != -ECANCELED) reply_errno(client, -guest);
        goto done;
    }
    if (write_all(client, "OK\n", 3) == 0) {
        if (req.proto == PROTO_TCP) relay_tcp(client, guest, NULL, NULL);
        else relay_udp(client, guest);
    }
    close(guest);
done:
    close(client);
}

/* ---- connections handed over by the agent (its IPC channel) ----
 *
 * When the agent starts the relay with a Node IPC channel (NODE_CHANNEL_FD), it can pass an
 * accepted host connection itself (SCM_RIGHTS) instead of relaying its bytes: the relay then
 * connects inside the guest and splices, and the agent's process never touches the data.
 * Node's channel carries one JSON object per line; a handle travels with a line
 *   {"cmd":"NODE_HANDLE","type":"net.Native","msg":{"r":"<request>"}}
 * that must be answered with {"cmd":"NODE_HANDLE_ACK"} before Node sends the next one.
 * Requests (fields are IP literals, digits and hex, so they need no JSON escaping):
 *   FWD <id> <host> <port>                       a port forward: connect, then splice
 *   SOCKS <id> <envhex> <userhex|-> <passhex|-> a SOCKS5 client (RFC 1928/1929), handshake here
 *   CUT <id>                                      (no handle) end that connection now
 *   RESOLVED <l> <id> <ip>... | RESOLVED <l> <id> -   (no handle) the answer to a resolve event
 * Events to the agent:
 *   {"ev":"resolve","l":0,"id":N,"host":"NAME"}   a SOCKS name the guest must resolve
 *   {"ev":"end","id":N,"in":B,"out":B}            the connection is over (bytes each way)
 */
#define SOCKS_MAX_ACTIVE 512
#define HANDOFF_LINE_MAX 4096
#define FD_QUEUE_MAX 16

static int ipc_fd = -1;
static pthread_mutex_t ipc_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int socks_active;

static void ipc_send(const char *line, size_t len) {
    pthread_mutex_lock(&ipc_lock);
    write_all(ipc_fd, line, len);
    pthread_mutex_unlock(&ipc_lock);
}

static void report_end(unsigned long id, unsigned long long in, unsigned long long out) {
    char line[128];
    int n = snprintf(line, sizeof line, "{\"ev\":\"end\",\"id\":%lu,\"in\":%llu,\"out\":%llu}\n", id, in, out);
    ipc_send(line, (size_t)n);
}

/* Names waiting for the agent to resolve them inside the guest. */
struct lookup {
    unsigned long listener, id;
    int done;
    char answer[HANDOFF_LINE_MAX];
    pthread_cond_t cond;
    struct lookup *next;
};
static struct lookup *lookups;
static pthread_mutex_t lookup_lock = PTHREAD_MUTEX_INITIALIZER;

/* Asks the agent; fills *answer with "ip ip ..." (or "-") and returns 0, or -1 on timeout. */
static int resolve_via_agent(unsigned long listener, unsigned long id, const char *host, char *answer, size_t cap, long long deadline) {
    struct lookup l = {.listener = listener, .id = id};
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l.cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_lock(&lookup_lock);
    l.next = lookups;
    lookups = &l;
    pthread_mutex_unlock(&lookup_lock);
    char line[HEADER_MAX + 64];
    int n = snprintf(line, sizeof line, "{\"ev\":\"resolve\",\"l\":%lu,\"id\":%lu,\"host\":\"%s\"}\n", listener, id, host);
    ipc_send(line, (size_t)n);
    struct timespec until = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
    pthread_mutex_lock(&lookup_lock);
    while (!l.done && pthread_cond_timedwait(&l.cond, &lookup_lock, &until) != ETIMEDOUT) {
    }
    for (struct lookup **p = &lookups; *p; p = &(*p)->next) {
        if (*p == &l) {
            *p = l.next;
            break;
        }
    }
    pthread_mutex_unlock(&lookup_lock);
    pthread_cond_destroy(&l.cond);
    if (!l.done) return -1;
    snprintf(answer, cap, "%s", l.answer);
    return 0;
}

static void lookup_answered(unsigned long listener, unsigned long id, const char *answer) {
    pthread_mutex_lock(&lookup_lock);
    for (struct lookup *l = lookups; l; l = l->next) {
        if (l->listener == listener && l->id == id) {
            snprintf(l->answer, sizeof l->answer, "%s", answer);
            l->done = 1;
            pthread_cond_signal(&l->cond);
        }
    }
    pthread_mutex_unlock(&lookup_lock);
}

/* Reads exactly len bytes before the deadline: 0, or -1 (closed, error, too slow). The bytes are
 * usually there already (a client sends its request right behind the greeting's answer), so it
 * reads first and waits only when there is nothing. */
static int recv_exact(int fd, unsigned char *buf, size_t len, long long deadline) {
    for (size_t got = 0; got < len;) {
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EINTR && errno != EAGAIN)) return -1;
        long long left = deadline - now_ms();
        if (left <= 0) return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno != EINTR) return -1;
        if (r == 0) return -1;
    }
    return 0;
}

/* A refusal the client gets to read: the reply, a FIN, and its input drained until it closes
 * (so our close does not turn into a reset that discards the reply), for at most 2 s. */
static void refuse(int fd, const unsigned char *reply, size_t len) {
    if (write_all(fd, reply, len) < 0) return;
    shutdown(fd, SHUT_WR);
    long long deadline = now_ms() + 2000;
    unsigned char sink[4096];
    for (size_t total = 0; total < (1u << 20);) {
        long long left = deadline - now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) break;
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) break;
        total += (size_t)n;
    }
}

/* The client learns at once that nothing is there: a reset, not a FIN. */
static void reset_close(int fd) {
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){.l_onoff = 1, .l_linger = 0}, sizeof(struct linger));
    close(fd);
}

static int socks_reply_for(int err) {
    switch (err) {
    case ECONNREFUSED: return 0x05;
    case EHOSTUNREACH:
    case EHOSTDOWN: return 0x04;
    case ENETUNREACH:
    case ENETDOWN:
    case EADDRNOTAVAIL: return 0x03;
    case ETIMEDOUT: return 0x06;
    default: return 0x01;
    }
}

static void socks_refuse(int fd, int code) {
    unsigned char reply[10] = {5, (unsigned char)code, 0, 1, 0, 0, 0, 0, 0, 0};
    refuse(fd, reply, sizeof reply);
}

/* Letters, digits, '-', '_' and dots, labels not empty, one trailing dot allowed. */
static int valid_host_name(const char *name) {
    size_t len = strlen(name), label = 0;
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '.') {
            if (label == 0) return 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* localhost, *.localhost, the env's name and its subdomains are the guest itself. */
static int names_guest(const char *name, const char *env) {
    char bare[HEADER_MAX + 1];
    size_t len = strlen(name);
    if (len >= sizeof bare) return 0;
    for (size_t i = 0; i <= len; i++) bare[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    if (len > 0 && bare[len - 1] == '.') bare[--len] = '\0';
    const char *domains[2] = {"localhost", env};
    for (int i = 0; i < 2; i++) {
        size_t dl = strlen(domains[i]);
        if (dl == 0 || dl > len) continue;
        if (strcmp(bare + len - dl, domains[i]) == 0 && (dl == len || bare[len - dl - 1] == '.')) return 1;
    }
    return 0;
}

static size_t unhex(const char *hex, unsigned char *out, size_t cap) {
    if (strcmp(hex, "-") == 0) return 0;
    size_t n = strlen(hex) / 2;
    if (n > cap) n = cap;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) return 0;
        out[i] = (unsigned char)b;
    }
    return n;
}

/* Equal length and bytes, in time that depends only on the lengths. */
static int same_bytes(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < alen && i < blen; i++) diff |= a[i] ^ b[i];
    return diff == 0;
}

struct socks_conf {
    unsigned long listener, id; /* listener 0: a connection handed over alone */
    char env[HEADER_MAX + 1];
    unsigned char user[256], pass[256];
    size_t user_len, pass_len;
    int auth;
};

/* The whole SOCKS5 conversation for one client; returns the connected guest socket or -1
 * (the client has had its answer, or was dropped). */
static int socks_handshake(int c, const struct socks_conf *conf) {
    unsigned char b[600];
    long long deadline = now_ms() + header_timeout_ms;
    /* Greeting: VER NMETHODS METHODS. Anything but version 5 (SOCKS4 too) is closed unanswered. */
    if (recv_exact(c, b, 2, deadline) < 0 || b[0] != 5 || b[1] == 0) return -1;
    int nmethods = b[1];
    if (recv_exact(c, b + 2, (size_t)nmethods, deadline) < 0) return -1;
    unsigned char method = conf->auth ? 0x02 : 0x00;
    if (!memchr(b + 2, method, (size_t)nmethods)) {
        refuse(c, (const unsigned char[]){5, 0xff}, 2);
        return -1;
    }
    if (write_all(c, (const unsigned char[]){5, method}, 2) < 0) return -1;
    if (conf->auth) {
        static const unsigned char denied[2] = {1, 1};
        if (recv_exact(c, b, 2, deadline) < 0) return -1;
        if (b[0] != 1) {
            refuse(c, denied, 2);
            return -1;
        }
        size_t ulen = b[1];
        if (recv_exact(c, b, ulen + 1, deadline) < 0) return -1;
        size_t plen = b[ulen];
        if (recv_exact(c, b + ulen + 1, plen, deadline) < 0) return -1;
        int user_ok = same_bytes(b, ulen, conf->user, conf->user_len);
        int pass_ok = same_bytes(b + ulen + 1, plen, conf->pass, conf->pass_len);
        if (!(user_ok & pass_ok)) {
            refuse(c, denied, 2);
            return -1;
        }
        if (write_all(c, (const unsigned char[]){1, 0}, 2) < 0) return -1;
    }
    /* Request: VER CMD RSV ATYP ADDR PORT. */
    if (recv_exact(c, b, 4, deadline) < 0) return -1;
    if (b[0] != 5) return socks_refuse(c, 0x01), -1;
    if (b[1] != 1) return socks_refuse(c, 0x07), -1; /* only CONNECT */
    struct target target = {.count = 0};
    char host[HEADER_MAX + 1];
    int port;
    unsigned char atyp = b[3];
    if (atyp == 1 || atyp == 4) {
        size_t alen = atyp == 1 ? 4 : 16;
        if (recv_exact(c, b, alen + 2, deadline) < 0) return -1;
        port = b[alen] << 8 | b[alen + 1];
        if (atyp == 1) {
            struct in_addr a4;
            memcpy(&a4, b, 4);
            add_v4(&target, &a4, port);
        } else {
            struct in6_addr a6;
            memcpy(&a6, b, 16);
            add_v6(&target, &a6, 0, port);
        }
    } else if (atyp == 3) {
        if (recv_exact(c, b, 1, deadline) < 0) return -1;
        size_t nlen = b[0];
        if (recv_exact(c, b, nlen + 2, deadline) < 0) return -1;
        memcpy(host, b, nlen);
        host[nlen] = '\0';
        port = b[nlen] << 8 | b[nlen + 1];
        struct in_addr a4;
        struct in6_addr a6;
        if (memchr(host, '\0', nlen)) return socks_refuse(c, 0x04), -1;
        if (inet_pton(AF_INET, host, &a4) == 1) add_v4(&target, &a4, port);
        else if (inet_pton(AF_INET6, host, &a6) == 1) add_v6(&target, &a6, 0, port);
        else if (!valid_host_name(host)) return socks_refuse(c, 0x04), -1;
        else if (names_guest(host, conf->env)) add_target("localhost", port, &target);
        else {
            char answer[HANDOFF_LINE_MAX];
            if (resolve_via_agent(conf->listener, conf->id, host, answer, sizeof answer, now_ms() + connect_timeout_ms) < 0) return socks_refuse(c, 0x06), -1;
            char *save = NULL;
            for (char *ip = strtok_r(answer, " ", &save); ip; ip = strtok_r(NULL, " ", &save)) {
                if (strcmp(ip, "-") != 0) add_target(ip, port, &target);
            }
            if (target.count == 0) return socks_refuse(c, 0x04), -1;
        }
    } else {
        return socks_refuse(c, 0x08), -1;
    }
    int guest = dial(c, &target, SOCK_STREAM, connect_timeout_ms);
    if (guest < 0) {
        if (guest != -ECANCELED) socks_refuse(c, socks_reply_for(-guest));
        return -1;
    }
    /* The reply names the guest-side address the connection comes from. */
    unsigned char reply[22] = {5, 0, 0, 1};
    size_t rlen = 10;
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    if (getsockname(guest, (struct sockaddr *)&local, &llen) == 0 && local.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&local;
        reply[3] = 4;
        memcpy(reply + 4, &s6->sin6_addr, 16);
        memcpy(reply + 20, &s6->sin6_port, 2);
        rlen = 22;
    } else if (local.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&local;
        memcpy(reply + 4, &s4->sin_addr, 4);
        memcpy(reply + 8, &s4->sin_port, 2);
    }
    if (write_all(c, reply, rlen) < 0) {
        close(guest);
        return -1;
    }
    return guest;
}

static void socks_conf_of(struct socks_conf *conf, const char *envhex, const char *userhex, const char *passhex) {
    size_t envlen = unhex(envhex, (unsigned char *)conf->env, sizeof conf->env - 1);
    conf->env[envlen] = '\0';
    conf->auth = strcmp(userhex, "-") != 0;
    conf->user_len = unhex(userhex, conf->user, sizeof conf->user);
    conf->pass_len = unhex(passhex, conf->pass, sizeof conf->pass);
}

/* Connections handed over alone, listed so that "CUT <id>" can end one (its forward or proxy went). */
struct handed {
    unsigned long id;
    int client, guest, cut;
    struct handed *next;
};
static struct handed *handed_list;
static pthread_mutex_t handed_lock = PTHREAD_MUTEX_INITIALIZER;

struct handoff {
    int fd;
    char request[HANDOFF_LINE_MAX];
    struct handed entry;
};

/* The guest side is known: a CUT from now on shuts it down too (or now, if one came already). */
static void handed_guest(struct handed *e, int guest) {
    pthread_mutex_lock(&handed_lock);
    e->guest = guest;
    if (e->cut) shutdown(guest, SHUT_RDWR);
    pthread_mutex_unlock(&handed_lock);
}

static void cut_handed(unsigned long id) {
    pthread_mutex_lock(&handed_lock);
    for (struct handed *e = handed_list; e; e = e->next) {
        if (e->id != id) continue;
        e->cut = 1;
        shutdown(e->client, SHUT_RDWR);
        if (e->guest >= 0) shutdown(e->guest, SHUT_RDWR);
    }
    pthread_mutex_unlock(&handed_lock);
}

static void *handoff_run(void *arg) {
    struct handoff *h = arg;
    int c = h->fd;
    char *fields[6];
    int count = 0;
    char *save = NULL;
    for (char *f = strtok_r(h->request, " ", &save); f && count < 6; f = strtok_r(NULL, " ", &save)) fields[count++] = f;
    unsigned long id = count >= 2 ? strtoul(fields[1], NULL, 10) : 0;
    unsigned long long in = 0, out = 0;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    /* Node's event loop made the socket non-blocking; the pumps block. */
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) & ~O_NONBLOCK);
    int forward = count == 4 && strcmp(fields[0], "FWD") == 0;
    if (forward) {
        struct target target;
        int port = parse_number(fields[3], 1, 65535);
        int guest = port < 0 || parse_target(fields[2], port, &target) < 0 ? -EINVAL : dial(c, &target, SOCK_STREAM, connect_timeout_ms);
        if (guest >= 0) {
            handed_guest(&h->entry, guest);
            relay_tcp(c, guest, &in, &out);
        }
    } else if (count == 5 && strcmp(fields[0], "SOCKS") == 0) {
        if (atomic_fetch_add(&socks_active, 1) < SOCKS_MAX_ACTIVE) {
            struct socks_conf conf = {.id = id};
            socks_conf_of(&conf, fields[2], fields[3], fields[4]);
            int guest = socks_handshake(c, &conf);
            if (guest >= 0) {
                handed_guest(&h->entry, guest);
                relay_tcp(c, guest, &in, &out);
            }
        }
        atomic_fetch_sub(&socks_active, 1);
    }
    pthread_mutex_lock(&handed_lock);
    for (struct handed **p = &handed_list; *p; p = &(*p)->next) {
        if (*p == &h->entry) {
            *p = h->entry.next;
            break;
        }
    }
    pthread_mutex_unlock(&handed_lock);
    if (h->entry.guest >= 0) close(h->entry.guest);
    /* A forward's client that never reached the guest learns at once that nothing is there. */
    if (h->entry.guest < 0 && forward) reset_close(c);
    else close(c);
    report_end(id, in, out);
    free(h);
    return NULL;
}

static void start_handoff(int fd, const char *request) {
    struct handoff *h = malloc(sizeof *h);
    if (!h) {
        close(fd);
        return;
    }
    h->fd = fd;
    snprintf(h->request, sizeof h->request, "%s", request);
    /* Listed before its thread starts: a CUT right behind the hand-off must find it. */
    h->entry = (struct handed){.id = strtoul(request + strcspn(request, " "), NULL, 10), .client = fd, .guest = -1};
    pthread_mutex_lock(&handed_lock);
    h->entry.next = handed_list;
    handed_list = &h->entry;
    pthread_mutex_unlock(&handed_lock);
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attr, handoff_run, h) != 0) {
        pthread_mutex_lock(&handed_lock);
        for (struct handed **p = &handed_list; *p; p = &(*p)->next) {
            if (*p == &h->entry) {
                *p = h->entry.next;
                break;
            }
        }
        pthread_mutex_unlock(&handed_lock);
        close(fd);
        free(h);
    }
    pthread_attr_destroy(&attr);
}

/* ---- listeners handed over (the agent's forwards and proxy) ----
 *
 * Handing over every connection costs the agent's event loop and a thread start per connect;
 * handing over the listening socket once lets threads parked in this process accept and answer
 * on their own, which is what makes a connect through the relay about as fast as a direct one.
 *   LISTEN <lid> FWD <host> <port>                          with the listening socket
 *   LISTEN <lid> SOCKS <envhex> <userhex|-> <passhex|->     with the listening socket
 *   UNLISTEN <lid>          stop accepting and cut every connection the listener still has
 * Events to the agent:
 *   {"cmd":"NODE_HANDLE","type":"net.Native","msg":{"ev":"listening","l":L}}  with a descriptor of
 *       the same socket: the agent keeps it, so the port stays bound (and queues connections)
 *       while no relay runs, between a guest's reboot and the next relay
 *   {"ev":"listen-failed","l":L,"error":"TEXT"}
 *   {"ev":"stats","l":L,"active":N,"total":N,"in":B,"out":B}   connections open now, accepted in
 *       all, and the bytes of those that ended (from and to the client), counted since LISTEN; sent
 *       STATS_DELAY_MS after a change, so a burst of connections costs the agent one message
 *   {"ev":"resolve","l":L,"id":C,"host":"NAME"}     answered by RESOLVED L C ...
 * Each listener keeps up to IDLE_MAX threads waiting on it, each with its own epoll set in which
 * the socket is EPOLLEXCLUSIVE: one connection wakes one thread. The socket stays non-blocking
 * (its flags are shared with the agent's descriptor, whose event loop needs that).
 */
#define LISTEN_ACCEPTORS 2
#define STATS_DELAY_MS 50

struct lconn {
    int client, guest;
    struct lconn *next;
};

struct listener {
    unsigned long id;
    int fd, wake; /* wake: an eventfd written once on UNLISTEN, seen by every waiting thread */
    int socks;
    struct target target;
    struct socks_conf conf;
    atomic_int refs, idle, closed, dirty;
    atomic_ulong active, total;
    atomic_ullong bytes_in, bytes_out;
    pthread_mutex_t lock;
    struct lconn *conns;
    struct listener *next;
};

static struct listener *listeners;
static pthread_mutex_t listeners_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong conn_ids;
static int stats_fd = -1; /* an eventfd: some listener's figures changed */
static atomic_int stats_pending;

static void ipc_send_fd(const char *line, size_t len, int fd) {
    struct iovec iov = {.iov_base = (void *)line, .iov_len = len};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    pthread_mutex_lock(&ipc_lock);
    ssize_t n;
    do n = sendmsg(ipc_fd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0 && (size_t)n < len) write_all(ipc_fd, line + n, len - (size_t)n);
    pthread_mutex_unlock(&ipc_lock);
}

/* Called after a listener's figures changed: the main thread sends them a little later. */
static void stats_changed(struct listener *l) {
    if (atomic_exchange(&l->dirty, 1)) return;
    if (!atomic_exchange(&stats_pending, 1)) eventfd_write(stats_fd, 1);
}

/* The main thread: every listener whose figures changed since the last time. */
static void send_stats(void) {
    atomic_store(&stats_pending, 0);
    pthread_mutex_lock(&listeners_lock);
    for (struct listener *l = listeners; l; l = l->next) {
        if (!atomic_exchange(&l->dirty, 0)) continue;
        char line[200];
        int n = snprintf(line, sizeof line, "{\"ev\":\"stats\",\"l\":%lu,\"active\":%lu,\"total\":%lu,\"in\":%llu,\"out\":%llu}\n", l->id,
                         atomic_load(&l->active), atomic_load(&l->total), atomic_load(&l->bytes_in), atomic_load(&l->bytes_out));
        ipc_send(line, (size_t)n);
    }
    pthread_mutex_unlock(&listeners_lock);
}

static void listener_unref(struct listener *l) {
    if (atomic_fetch_sub(&l->refs, 1) != 1) return;
    close(l->fd);
    close(l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* One accepted connection, from the accept to its end; the client is closed when this returns. */
static void serve_listened(struct listener *l, int c) {
    unsigned long id = atomic_fetch_add(&conn_ids, 1) + 1;
    struct lconn conn = {.client = c, .guest = -1};
    pthread_mutex_lock(&l->lock);
    int closed = atomic_load(&l->closed);
    if (!closed) {
        conn.next = l->conns;
        l->conns = &conn;
    }
    pthread_mutex_unlock(&l->lock);
    if (closed) {
        close(c);
        return;
    }
    atomic_fetch_add(&l->active, 1);
    atomic_fetch_add(&l->total, 1);
    stats_changed(l);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    int guest = -1, counted = 0;
    if (!l->socks) {
        guest = dial(c, &l->target, SOCK_STREAM, connect_timeout_ms);
    } else {
        counted = 1;
        if (atomic_fetch_add(&socks_active, 1) < SOCKS_MAX_ACTIVE) {
            struct socks_conf conf = l->conf;
            conf.id = id;
            guest = socks_handshake(c, &conf);
        }
    }
    unsigned long long in = 0, out = 0;
    if (guest >= 0) {
        /* UNLISTEN may have cut the client while we dialed; it could not know this socket. */
        pthread_mutex_lock(&l->lock);
        if (atomic_load(&l->closed)) shutdown(guest, SHUT_RDWR);
        conn.guest = guest;
        pthread_mutex_unlock(&l->lock);
        relay_tcp(c, guest, &in, &out);
    }
    pthread_mutex_lock(&l->lock);
    for (struct lconn **p = &l->conns; *p; p = &(*p)->next) {
        if (*p == &conn) {
            *p = conn.next;
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
    if (counted) atomic_fetch_sub(&socks_active, 1);
    if (guest >= 0) {
        close(guest);
        close(c);
    } else if (l->socks) {
        close(c);
    } else {
        reset_close(c); /* a forward's client learns at once that nothing is there */
    }
    atomic_fetch_add(&l->bytes_in, in);
    atomic_fetch_add(&l->bytes_out, out);
    atomic_fetch_sub(&l->active, 1);
    stats_changed(l);
}

static int spawn_listen_acceptor(struct listener *l);

static void *listen_acceptor(void *arg) {
    struct listener *l = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event on_listen = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 0};
    struct epoll_event on_wake = {.events = EPOLLIN, .data.u32 = 1};
    int ok = ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &on_listen) == 0 && epoll_ctl(ep, EPOLL_CTL_ADD, l->wake, &on_wake) == 0;
    while (ok && !atomic_load(&l->closed)) {
        struct epoll_event ev;
        int n = epoll_wait(ep, &ev, 1, -1);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0 || atomic_load(&l->closed)) continue;
        int client = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
            /* Out of fds: back off instead of spinning on a queue we can't drain. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                poll(NULL, 0, 50);
                continue;
            }
            break; /* the socket no longer listens */
        }
        /* The last thread waiting starts another before serving, so a slow client never holds
         * up the next one; one taking a connection otherwise costs no thread start. */
        if (atomic_fetch_sub(&l->idle, 1) == 1) spawn_listen_acceptor(l);
        serve_listened(l, client);
        if (atomic_fetch_add(&l->idle, 1) >= IDLE_MAX) break;
    }
    atomic_fetch_sub(&l->idle, 1); /* every way out of the loop is as a waiting thread */
    if (ep >= 0) close(ep);
    listener_unref(l);
    return NULL;
}

static int spawn_listen_acceptor(struct listener *l) {
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&l->refs, 1);
    atomic_fetch_add(&l->idle, 1);
    int rc = pthread_create(&thread, &attr, listen_acceptor, l);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_fetch_sub(&l->idle, 1);
        listener_unref(l);
    }
    return rc;
}

static void listen_failed(unsigned long id, const char *why) {
    char line[256];
    int n = snprintf(line, sizeof line, "{\"ev\":\"listen-failed\",\"l\":%lu,\"error\":\"%s\"}\n", id, why);
    ipc_send(line, (size_t)n);
}

static void unlisten(unsigned long id) {
    pthread_mutex_lock(&listeners_lock);
    struct listener *l = NULL;
    for (struct listener **p = &listeners; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            l = *p;
            *p = l->next;
            break;
        }
    }
    pthread_mutex_unlock(&listeners_lock);
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->closed, 1);
    for (struct lconn *c = l->conns; c; c = c->next) {
        shutdown(c->client, SHUT_RDWR);
        if (c->guest >= 0) shutdown(c->guest, SHUT_RDWR);
    }
    pthread_mutex_unlock(&l->lock);
    /* No new connections from now on, even before every thread has let go of the socket. */
    shutdown(l->fd, SHUT_RDWR);
    eventfd_write(l->wake, 1);
    listener_unref(l);
}

/* "LISTEN <lid> FWD <host> <port>" | "LISTEN <lid> SOCKS <envhex> <userhex|-> <passhex|->", fd: the socket. */
static void listen_on(int fd, char *request) {
    char *fields[6];
    int count = 0;
    char *save = NULL;
    for (char *f = strtok_r(request, " ", &save); f && count < 6; f = strtok_r(NULL, " ", &save)) fields[count++] = f;
    unsigned long id = count >= 2 ? strtoul(fields[1], NULL, 10) : 0;
    int listening = 0;
    socklen_t len = sizeof listening;
    struct listener *l = calloc(1, sizeof *l);
    const char *why = NULL;
    if (!l) why = "out of memory";
    else if (id == 0 || count < 3) why = "bad LISTEN request";
    else if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) why = "not a listening socket";
    else if (strcmp(fields[2], "FWD") == 0 && count == 5) {
        int port = parse_number(fields[4], 1, 65535);
        if (port < 0 || parse_target(fields[3], port, &l->target) < 0) why = "the target is not an IP address or localhost";
    } else if (strcmp(fields[2], "SOCKS") == 0 && count == 6) {
        l->socks = 1;
        l->conf.listener = id;
        socks_conf_of(&l->conf, fields[3], fields[4], fields[5]);
    } else {
        why = "bad LISTEN request";
    }
    if (!why && (l->wake = eventfd(0, EFD_CLOEXEC)) < 0) why = "no eventfd";
    if (why) {
        free(l);
        close(fd);
        listen_failed(id, why);
        return;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    l->id = id;
    l->fd = fd;
    atomic_init(&l->refs, 1); /* the list's */
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_lock(&listeners_lock);
    l->next = listeners;
    listeners = l;
    pthread_mutex_unlock(&listeners_lock);
    int started = 0;
    for (int i = 0; i < LISTEN_ACCEPTORS; i++) started += spawn_listen_acceptor(l) == 0;
    int copy = started ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (copy < 0) {
        unlisten(id);
        listen_failed(id, started ? "cannot duplicate the socket" : "cannot start threads");
        return;
    }
    char line[128];
    int n = snprintf(line, sizeof line, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"ev\":\"listening\",\"l\":%lu}}\n", id);
    ipc_send_fd(line, (size_t)n, copy);
    close(copy);
}

/* The "r" string of a line, copied into out (our requests never contain '"' or '\\'). */
static int request_of(const char *line, char *out, size_t cap) {
    const char *r = strstr(line, "\"r\":\"");
    if (!r) return -1;
    r += 5;
    const char *end = strchr(r, '"');
    if (!end || (size_t)(end - r) >= cap) return -1;
    memcpy(out, r, (size_t)(end - r));
    out[end - r] = '\0';
    return 0;
}

static void cleanup_and_exit(int status);

static void *ipc_loop(void *arg) {
    (void)arg;
    static char buf[1 << 16];
    size_t have = 0;
    int fds[FD_QUEUE_MAX], nfds = 0;
    for (;;) {
        union {
            struct cmsghdr align;
            char space[CMSG_SPACE(sizeof(int) * FD_QUEUE_MAX)];
        } control;
        struct iovec iov = {.iov_base = buf + have, .iov_len = sizeof buf - have};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
        ssize_t n = recvmsg(ipc_fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) cleanup_and_exit(0); /* the agent went away */
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            int count = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                if (nfds < FD_QUEUE_MAX) fds[nfds++] = fd;
                else close(fd);
            }
        }
        have += (size_t)n;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', have - (size_t)(start - buf)))) {
            *nl = '\0';
            char request[HANDOFF_LINE_MAX];
            if (strncmp(start, "{\"cmd\":\"NODE_HANDLE\"", 20) == 0) {
                ipc_send("{\"cmd\":\"NODE_HANDLE_ACK\"}\n", 26);
                if (nfds > 0) {
                    int fd = fds[0];
                    memmove(fds, fds + 1, (size_t)--nfds * sizeof(int));
                    if (request_of(start, request, sizeof request) < 0) close(fd);
                    else if (strncmp(request, "LISTEN ", 7) == 0) listen_on(fd, request);
                    else start_handoff(fd, request);
                }
            } else if (strncmp(start, "{\"cmd\":\"NODE_", 13) == 0 || request_of(start, request, sizeof request) < 0) {
                /* Node's own messages (the ACK of a descriptor we sent), or not ours */
            } else if (strncmp(request, "CUT ", 4) == 0) {
                cut_handed(strtoul(request + 4, NULL, 10));
            } else if (strncmp(request, "UNLISTEN ", 9) == 0) {
                unlisten(strtoul(request + 9, NULL, 10));
            } else if (strncmp(request, "RESOLVED ", 9) == 0) {
                char *rest = request + 9;
                unsigned long listener = strtoul(rest, &rest, 10);
                unsigned long id = strtoul(rest, &rest, 10);
                lookup_answered(listener, id, *rest == ' ' ? rest + 1 : "-");
            }
            start = nl + 1;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
        if (have == sizeof buf) have = 0; /* a line longer than any we send: drop it */
    }
    return NULL;
}

/* ---- setup and the accept loop ---- */

static void cleanup_and_exit(int status) {
    unlink(socket_path);
    fflush(stderr);
    _exit(status);
}

static int fail(const char *what) {
    fprintf(stderr, "nsrelay: %s: %s\n", what, strerror(errno));
    return 1;
}

static int usage(const char *msg) {
    fprintf(stderr,
            "nsrelay: %s\nusage: nsrelay (--pid PID | --netns PATH) --socket PATH [--userns PATH]\n"
            "               [--connect-timeout-ms N] [--header-timeout-ms N]\n",
            msg);
    return 2;
}

static int listen_unix(const char *path) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path); /* left by a killed relay */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 1024) < 0) {
        int err = errno;
        if (rc == 0) unlink(path);
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Only our own user (or root) may use the relay, even if the socket's mode were loosened. Inside
 * a guest's user namespace uids read back translated (or as the overflow uid), so there the
 * socket's 0600 mode is the only check. */
static int peer_allowed(int fd) {
    if (!check_peers) return 1;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return 0;
    return cred.uid == 0 || cred.uid == geteuid();
}

static void *acceptor(void *arg);

static int spawn_acceptor(void) {
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&idle_acceptors, 1);
    int rc = pthread_create(&thread, &attr, acceptor, NULL);
    if (rc != 0) atomic_fetch_sub(&idle_acceptors, 1);
    pthread_attr_destroy(&attr);
    return rc;
}

/* Threads wait in accept() themselves, so a new connection wakes the thread that serves it
 * (no hand-off, no thread start on the connect path). One that takes a connection starts a
 * replacement when it was the last one waiting; up to IDLE_MAX wait, the rest exit when done.
 * Should a thread fail to start, connections queue until a busy one comes back. */
static void *acceptor(void *arg) {
    (void)arg;
    for (;;) {
        int client = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            /* Out of fds: back off instead of spinning on a queue we can't drain. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) poll(NULL, 0, 50);
            continue;
        }
        if (!peer_allowed(client)) {
            close(client);
            continue;
        }
        if (atomic_fetch_sub(&idle_acceptors, 1) == 1) spawn_acceptor();
        serve(client);
        if (atomic_fetch_add(&idle_acceptors, 1) >= IDLE_MAX) {
            atomic_fetch_sub(&idle_acceptors, 1);
            return NULL;
        }
    }
}

int main(int argc, char **argv) {
    const char *netns = NULL, *userns = NULL;
    int pid = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) return usage("missing value");
        i++;
        if (strcmp(arg, "--pid") == 0) pid = parse_number(val, 1, INT_MAX);
        else if (strcmp(arg, "--netns") == 0) netns = val;
        else if (strcmp(arg, "--userns") == 0) userns = val;
        else if (strcmp(arg, "--socket") == 0) socket_path = val;
        else if (strcmp(arg, "--connect-timeout-ms") == 0) connect_timeout_ms = parse_number(val, 1, 600000);
        else if (strcmp(arg, "--header-timeout-ms") == 0) header_timeout_ms = parse_number(val, 1, 600000);
        else return usage("unknown option");
        if (connect_timeout_ms < 0 || header_timeout_ms < 0) return usage("bad timeout");
    }
    if (!socket_path || (pid < 0) == !netns) return usage("need --socket and one of --pid or --netns");

    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) return 0;
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL); /* threads inherit it: only signalfd sees these */
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sigfd < 0) return fail("signalfd");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* pidfd first, then the namespace, then check the process still lives: no pid-reuse race. */
    char path[64];
    int pidfd = -1;
    if (pid > 0) {
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0 && errno != ENOSYS) {
            fprintf(stderr, "nsrelay: process %d: %s\n", pid, strerror(errno));
            return 1;
        }
        snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
        netns = path;
    }
    int nsfd = open(netns, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) return fail(netns);
    if (pidfd >= 0 && poll(&(struct pollfd){.fd = pidfd, .events = POLLIN}, 1, 0) > 0) {
        fprintf(stderr, "nsrelay: process %d exited\n", pid);
        return 1;
    }

    listen_fd = listen_unix(socket_path);
    if (listen_fd < 0) return fail(socket_path);
    if (setns(nsfd, CLONE_NEWNET) < 0) {
        int err = errno;
        int ufd = err == EPERM && userns ? open(userns, O_RDONLY | O_CLOEXEC) : -1;
        if (ufd < 0 || setns(ufd, CLONE_NEWUSER) < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
            errno = ufd < 0 ? err : errno;
            fail("entering the network namespace");
            cleanup_and_exit(1);
        }
        close(ufd);
        check_peers = 0;
        /* New credentials clear the parent-death signal. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) cleanup_and_exit(0);
    }
    close(nsfd);

    for (int i = 0; i < 2; i++) {
        if (spawn_acceptor() != 0) {
            errno = EAGAIN;
            fail("starting threads");
            cleanup_and_exit(1);
        }
    }
    stats_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stats_fd < 0) {
        fail("eventfd");
        cleanup_and_exit(1);
    }
    const char *channel = getenv("NODE_CHANNEL_FD");
    if (channel) {
        ipc_fd = parse_number(channel, 0, INT_MAX);
        pthread_t thread;
        if (ipc_fd < 0 || pthread_create(&thread, NULL, ipc_loop, NULL) != 0) {
            fprintf(stderr, "nsrelay: cannot serve the agent's channel (NODE_CHANNEL_FD=%s)\n", channel);
            cleanup_and_exit(1);
        }
        pthread_detach(thread);
    }
    if (write(STDOUT_FILENO, "READY 1\n", 8) != 8) cleanup_and_exit(1);
    /* The acceptor threads serve; this one waits for the reasons to stop, and sends the
     * listeners' figures a little after they change. */
    struct pollfd pfd[4] = {
        {.fd = STDIN_FILENO, .events = POLLIN},
        {.fd = sigfd, .events = POLLIN},
        {.fd = pidfd, .events = POLLIN}, /* ignored by poll when -1 */
        {.fd = stats_fd, .events = POLLIN},
    };
    long long stats_at = -1;
    for (;;) {
        long long wait = stats_at < 0 ? -1 : stats_at - now_ms();
        if (poll(pfd, 4, wait < 0 && stats_at >= 0 ? 0 : (int)wait) < 0) {
            if (errno == EINTR) continue;
            fail("poll");
            cleanup_and_exit(1);
        }
        if (pfd[3].revents) {
            eventfd_t count;
            eventfd_read(stats_fd, &count);
            if (stats_at < 0) stats_at = now_ms() + STATS_DELAY_MS;
        }
        if (stats_at >= 0 && now_ms() >= stats_at) {
            stats_at = -1;
            send_stats();
        }
        if (pfd[1].revents) {
            struct signalfd_siginfo info;
            if (read(sigfd, &info, sizeof info) == sizeof info) {
                const char *name = sigabbrev_np((int)info.ssi_signo);
                fprintf(stderr, "nsrelay: stopped by SIG%s\n", name ? name : "?");
            }
            cleanup_and_exit(0);
        }
        if (pfd[2].revents) {
            fprintf(stderr, "nsrelay: process %d (the guest) exited\n", pid);
            cleanup_and_exit(3);
        }
        if (pfd[0].revents) {
            char buf[256];
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) cleanup_and_exit(0);
        }
    }
}
